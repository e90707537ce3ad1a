//! The admin API under `/api/v0/` (JSON), for operators and the `berth` command line.
//! Every route needs an administrator's credentials (HTTP basic auth).
//!
//! | method | path                      | does                                              |
//! |--------|---------------------------|---------------------------------------------------|
//! | GET    | `/api/v0/replicas`        | list replicas: id, address, role, applied, answers |
//! | DELETE | `/api/v0/replicas/{id}`   | remove a replica from the membership             |
//! | POST   | `/api/v0/join-tokens`     | make a join token (`{"ttl_secs": N}`, 0: no expiry) |
//! | POST   | `/api/v0/backup`          | stream a backup of all metadata (`api/backup.rs`) |

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::app::App;
use crate::service;

/// How long a join token admits replicas unless the request says otherwise: one day.
const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The admin routes, to be nested under `/api/v0`.
pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/replicas", get(list_replicas))
        .route("/replicas/{id}", delete(remove_replica))
        .route("/join-tokens", post(create_join_token))
        .route("/backup", post(super::backup::post_backup))
        .route_layer(middleware::from_fn_with_state(app, require_admin))
}

/// Lets a request through only with an administrator's basic-auth credentials.
async fn require_admin(State(app): State<App>, req: Request, next: Next) -> Response {
    let Some((user, password)) = basic_credentials(req.headers()) else {
        return ApiError::from(service::Error::Unauthenticated).into_response();
    };
    match app.registry().authenticate_admin(&user, &password).await {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::warn!(%user, path = %req.uri().path(), "admin API: {e}");
            ApiError::from(e).into_response()
        }
    }
}

/// `Authorization: Basic base64(user:password)`, decoded.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn list_replicas(State(app): State<App>) -> Response {
    let replicas = app.registry().replicas().await;
    Json(json!({ "replicas": replicas })).into_response()
}

async fn remove_replica(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return ApiError::from(service::Error::InvalidRequest(format!(
            "replica id {id:?} is not a number"
        )))
        .into_response();
    };
    match app.registry().remove_replica(id).await {
        Ok(remaining) => Json(json!({ "removed": id, "replicas": remaining })).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Body of `POST /api/v0/join-tokens`; empty means the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinTokenRequest {
    /// Seconds the token admits replicas; 0: until the cluster is gone. Default one day.
    ttl_secs: Option<u64>,
}

async fn create_join_token(State(app): State<App>, body: Bytes) -> Response {
    let request: JoinTokenRequest = if body.is_empty() {
        JoinTokenRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return ApiError::from(service::Error::InvalidRequest(e.to_string()))
                    .into_response()
            }
        }
    };
    let ttl = match request.ttl_secs {
        None => Some(DEFAULT_JOIN_TOKEN_TTL),
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
    };
    match app.registry().create_join_token(ttl).await {
        Ok(token) => (
            StatusCode::CREATED,
            Json(json!({ "token": token, "ttl_secs": ttl.map(|t| t.as_secs()) })),
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        HeaderMap::from_iter([(AUTHORIZATION, HeaderValue::from_str(value).unwrap())])
    }

    #[test]
    fn basic_credentials_decode() {
        // "admin:pa:ss" — the password may contain colons.
        let h = headers("Basic YWRtaW46cGE6c3M=");
        assert_eq!(
            basic_credentials(&h),
            Some(("admin".to_owned(), "pa:ss".to_owned()))
        );
        assert_eq!(
            basic_credentials(&headers("basic YWRtaW46cGE6c3M="))
                .unwrap()
                .0,
            "admin"
        );
    }

    #[test]
    fn malformed_credentials_are_none() {
        for bad in ["Bearer abc", "Basic", "Basic !!!", "Basic YWRtaW4="] {
            assert_eq!(basic_credentials(&headers(bad)), None, "{bad}");
        }
        assert_eq!(basic_credentials(&HeaderMap::new()), None);
    }
}
