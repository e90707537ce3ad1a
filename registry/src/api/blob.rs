//! Handlers of `/v2/<name>/blobs/<digest>` (end-2, end-10): HTTP only.

use axum::http::header::RANGE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use berth_oci::{Digest, RepoName};

use super::error::ApiError;
use super::response::{BlobContent, Deleted};
use crate::service::{BlobRange, Registry};

/// GET or HEAD of a blob, honouring a single `Range: bytes=...`.
pub async fn get_blob(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    if head {
        let stat = registry.stat_blob(repo, digest).await?;
        return Ok(BlobContent {
            digest: stat.digest,
            size: stat.size,
            partial: None,
            reader: None,
        }
        .into_response());
    }
    let range = headers
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let (stat, partial, reader) = registry.open_blob(repo, digest, range).await?;
    Ok(BlobContent {
        digest: stat.digest,
        size: stat.size,
        partial,
        reader: Some(reader),
    }
    .into_response())
}

/// DELETE of a blob: unlinks it from the repository.
pub async fn delete_blob(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    registry.delete_blob(repo, digest).await?;
    Ok(Deleted.into_response())
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n`. Anything else (several ranges, other
/// units, garbage) is ignored and the whole blob is served, as RFC 9110 allows.
fn parse_range(value: &str) -> Option<BlobRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return end.parse().ok().map(BlobRange::Suffix);
    }
    let start = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some(BlobRange::From { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse() {
        assert_eq!(
            parse_range("bytes=0-9"),
            Some(BlobRange::From {
                start: 0,
                end: Some(9)
            })
        );
        assert_eq!(
            parse_range("bytes=5-"),
            Some(BlobRange::From {
                start: 5,
                end: None
            })
        );
        assert_eq!(parse_range("bytes=-3"), Some(BlobRange::Suffix(3)));
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=x-1"), None);
    }
}
