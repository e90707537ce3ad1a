//! The token endpoint of the Docker token protocol, `/auth/token`, on every replica:
//!
//! - `GET` with `scope` (repeatable), `service`, `account`, `offline_token=true`, and HTTP
//!   basic credentials (or none: anonymous);
//! - `POST` (OAuth2 form): `grant_type=password` with `username`/`password`, or
//!   `grant_type=refresh_token` with `refresh_token`; `scope` space-separated;
//!   `access_type=offline` for a refresh token.
//!
//! The answer grants the part of the asked scopes the user holds (possibly nothing: the
//! registry refuses later). Bad credentials get 401; repeated failures 429.

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_auth::policy::Principal;
use berth_auth::scope::Scope;
use serde_json::json;

use super::admin::basic_credentials;
use super::error::ApiError;
use crate::app::App;
use crate::server::ClientAddr;
use crate::service::{self, IssuedTokens};

/// Largest form body accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// `GET` or `POST /auth/token`.
pub async fn token(State(app): State<App>, req: Request) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0 .0.ip());
    let (parts, body) = req.into_parts();
    let result = if parts.method == Method::POST {
        match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(body) => post_form(&app, &parts.headers, &body, client).await,
            Err(_) => Err(bad_request("form too large")),
        }
    } else {
        get_form(
            &app,
            &parts.headers,
            parts.uri.query().unwrap_or(""),
            client,
        )
        .await
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn bad_request(why: &str) -> ApiError {
    ApiError::from(service::Error::InvalidRequest(why.to_owned()))
}

async fn get_form(
    app: &App,
    headers: &HeaderMap,
    query: &str,
    client: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let mut scopes = Vec::new();
    let mut offline = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "scope" => scopes.extend(value.split(' ').filter_map(Scope::parse)),
            "offline_token" => offline = value == "true",
            _ => {}
        }
    }
    let principal = match basic_credentials(headers) {
        Some((user, password)) => app.registry().login(&user, &password, client).await?,
        None => Principal::Anonymous,
    };
    let issued = issue(app, &principal, &scopes, offline).await?;
    Ok(Json(answer(&issued)).into_response())
}

async fn post_form(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
    client: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return Err(bad_request("the token endpoint takes a form"));
    }
    let (mut grant_type, mut username, mut password, mut refresh) = (None, None, None, None);
    let (mut scopes, mut offline) = (Vec::new(), false);
    for (key, value) in form_urlencoded::parse(body) {
        let value = value.into_owned();
        match key.as_ref() {
            "grant_type" => grant_type = Some(value),
            "username" => username = Some(value),
            "password" => password = Some(value),
            "refresh_token" => refresh = Some(value),
            "scope" => scopes.extend(value.split(' ').filter_map(Scope::parse)),
            "access_type" => offline = value == "offline",
            _ => {}
        }
    }
    let registry = app.registry();
    let principal = match (grant_type.as_deref(), username, password, refresh) {
        (Some("password"), Some(user), Some(password), _) => {
            registry.login(&user, &password, client).await?
        }
        (Some("refresh_token"), _, _, Some(token)) => {
            // A refresh token keeps working for its lifetime: hand it back unchanged.
            let principal = registry.login_with_refresh_token(&token).await?;
            let mut issued = issue(app, &principal, &scopes, false).await?;
            issued.refresh_token = Some(token);
            return Ok(Json(answer(&issued)).into_response());
        }
        _ => return Err(bad_request("unsupported grant")),
    };
    let issued = issue(app, &principal, &scopes, offline).await?;
    Ok(Json(answer(&issued)).into_response())
}

async fn issue(
    app: &App,
    principal: &Principal,
    scopes: &[Scope],
    offline: bool,
) -> Result<IssuedTokens, ApiError> {
    let registry = app.registry();
    let granted = registry.grant(principal, scopes).await?;
    Ok(registry.issue_tokens(principal, granted, offline).await?)
}

fn answer(issued: &IssuedTokens) -> serde_json::Value {
    let issued_at =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(issued.issued_at))
            .to_string();
    let scope: Vec<String> = issued.granted.iter().map(ToString::to_string).collect();
    let mut body = json!({
        "token": issued.access_token,
        "access_token": issued.access_token,
        "expires_in": issued.expires_in,
        "issued_at": issued_at,
        "scope": scope.join(" "),
    });
    if let Some(refresh) = &issued.refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    body
}
