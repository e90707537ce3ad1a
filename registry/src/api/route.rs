//! Every `/v2/` path parsed into one typed [`Route`] by a pure function, so routing is
//! table-tested and no handler ever sees an unparsed name or digest.
//!
//! Names may themselves contain `blobs`, `manifests` or `tags`, so the path is split on the
//! *last* marker and the tail after it must not contain a `/`.

use berth_oci::{Digest, DigestError, Reference, RepoName};

use crate::storage::UploadId;

/// An OCI Distribution endpoint, with its parameters parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// end-1: `/v2/`.
    Base,
    /// end-8 (catalog): `/v2/_catalog`.
    Catalog,
    /// end-3, end-7, end-9: `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// Repository.
        repo: RepoName,
        /// Tag or digest.
        reference: Reference,
    },
    /// end-2, end-10: `/v2/<name>/blobs/<digest>`.
    Blob {
        /// Repository.
        repo: RepoName,
        /// Blob digest.
        digest: Digest,
    },
    /// end-4a/b, end-11: `/v2/<name>/blobs/uploads/`.
    UploadStart {
        /// Repository.
        repo: RepoName,
    },
    /// end-5, end-6, end-13, end-14: `/v2/<name>/blobs/uploads/<id>`.
    Upload {
        /// Repository.
        repo: RepoName,
        /// Session id.
        id: UploadId,
    },
    /// end-8a/b: `/v2/<name>/tags/list`.
    Tags {
        /// Repository.
        repo: RepoName,
    },
    /// end-12a/b: `/v2/<name>/referrers/<digest>`.
    Referrers {
        /// Repository.
        repo: RepoName,
        /// The subject's digest.
        digest: Digest,
    },
}

/// Why a path is not a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this shape.
    NotFound,
    /// The repository name breaks the grammar.
    NameInvalid,
    /// The digest breaks the grammar or names an algorithm we do not support.
    DigestInvalid,
    /// The tag breaks the grammar.
    ReferenceInvalid,
    /// The upload id cannot be one we handed out.
    UploadUnknown,
}

impl Route {
    /// Parses a request path (percent-decoding is not applied: no valid component needs it).
    ///
    /// # Errors
    /// The [`RouteError`] that says what is wrong with the path.
    pub fn parse(path: &str) -> Result<Self, RouteError> {
        let rest = path.strip_prefix("/v2/").ok_or(RouteError::NotFound)?;
        if rest.is_empty() {
            return Ok(Self::Base);
        }
        if rest == "_catalog" {
            return Ok(Self::Catalog);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Self::Tags { repo: repo(name)? });
        }
        if let Some(name) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Ok(Self::UploadStart { repo: repo(name)? });
        }
        if let Some((name, id)) = split_last(rest, "/blobs/uploads/") {
            let id = id.parse().map_err(|_| RouteError::UploadUnknown)?;
            return Ok(Self::Upload {
                repo: repo(name)?,
                id,
            });
        }
        if let Some((name, reference)) = split_last(rest, "/manifests/") {
            let repo = repo(name)?;
            let reference = if reference.contains(':') {
                Reference::Digest(digest(reference)?)
            } else {
                Reference::Tag(
                    reference
                        .parse()
                        .map_err(|_| RouteError::ReferenceInvalid)?,
                )
            };
            return Ok(Self::Manifest { repo, reference });
        }
        if let Some((name, d)) = split_last(rest, "/blobs/") {
            return Ok(Self::Blob {
                repo: repo(name)?,
                digest: digest(d)?,
            });
        }
        if let Some((name, d)) = split_last(rest, "/referrers/") {
            return Ok(Self::Referrers {
                repo: repo(name)?,
                digest: digest(d)?,
            });
        }
        Err(RouteError::NotFound)
    }

    /// The methods `api::dispatch` serves on this endpoint, for the `Allow` header that
    /// RFC 9110 §15.5.6 requires on a 405.
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Self::Base => "GET, HEAD",
            Self::Catalog | Self::Tags { .. } | Self::Referrers { .. } => "GET",
            Self::Manifest { .. } => "GET, HEAD, PUT, DELETE",
            Self::Blob { .. } => "GET, HEAD, DELETE",
            Self::UploadStart { .. } => "POST",
            Self::Upload { .. } => "GET, PATCH, PUT, DELETE",
        }
    }

    /// A short, stable name for logs and metrics (never the repository, which is data).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::Catalog => "catalog",
            Self::Manifest { .. } => "manifest",
            Self::Blob { .. } => "blob",
            Self::UploadStart { .. } => "upload_start",
            Self::Upload { .. } => "upload",
            Self::Tags { .. } => "tags",
            Self::Referrers { .. } => "referrers",
        }
    }

    /// The repository the route acts on, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Self::Base | Self::Catalog => None,
            Self::Manifest { repo, .. }
            | Self::Blob { repo, .. }
            | Self::UploadStart { repo }
            | Self::Upload { repo, .. }
            | Self::Tags { repo }
            | Self::Referrers { repo, .. } => Some(repo),
        }
    }
}

