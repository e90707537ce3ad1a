//! Handlers of `/v2/<name>/manifests/<reference>` (end-3, end-7, end-9): HTTP only.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use berth_oci::{Reference, RepoName};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::error::ApiError;
use super::response::{Deleted, ManifestContent, ManifestCreated};
use crate::service::{self, PushedManifest, Registry};

/// GET or HEAD of a manifest by tag or digest.
pub async fn get_manifest(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    head: bool,
) -> Result<Response, ApiError> {
    let manifest = registry.get_manifest(repo, reference).await?;
    Ok(ManifestContent {
        media_type: manifest.media_type.clone(),
        digest: manifest.digest.clone(),
        body: manifest.body.clone(),
        head,
    }
    .into_response())
}

/// PUT of a manifest; the body is read up to the size limit and no further.
pub async fn put_manifest(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = registry.limits().max_manifest_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Err(service::Error::ManifestTooLarge { limit }.into())
        }
        Err(e) => return Err(service::Error::Body(std::io::Error::other(e)).into()),
    };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let stored = registry
        .put_manifest(
            repo,
            reference,
            PushedManifest {
                body: &body,
                content_type,
            },
        )
        .await?;
    Ok(ManifestCreated {
        repo: repo.clone(),
        digest: stored.digest,
        subject: stored.subject,
    }
    .into_response())
}

/// DELETE by tag (untag) or by digest (the manifest and its tags).
pub async fn delete_manifest(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    registry.delete_manifest(repo, reference).await?;
    Ok(Deleted.into_response())
}
