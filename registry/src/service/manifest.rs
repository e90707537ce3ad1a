//! Pushing, pulling and deleting manifests (OCI image manifests and indexes, Docker schema 2
//! manifests and manifest lists). Whether every referenced blob and child manifest is
//! present is decided by the state machine, atomically with the write.

use std::sync::Arc;

use berth_oci::{parse_manifest, Digest, ManifestError, Reference, RepoName};
use berth_raft::{MetaCommand, MetaResponse, Rejection, StoredManifest};

use super::blob::unexpected;
use super::{Error, Registry, Result};

/// A manifest as a client pushed it.
#[derive(Clone, Copy, Debug)]
pub struct PushedManifest<'a> {
    /// The raw body: its bytes are what the digest covers.
    pub body: &'a [u8],
    /// The request's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
}

/// What a successful manifest PUT stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestStored {
    /// The digest of the body.
    pub digest: Digest,
    /// The `subject` the manifest names, answered as `OCI-Subject`.
    pub subject: Option<Digest>,
}

impl Registry {
    /// Stores a manifest under `reference` (OCI end-7): a tag moves to it, a digest must
    /// be the body's own.
    ///
    /// # Errors
    /// [`Error::ManifestTooLarge`], [`Error::ManifestInvalid`], [`Error::ManifestUnsupported`],
    /// [`Error::DigestMismatch`], [`Error::ManifestBlobUnknown`], failures.
    #[tracing::instrument(skip(self, pushed), fields(%repo, %reference))]
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        pushed: PushedManifest<'_>,
    ) -> Result<ManifestStored> {
        if pushed.body.len() > self.limits.max_manifest_bytes {
            return Err(Error::ManifestTooLarge {
                limit: self.limits.max_manifest_bytes,
            });
        }
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), pushed.body);
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                    });
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::sha256_of(pushed.body), Some(tag.clone())),
        };
        let parsed = parse_manifest(pushed.body, pushed.content_type).map_err(|e| match e {
            ManifestError::Unsupported(media_type) => Error::ManifestUnsupported(media_type),
            other => Error::ManifestInvalid(other.to_string()),
        })?;
        let body = String::from_utf8(pushed.body.to_vec())
            .map_err(|_| Error::ManifestInvalid("manifest is not UTF-8".into()))?;
        let blobs = parsed
            .config
            .iter()
            .chain(parsed.layers.iter().filter(|layer| layer.urls.is_empty()))
            .map(|d| d.digest.clone())
            .collect();
        let children = parsed.manifests.iter().map(|d| d.digest.clone()).collect();
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        let cmd = MetaCommand::PutManifest {
            repo: repo.clone(),
            digest: digest.clone(),
            media_type: parsed.media_type,
            artifact_type: parsed.artifact_type,
            body,
            subject: subject.clone(),
            annotations: parsed.annotations,
            blobs,
            children,
            tag,
            at_ms: super::now_ms(),
        };
        match self.meta.propose(cmd).await? {
            MetaResponse::Ok => Ok(ManifestStored { digest, subject }),
            MetaResponse::Rejected(Rejection::MissingReferences { blobs, manifests }) => Err(
                Error::ManifestBlobUnknown(blobs.into_iter().chain(manifests).collect()),
            ),
            other => Err(unexpected(&other)),
        }
    }

    /// The manifest `reference` names in `repo` (OCI end-3).
    ///
    /// # Errors
    /// [`Error::NameUnknown`], [`Error::ManifestUnknown`], failures.
    #[tracing::instrument(skip(self), fields(%repo, %reference))]
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Arc<StoredManifest>> {
        if let Some(found) = self.find_manifest(repo, reference).await? {
            return Ok(found);
        }
        self.meta.read_barrier().await?;
        if let Some(found) = self.find_manifest(repo, reference).await? {
            return Ok(found);
        }
        if !self.meta.reader().repository_exists(repo).await? {
            return Err(Error::NameUnknown(repo.clone()));
        }
        Err(Error::ManifestUnknown(reference.to_string()))
    }

    /// Deletes a tag (only that tag) or, by digest, the manifest and every tag on it
    /// (OCI end-9).
    ///
    /// # Errors
    /// [`Error::ManifestUnknown`], failures.
    #[tracing::instrument(skip(self), fields(%repo, %reference))]
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let cmd = match reference {
            Reference::Tag(tag) => MetaCommand::DeleteTag {
                repo: repo.clone(),
                tag: tag.clone(),
            },
            Reference::Digest(digest) => MetaCommand::DeleteManifest {
                repo: repo.clone(),
                digest: digest.clone(),
            },
        };
        match self.meta.propose(cmd).await? {
            MetaResponse::Ok => Ok(()),
            MetaResponse::Rejected(Rejection::ManifestUnknown | Rejection::TagUnknown) => {
                Err(Error::ManifestUnknown(reference.to_string()))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn find_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Arc<StoredManifest>>> {
        let reader = self.meta.reader();
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(tag) => match reader.resolve_tag(repo, tag).await? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        Ok(reader.manifest(repo, &digest).await?)
    }
}