/// Splits on the last `marker`, requiring a non-empty, `/`-free tail.
fn split_last<'a>(path: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let at = path.rfind(marker)?;
    let tail = &path[at + marker.len()..];
    (!tail.is_empty() && !tail.contains('/')).then(|| (&path[..at], tail))
}

fn repo(name: &str) -> Result<RepoName, RouteError> {
    RepoName::parse(name).map_err(|_| RouteError::NameInvalid)
}

fn digest(text: &str) -> Result<Digest, RouteError> {
    Digest::parse(text).map_err(|e| match e {
        DigestError::Invalid { .. } | DigestError::UnsupportedAlgorithm { .. } => {
            RouteError::DigestInvalid
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn every_endpoint_parses() {
        let id = "0b7a6c8e-3f5a-4c1e-9d2b-1a2b3c4d5e6f";
        let cases: Vec<(String, Route)> = vec![
            ("/v2/".into(), Route::Base),
            ("/v2/_catalog".into(), Route::Catalog),
            (
                "/v2/a/b/tags/list".into(),
                Route::Tags { repo: name("a/b") },
            ),
            (
                "/v2/a/manifests/latest".into(),
                Route::Manifest {
                    repo: name("a"),
                    reference: Reference::parse("latest").unwrap(),
                },
            ),
            (
                format!("/v2/a/manifests/{D}"),
                Route::Manifest {
                    repo: name("a"),
                    reference: Reference::parse(D).unwrap(),
                },
            ),
            (
                format!("/v2/a/blobs/{D}"),
                Route::Blob {
                    repo: name("a"),
                    digest: Digest::parse(D).unwrap(),
                },
            ),
            (
                "/v2/a/blobs/uploads/".into(),
                Route::UploadStart { repo: name("a") },
            ),
            (
                "/v2/a/blobs/uploads".into(),
                Route::UploadStart { repo: name("a") },
            ),
            (
                format!("/v2/a/blobs/uploads/{id}"),
                Route::Upload {
                    repo: name("a"),
                    id: id.parse().unwrap(),
                },
            ),
            (
                format!("/v2/a/referrers/{D}"),
                Route::Referrers {
                    repo: name("a"),
                    digest: Digest::parse(D).unwrap(),
                },
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(&path), Ok(want), "{path}");
        }
    }

    #[test]
    fn names_may_contain_the_markers() {
        assert_eq!(
            Route::parse("/v2/blobs/manifests/tags/manifests/v1"),
            Ok(Route::Manifest {
                repo: name("blobs/manifests/tags"),
                reference: Reference::parse("v1").unwrap()
            })
        );
        assert_eq!(
            Route::parse(&format!("/v2/x/blobs/uploads/blobs/{D}")),
            Ok(Route::Blob {
                repo: name("x/blobs/uploads"),
                digest: Digest::parse(D).unwrap()
            })
        );
        assert_eq!(
            Route::parse("/v2/tags/list/tags/list"),
            Ok(Route::Tags {
                repo: name("tags/list")
            })
        );
    }

    #[test]
    fn malformed_paths_say_what_is_wrong() {
        let cases = [
            ("/v2", RouteError::NotFound),
            ("/v2/_catalog/", RouteError::NotFound),
            ("/v2/a", RouteError::NotFound),
            ("/v2/a/manifests/", RouteError::NotFound),
            ("/v2/a/manifests/x/y", RouteError::NotFound),
            ("/v2/A/manifests/latest", RouteError::NameInvalid),
            ("/v2/a/../b/tags/list", RouteError::NameInvalid),
            ("/v2//a/tags/list", RouteError::NameInvalid),
            ("/v2/a/tags/list/", RouteError::NotFound),
            ("/v2/a/manifests/.bad", RouteError::ReferenceInvalid),
            ("/v2/a/blobs/sha256:abc", RouteError::DigestInvalid),
            ("/v2/a/blobs/md5:abc", RouteError::DigestInvalid),
            ("/v2/a/blobs/uploads/not-a-uuid", RouteError::UploadUnknown),
            ("/v2/a/referrers/latest", RouteError::DigestInvalid),
        ];
        for (path, want) in cases {
            assert_eq!(Route::parse(path), Err(want), "{path}");
        }
    }
}
