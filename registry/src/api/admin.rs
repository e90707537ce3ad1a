//! The admin API under `/api/v0/` (JSON), for operators and the `berth` command line.
//! Every route needs an administrator's credentials: HTTP basic auth, or a bearer token
//! from `/auth/token` whose subject is an administrator.
//!
//! | method | path                                         | does                               |
//! |--------|----------------------------------------------|------------------------------------|
//! | GET    | `/api/v0/replicas`                           | list replicas                      |
//! | DELETE | `/api/v0/replicas/{id}`                      | remove a replica                   |
//! | POST   | `/api/v0/join-tokens`                        | make a join token (`{"ttl_secs"}`) |
//! | GET/POST | `/api/v0/users`                            | list / create (`{"name","password","admin"}`) |
//! | DELETE | `/api/v0/users/{name}`                       | delete a user                      |
//! | PUT    | `/api/v0/users/{name}/password`              | set a password (`{"password"}`)    |
//! | GET/POST | `/api/v0/orgs`                             | list / create (`{"name"}`)         |
//! | DELETE | `/api/v0/orgs/{org}`                         | delete an organization             |
//! | GET/POST | `/api/v0/orgs/{org}/teams`                 | list (with members) / create (`{"name"}`) |
//! | DELETE | `/api/v0/orgs/{org}/teams/{team}`            | delete a team                      |
//! | PUT/DELETE | `/api/v0/orgs/{org}/teams/{team}/members/{user}` | add / remove a member   |
//! | GET/POST/DELETE | `/api/v0/grants`                    | list / set / remove (`{"subject","target","role"}`) |
//! | GET/POST | `/api/v0/repositories`                     | list / create (`{"name","public"}`) |
//! | PATCH/DELETE | `/api/v0/repositories/{*name}`         | visibility (`{"public"}`) / delete |
//! | GET    | `/api/v0/signing-keys`                       | key ids, oldest first              |
//! | POST   | `/api/v0/signing-keys`                       | rotate: a new key signs from now   |
//! | POST   | `/api/v0/backup`                             | stream a backup of all metadata (`api/backup.rs`) |
//! | GET/POST | `/api/v0/gc`                               | last report / run (`{"dry_run","grace","untagged"}`) |
//! | POST   | `/api/v0/fsck`                               | check linked blobs (`{"deep"}`)    |

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use berth_auth::policy::Principal;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::app::App;
use crate::server::ClientAddr;
use crate::service;

mod directory;
mod gc;

/// How long a join token admits replicas unless the request says otherwise: one day.
const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The admin routes, to be nested under `/api/v0`.
pub fn router(app: App) -> Router<App> {
    Router::new()
        .route("/replicas", get(list_replicas))
        .route("/replicas/{id}", delete(remove_replica))
        .route("/join-tokens", post(create_join_token))
        .merge(directory::router())
        .route("/backup", post(super::backup::post_backup))
        .merge(gc::router())
        .route_layer(middleware::from_fn_with_state(app, require_admin))
}

/// Lets a request through only with an administrator's credentials (basic or bearer).
async fn require_admin(State(app): State<App>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0 .0.ip());
    let registry = app.registry();
    let principal = if let Some((user, password)) = basic_credentials(req.headers()) {
        registry.login(&user, &password, client).await
    } else if let Some(token) = bearer_token(req.headers()) {
        match registry.verify_token(token).await {
            Ok(claims) => registry.principal_of(&claims).await,
            Err(_) => Err(service::Error::Unauthenticated),
        }
    } else {
        Err(service::Error::Unauthenticated)
    };
    match principal {
        Ok(Principal::User { admin: true, .. }) => next.run(req).await,
        Ok(_) => ApiError::from(service::Error::Denied).into_response(),
        Err(e) => {
            tracing::warn!(path = %req.uri().path(), "admin API: {e}");
            ApiError::from(e).into_response()
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `Authorization: Basic base64(user:password)`, decoded.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
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
