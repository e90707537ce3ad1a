//! Handlers of `/v2/<name>/blobs/uploads/...` (end-4a/b, end-5, end-6, end-11, end-13,
//! end-14): HTTP only.

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_RANGE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, RepoName};
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use serde::Deserialize;

use super::auth::Access;
use super::error::{ApiError, RequestError};
use super::response::{BlobCreated, UploadAccepted};
use crate::service::{self, MountOutcome, Registry};
use crate::storage::UploadId;

#[derive(Debug, Default, Deserialize)]
struct StartQuery {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct FinishQuery {
    digest: Option<String>,
}

/// POST: start a session, upload monolithically (`?digest=`), or mount (`?mount=&from=`).
pub async fn post_upload(
    registry: &Registry,
    repo: &RepoName,
    uri: &Uri,
    body: Body,
    access: &Access,
) -> Result<Response, ApiError> {
    let query = query::<StartQuery>(uri)?;
    let owner = access.owner();
    if let Some(mount) = &query.mount {
        let digest = Digest::parse(mount).map_err(|_| RequestError::DigestParam)?;
        // A malformed `from`, or one the caller may not pull, cannot lend its blob: start a
        // session instead, as the spec allows.
        let from = query
            .from
            .as_deref()
            .and_then(|f| RepoName::parse(f).ok())
            .filter(|from| access.may_pull(from));
        return Ok(
            match registry
                .mount_blob(repo, &digest, from.as_ref(), owner)
                .await?
            {
                MountOutcome::Mounted => BlobCreated {
                    repo: repo.clone(),
                    digest,
                }
                .into_response(),
                MountOutcome::Started(progress) => UploadAccepted {
                    repo: repo.clone(),
                    progress,
                    status: StatusCode::ACCEPTED,
                }
                .into_response(),
            },
        );
    }
    if let Some(digest) = &query.digest {
        let digest = Digest::parse(digest).map_err(|_| RequestError::DigestParam)?;
        registry.put_blob(repo, &digest, stream(body)).await?;
        return Ok(BlobCreated {
            repo: repo.clone(),
            digest,
        }
        .into_response());
    }
    let progress = registry.start_upload(repo, owner).await?;
    Ok(UploadAccepted {
        repo: repo.clone(),
        progress,
        status: StatusCode::ACCEPTED,
    }
    .into_response())
}

/// PATCH: append a chunk (with `Content-Range`) or a stream (without).
pub async fn patch_upload(
    registry: &Registry,
    repo: &RepoName,
    id: &UploadId,
    headers: &HeaderMap,
    body: Body,
    access: &Access,
) -> Result<Response, ApiError> {
    let start = chunk_start(headers)?;
    let progress = registry
        .append_upload(repo, id, access.owner(), start, stream(body))
        .await?;
    Ok(UploadAccepted {
        repo: repo.clone(),
        progress,
        status: StatusCode::ACCEPTED,
    }
    .into_response())
}

/// PUT `?digest=`: close the session, with or without a last chunk.
pub async fn put_upload(
    registry: &Registry,
    repo: &RepoName,
    id: &UploadId,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    access: &Access,
) -> Result<Response, ApiError> {
    let query = query::<FinishQuery>(uri)?;
    let digest = query
        .digest
        .as_deref()
        .and_then(|d| Digest::parse(d).ok())
        .ok_or(RequestError::DigestParam)?;
    let start = chunk_start(headers)?;
    registry
        .finish_upload(repo, id, access.owner(), &digest, start, stream(body))
        .await?;
    Ok(BlobCreated {
        repo: repo.clone(),
        digest,
    }
    .into_response())
}

/// GET: where the session stands (204).
pub async fn get_upload(
    registry: &Registry,
    repo: &RepoName,
    id: &UploadId,
    access: &Access,
) -> Result<Response, ApiError> {
    let progress = registry.upload_status(repo, id, access.owner()).await?;
    Ok(UploadAccepted {
        repo: repo.clone(),
        progress,
        status: StatusCode::NO_CONTENT,
    }
    .into_response())
}

/// DELETE: cancel the session.
pub async fn delete_upload(
    registry: &Registry,
    repo: &RepoName,
    id: &UploadId,
    access: &Access,
) -> Result<Response, ApiError> {
    registry.cancel_upload(repo, id, access.owner()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn query<T: serde::de::DeserializeOwned + Default>(uri: &Uri) -> Result<T, RequestError> {
    match uri.query() {
        None => Ok(T::default()),
        Some(_) => axum::extract::Query::<T>::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|_| RequestError::BadQuery("query")),
    }
}

/// The body as the byte stream the services take.
fn stream(body: Body) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    body.into_data_stream().map_err(std::io::Error::other)
}

/// The first byte of a chunk from `Content-Range: <start>-<end>` (the spec's form; a
/// `bytes ` prefix is tolerated), checked against `Content-Length` when both are present.
fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| RequestError::BadRange)?.trim();
    let text = text
        .strip_prefix("bytes")
        .map_or(text, |t| t.trim_start_matches([' ', '=']));
    let (start, end) = text.split_once('-').ok_or(RequestError::BadRange)?;
    let start: u64 = start.trim().parse().map_err(|_| RequestError::BadRange)?;
    let end: u64 = end
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|_| RequestError::BadRange)?;
    if end < start {
        return Err(RequestError::BadRange.into());
    }
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length {
        if length != end - start + 1 {
            return Err(service::Error::ChunkLengthMismatch.into());
        }
    }
    Ok(Some(start))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(range: &str, len: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(len) = len {
            h.insert(CONTENT_LENGTH, HeaderValue::from_str(len).unwrap());
        }
        h
    }

    #[test]
    fn content_range_gives_the_chunk_start() {
        assert_eq!(
            chunk_start(&headers("0-99", Some("100"))).unwrap(),
            Some(100 - 100)
        );
        assert_eq!(chunk_start(&headers("100-199", None)).unwrap(), Some(100));
        assert_eq!(
            chunk_start(&headers("bytes 5-9", Some("5"))).unwrap(),
            Some(5)
        );
        assert_eq!(chunk_start(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn malformed_or_inconsistent_ranges_are_refused() {
        for (range, len) in [
            ("x-9", None),
            ("9-5", None),
            ("0-9", Some("4")),
            ("10", None),
        ] {
            let err = chunk_start(&headers(range, len)).unwrap_err();
            assert_eq!(
                err.http_status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{range}"
            );
        }
    }
}
