//! Typed successful responses: each knows its status and the headers the spec and real
//! clients need, and is unit-tested on its own.

use axum::body::Body;
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LINK, LOCATION,
};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, RepoName};
use bytes::Bytes;

use crate::service::UploadProgress;
use crate::storage::BlobReader;

/// `Docker-Content-Digest`.
pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// `Docker-Upload-UUID`.
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
/// `OCI-Subject`, on a PUT of a manifest that names a subject.
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
/// `OCI-Filters-Applied`, on a filtered referrers list.
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
/// `Range`, in upload responses.
pub const RANGE: HeaderName = HeaderName::from_static("range");

/// The upload `Range` header value for `offset` bytes received: `0-<last byte>`, and
/// `0-0` while empty (what distribution answers and clients expect).
pub fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn header(value: impl AsRef<str>) -> HeaderValue {
    // Every value here is built from parsed names, digests and numbers: always valid.
    HeaderValue::from_str(value.as_ref()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 202 (or 204 for a status query) for an upload session in progress.
#[derive(Debug)]
pub struct UploadAccepted {
    /// The repository.
    pub repo: RepoName,
    /// The session and its offset.
    pub progress: UploadProgress,
    /// 202 after POST/PATCH, 204 for GET.
    pub status: StatusCode,
}

impl IntoResponse for UploadAccepted {
    fn into_response(self) -> Response {
        let location = format!("/v2/{}/blobs/uploads/{}", self.repo, self.progress.id);
        (
            self.status,
            [
                (LOCATION, header(location)),
                (RANGE, header(range_value(self.progress.offset))),
                (DOCKER_UPLOAD_UUID, header(self.progress.id.to_string())),
                (CONTENT_LENGTH, HeaderValue::from_static("0")),
            ],
        )
            .into_response()
    }
}

/// 201 for a blob stored or mounted.
#[derive(Debug)]
pub struct BlobCreated {
    /// The repository.
    pub repo: RepoName,
    /// The blob.
    pub digest: Digest,
}

impl IntoResponse for BlobCreated {
    fn into_response(self) -> Response {
        let location = format!("/v2/{}/blobs/{}", self.repo, self.digest);
        (
            StatusCode::CREATED,
            [
                (LOCATION, header(location)),
                (DOCKER_CONTENT_DIGEST, header(self.digest.to_string())),
                (CONTENT_LENGTH, HeaderValue::from_static("0")),
            ],
        )
            .into_response()
    }
}

/// 200 (or 206 for a range) with a blob's bytes, or its headers alone for HEAD.
#[derive(Debug)]
pub struct BlobContent {
    /// The blob.
    pub digest: Digest,
    /// Its full size.
    pub size: u64,
    /// The `(offset, len)` served when a range was asked for.
    pub partial: Option<(u64, u64)>,
    /// The bytes, absent for HEAD.
    pub reader: Option<BlobReader>,
}

impl IntoResponse for BlobContent {
    fn into_response(self) -> Response {
        let (status, len) = match self.partial {
            Some((_, len)) => (StatusCode::PARTIAL_CONTENT, len),
            None => (StatusCode::OK, self.size),
        };
        let body = match self.reader {
            Some(reader) => Body::from_stream(reader.into_stream()),
            None => Body::empty(),
        };
        let mut res = Response::new(body);
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(CONTENT_LENGTH, header(len.to_string()));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(DOCKER_CONTENT_DIGEST, header(self.digest.to_string()));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some((offset, len)) = self.partial {
            let last = offset + len - 1;
            h.insert(
                CONTENT_RANGE,
                header(format!("bytes {offset}-{last}/{}", self.size)),
            );
        }
        res
    }
}

/// 201 for a manifest stored.
#[derive(Debug)]
pub struct ManifestCreated {
    /// The repository.
    pub repo: RepoName,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its subject, answered as `OCI-Subject`.
    pub subject: Option<Digest>,
}

impl IntoResponse for ManifestCreated {
    fn into_response(self) -> Response {
        let location = format!("/v2/{}/manifests/{}", self.repo, self.digest);
        let mut res = (
            StatusCode::CREATED,
            [
                (LOCATION, header(location)),
                (DOCKER_CONTENT_DIGEST, header(self.digest.to_string())),
                (CONTENT_LENGTH, HeaderValue::from_static("0")),
            ],
        )
            .into_response();
        if let Some(subject) = self.subject {
            res.headers_mut()
                .insert(OCI_SUBJECT, header(subject.to_string()));
        }
        res
    }
}

/// 200 with a manifest, served with its stored media type (HEAD: headers only).
#[derive(Debug)]
pub struct ManifestContent {
    /// The stored media type.
    pub media_type: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The exact bytes pushed.
    pub body: Bytes,
    /// HEAD: no body, same headers.
    pub head: bool,
}

impl IntoResponse for ManifestContent {
    fn into_response(self) -> Response {
        let len = self.body.len();
        let body = if self.head {
            Body::empty()
        } else {
            Body::from(self.body)
        };
        let mut res = Response::new(body);
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, header(&self.media_type));
        h.insert(CONTENT_LENGTH, header(len.to_string()));
        h.insert(DOCKER_CONTENT_DIGEST, header(self.digest.to_string()));
        res
    }
}

/// 202 for an accepted delete.
#[derive(Debug)]
pub struct Deleted;

impl IntoResponse for Deleted {
    fn into_response(self) -> Response {
        (
            StatusCode::ACCEPTED,
            [(CONTENT_LENGTH, HeaderValue::from_static("0"))],
        )
            .into_response()
    }
}

/// 200 with a JSON listing and, when more follow, `Link: <next>; rel="next"`.
#[derive(Debug)]
pub struct Listing {
    /// The JSON document.
    pub body: serde_json::Value,
    /// The next page's path and query.
    pub next: Option<String>,
    /// The content type of the document.
    pub content_type: &'static str,
    /// Extra headers (`OCI-Filters-Applied`).
    pub extra: Vec<(HeaderName, String)>,
}

impl IntoResponse for Listing {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let mut res = Response::new(Body::from(body));
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(next) = self.next {
            h.insert(LINK, header(format!("<{next}>; rel=\"next\"")));
        }
        for (name, value) in self.extra {
            h.insert(name, header(value));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::UploadId;

    fn repo() -> RepoName {
        RepoName::parse("team/app").unwrap()
    }

    #[test]
    fn upload_range_counts_inclusive_bytes() {
        assert_eq!(range_value(0), "0-0");
        assert_eq!(range_value(1), "0-0");
        assert_eq!(range_value(10), "0-9");
    }

    #[test]
    fn upload_accepted_has_location_range_and_uuid() {
        let id = UploadId::random();
        let res = UploadAccepted {
            repo: repo(),
            progress: UploadProgress { id, offset: 5 },
            status: StatusCode::ACCEPTED,
        }
        .into_response();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let h = res.headers();
        assert_eq!(h[LOCATION], format!("/v2/team/app/blobs/uploads/{id}"));
        assert_eq!(h[RANGE], "0-4");
        assert_eq!(h[DOCKER_UPLOAD_UUID], id.to_string());
    }

    #[test]
    fn partial_blob_has_content_range() {
        let d = Digest::sha256_of(b"abc");
        let res = BlobContent {
            digest: d.clone(),
            size: 100,
            partial: Some((10, 5)),
            reader: None,
        }
        .into_response();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(res.headers()[CONTENT_RANGE], "bytes 10-14/100");
        assert_eq!(res.headers()[CONTENT_LENGTH], "5");
        assert_eq!(res.headers()[DOCKER_CONTENT_DIGEST], d.to_string());
    }

    #[test]
    fn manifest_created_names_its_subject() {
        let d = Digest::sha256_of(b"m");
        let s = Digest::sha256_of(b"s");
        let res = ManifestCreated {
            repo: repo(),
            digest: d.clone(),
            subject: Some(s.clone()),
        }
        .into_response();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(res.headers()[OCI_SUBJECT], s.to_string());
        assert_eq!(
            res.headers()[LOCATION],
            format!("/v2/team/app/manifests/{d}")
        );
    }

    #[test]
    fn manifest_head_keeps_length_without_body() {
        let res = ManifestContent {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::sha256_of(b"{}"),
            body: Bytes::from_static(b"{}"),
            head: true,
        }
        .into_response();
        assert_eq!(res.headers()[CONTENT_LENGTH], "2");
        assert_eq!(
            res.headers()[CONTENT_TYPE],
            "application/vnd.oci.image.manifest.v1+json"
        );
    }

    #[test]
    fn listing_links_the_next_page() {
        let res = Listing {
            body: serde_json::json!({}),
            next: Some("/v2/a/tags/list?n=2&last=b".into()),
            content_type: "application/json",
            extra: vec![],
        }
        .into_response();
        assert_eq!(
            res.headers()[LINK],
            "</v2/a/tags/list?n=2&last=b>; rel=\"next\""
        );
    }
}
