//! Admin routes of garbage collection and the storage check.
//!
//! | method | path           | does                                                        |
//! |--------|----------------|-------------------------------------------------------------|
//! | POST   | `/api/v0/gc`   | run now (`{"dry_run", "grace": "1h", "untagged": "delete"}`) |
//! | GET    | `/api/v0/gc`   | the last finished run's report (404 before any)             |
//! | POST   | `/api/v0/fsck` | check linked blobs in storage (`{"deep"}`)                  |

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::app::App;
use crate::config::UntaggedPolicy;
use crate::service;

/// The GC routes (mounted under `/api/v0` behind the administrator check).
pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/gc", get(last_gc).post(run_gc))
        .route("/fsck", post(fsck))
}

/// Body of `POST /api/v0/gc`; every field optional (the `[gc]` configuration otherwise).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GcRequest {
    #[serde(default)]
    dry_run: bool,
    /// A humantime duration; `"0s"` allowed.
    grace: Option<String>,
    untagged: Option<UntaggedPolicy>,
}

/// Body of `POST /api/v0/fsck`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FsckRequest {
    #[serde(default)]
    deep: bool,
}

fn parse<T: Default + serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::from(service::Error::InvalidRequest(e.to_string())))
}

async fn run_gc(State(app): State<App>, body: Bytes) -> Response {
    let request: GcRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut opts = app.gc_options();
    opts.dry_run = request.dry_run;
    if let Some(grace) = &request.grace {
        let text = if grace.trim() == "0" { "0s" } else { grace };
        match humantime::parse_duration(text) {
            Ok(d) => opts.grace = d,
            Err(e) => {
                return ApiError::from(service::Error::InvalidRequest(format!(
                    "grace {grace:?}: {e}"
                )))
                .into_response()
            }
        }
    }
    if let Some(policy) = request.untagged {
        opts.delete_untagged = policy == UntaggedPolicy::Delete;
    }
    match app.run_gc(opts).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn last_gc(State(app): State<App>) -> Response {
    match app.registry().last_gc_report().await {
        Ok(Some(report)) => Json(report).into_response(),
        Ok(None) => ApiError::from(service::Error::NotFound(
            "no garbage collection has finished yet".into(),
        ))
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn fsck(State(app): State<App>, body: Bytes) -> Response {
    let request: FsckRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match app.registry().fsck(request.deep).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
