//! Admin routes of the directory: users, organizations, teams, grants, repositories, keys.
//! Each handler parses, calls one service method, answers JSON.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, put};
use axum::{Json, Router};
use berth_auth::policy::Role;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::api::error::ApiError;
use crate::app::App;
use crate::service;

/// The directory routes (mounted under `/api/v0` behind the administrator check).
pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{name}", delete(delete_user))
        .route("/users/{name}/password", put(set_password))
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/orgs/{org}", delete(delete_org))
        .route("/orgs/{org}/teams", get(list_teams).post(create_team))
        .route("/orgs/{org}/teams/{team}", delete(delete_team))
        .route(
            "/orgs/{org}/teams/{team}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .route(
            "/grants",
            get(list_grants).post(set_grant).delete(remove_grant),
        )
        .route(
            "/repositories",
            get(list_repositories).post(create_repository),
        )
        .route(
            "/repositories/{*name}",
            patch(set_visibility).delete(delete_repository),
        )
        .route("/signing-keys", get(list_keys).post(rotate_key))
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::from(service::Error::InvalidRequest(e.to_string())))
}

fn done(result: service::Result<()>, status: StatusCode) -> Response {
    match result {
        Ok(()) => (status, Json(json!({}))).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn listed<T: serde::Serialize>(key: &str, result: service::Result<T>) -> Response {
    match result {
        Ok(items) => Json(json!({ key: items })).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    subject: String,
    target: String,
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRepository {
    name: String,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Visibility {
    public: bool,
}

async fn list_users(State(app): State<App>) -> Response {
    let users = app.registry().list_users().await.map(|users| {
        users
            .into_iter()
            .map(|(name, admin)| json!({ "name": name, "admin": admin }))
            .collect::<Vec<_>>()
    });
    listed("users", users)
}

async fn create_user(State(app): State<App>, bytes: Bytes) -> Response {
    let u: NewUser = match body(&bytes) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    done(
        app.registry()
            .create_user(&u.name, u.password, u.admin)
            .await,
        StatusCode::CREATED,
    )
}

async fn delete_user(State(app): State<App>, Path(name): Path<String>) -> Response {
    done(app.registry().delete_user(&name).await, StatusCode::OK)
}

async fn set_password(State(app): State<App>, Path(name): Path<String>, bytes: Bytes) -> Response {
    match body::<Password>(&bytes) {
        Ok(p) => done(
            app.registry().set_password(&name, p.password).await,
            StatusCode::OK,
        ),
        Err(e) => e.into_response(),
    }
}

async fn list_orgs(State(app): State<App>) -> Response {
    listed("orgs", app.registry().list_orgs().await)
}

async fn create_org(State(app): State<App>, bytes: Bytes) -> Response {
    match body::<Named>(&bytes) {
        Ok(n) => done(
            app.registry().create_org(&n.name).await,
            StatusCode::CREATED,
        ),
        Err(e) => e.into_response(),
    }
}

async fn delete_org(State(app): State<App>, Path(org): Path<String>) -> Response {
    done(app.registry().delete_org(&org).await, StatusCode::OK)
}

async fn list_teams(State(app): State<App>, Path(org): Path<String>) -> Response {
    listed("teams", app.registry().list_teams(&org).await)
}

async fn create_team(State(app): State<App>, Path(org): Path<String>, bytes: Bytes) -> Response {
    match body::<Named>(&bytes) {
        Ok(n) => done(
            app.registry().create_team(&org, &n.name).await,
            StatusCode::CREATED,
        ),
        Err(e) => e.into_response(),
    }
}

async fn delete_team(
    State(app): State<App>,
    Path((org, team)): Path<(String, String)>,
) -> Response {
    done(
        app.registry().delete_team(&org, &team).await,
        StatusCode::OK,
    )
}

async fn add_member(
    State(app): State<App>,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    done(
        app.registry().set_member(&org, &team, &user, true).await,
        StatusCode::OK,
    )
}

async fn remove_member(
    State(app): State<App>,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    done(
        app.registry().set_member(&org, &team, &user, false).await,
        StatusCode::OK,
    )
}

async fn list_grants(State(app): State<App>) -> Response {
    listed("grants", app.registry().list_grants().await)
}

async fn set_grant(State(app): State<App>, bytes: Bytes) -> Response {
    let g: GrantBody = match body(&bytes) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let Some(role) = g.role.as_deref().and_then(Role::parse) else {
        return ApiError::from(service::Error::InvalidRequest(
            "role: read, read-write or admin".to_owned(),
        ))
        .into_response();
    };
    done(
        app.registry().set_grant(&g.subject, &g.target, role).await,
        StatusCode::OK,
    )
}

async fn remove_grant(State(app): State<App>, bytes: Bytes) -> Response {
    match body::<GrantBody>(&bytes) {
        Ok(g) => done(
            app.registry().remove_grant(&g.subject, &g.target).await,
            StatusCode::OK,
        ),
        Err(e) => e.into_response(),
    }
}

async fn list_repositories(State(app): State<App>) -> Response {
    listed(
        "repositories",
        app.registry().list_repository_records().await,
    )
}

async fn create_repository(State(app): State<App>, bytes: Bytes) -> Response {
    match body::<NewRepository>(&bytes) {
        Ok(r) => done(
            app.registry().create_repository(&r.name, r.public).await,
            StatusCode::CREATED,
        ),
        Err(e) => e.into_response(),
    }
}

async fn set_visibility(
    State(app): State<App>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Response {
    match body::<Visibility>(&bytes) {
        Ok(v) => done(
            app.registry().set_visibility(&name, v.public).await,
            StatusCode::OK,
        ),
        Err(e) => e.into_response(),
    }
}

async fn delete_repository(State(app): State<App>, Path(name): Path<String>) -> Response {
    done(
        app.registry().delete_repository(&name).await,
        StatusCode::OK,
    )
}

async fn list_keys(State(app): State<App>) -> Response {
    let keys = app.registry().signing_key_ids().await.map(|keys| {
        keys.into_iter()
            .map(|(kid, at)| json!({ "kid": kid, "created_at_ms": at }))
            .collect::<Vec<_>>()
    });
    listed("keys", keys)
}

async fn rotate_key(State(app): State<App>) -> Response {
    match app.registry().rotate_signing_key().await {
        Ok(kid) => (StatusCode::CREATED, Json(json!({ "kid": kid }))).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
