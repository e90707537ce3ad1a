//! Every HTTP route of the registry: the OCI `/v2/` API, the admin API under `/api/v0/`,
//! `/health`, `/_ping` and `/metrics`. (The replica RPC is the `raft` crate's, mounted by the
//! server under `/internal/raft`.)
//!
//! One catch-all route parses the path into a [`Route`]; [`dispatch`] matches
//! `(method, route)` and calls exactly one handler. Handlers do HTTP only and call one
//! service method each; errors become responses in `error.rs` and nowhere else.

mod admin;
mod auth;
mod backup;
mod blob;
pub mod error;
mod health;
mod listing;
mod manifest;
pub mod response;
pub mod route;
mod token;
mod upload;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::App;
use crate::metrics::RouteLabel;
use error::{ApiError, InternalCause, RequestError};
use route::Route;

/// `Docker-Distribution-API-Version`, on every `/v2/` response, errors included.
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// The registry's routes, with `extra` (the replica RPC) merged in, all measured.
pub fn router(app: App, extra: Router) -> Router {
    let v2 = Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .layer(SetResponseHeaderLayer::overriding(
            API_VERSION,
            HeaderValue::from_static("registry/2.0"),
        ));
    let metrics = app.metrics().clone();
    Router::new()
        .merge(v2)
        .nest("/api/v0", admin::router(app.clone()))
        .route("/auth/token", get(token::token).post(token::token))
        .route("/health", get(health::health))
        .route("/_ping", get(health::health))
        .route("/metrics", get(health::metrics))
        .layer(middleware::from_fn(log_errors))
        .with_state(app)
        .merge(extra)
        .layer(middleware::from_fn_with_state(
            metrics,
            crate::metrics::record,
        ))
}

/// Routes one `/v2/` request.
async fn dispatch(State(app): State<App>, req: Request) -> Response {
    let route = if req.uri().path() == "/v2" {
        Ok(Route::Base)
    } else {
        Route::parse(req.uri().path())
    };
    let route = match route {
        Ok(route) => route,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let label = RouteLabel(route.name());
    let mut res = match handle(&app, route, req).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    };
    res.extensions_mut().insert(label);
    res
}

async fn handle(app: &App, route: Route, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let registry = app.registry();
    let access = auth::authorize(app, &parts.method, &route, &parts).await?;
    let method = parts.method;
    let head = method == Method::HEAD;
    let allow = route.allowed_methods();
    match (&method, route) {
        (&Method::GET | &Method::HEAD, Route::Base) => {
            Ok(Response::new(axum::body::Body::from("{}")))
        }
        (&Method::GET, Route::Catalog) => {
            let principal = access.principal(app).await;
            listing::list_catalog(registry, &parts.uri, principal.as_ref()).await
        }
        (&Method::GET | &Method::HEAD, Route::Manifest { repo, reference }) => {
            manifest::get_manifest(registry, &repo, &reference, head).await
        }
        (&Method::PUT, Route::Manifest { repo, reference }) => {
            manifest::put_manifest(registry, &repo, &reference, &parts.headers, body).await
        }
        (&Method::DELETE, Route::Manifest { repo, reference }) => {
            manifest::delete_manifest(registry, &repo, &reference).await
        }
        (&Method::GET | &Method::HEAD, Route::Blob { repo, digest }) => {
            blob::get_blob(registry, &repo, &digest, &parts.headers, head).await
        }
        (&Method::DELETE, Route::Blob { repo, digest }) => {
            blob::delete_blob(registry, &repo, &digest).await
        }
        (&Method::POST, Route::UploadStart { repo }) => {
            upload::post_upload(registry, &repo, &parts.uri, body, &access).await
        }
        (&Method::PATCH, Route::Upload { repo, id }) => {
            upload::patch_upload(registry, &repo, &id, &parts.headers, body, &access).await
        }
        (&Method::PUT, Route::Upload { repo, id }) => {
            upload::put_upload(
                registry,
                &repo,
                &id,
                &parts.uri,
                &parts.headers,
                body,
                &access,
            )
            .await
        }
        (&Method::GET, Route::Upload { repo, id }) => {
            upload::get_upload(registry, &repo, &id, &access).await
        }
        (&Method::DELETE, Route::Upload { repo, id }) => {
            upload::delete_upload(registry, &repo, &id, &access).await
        }
        (&Method::GET, Route::Tags { repo }) => {
            listing::list_tags(registry, &repo, &parts.uri).await
        }
        (&Method::GET, Route::Referrers { repo, digest }) => {
            listing::list_referrers(registry, &repo, &digest, &parts.uri).await
        }
        _ => Err(RequestError::MethodNotAllowed { allow }.into()),
    }
}

/// Logs the hidden cause of every internal error inside the request's span.
async fn log_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    if let Some(InternalCause(cause)) = res.extensions().get::<InternalCause>() {
        tracing::error!(%method, %path, status = res.status().as_u16(), error = %cause, "request failed");
    }
    res
}
