//! `GET /health` and `GET /_ping` for load balancers: 200 when this replica can serve
//! (a leader is known and storage answers), 503 otherwise, with a small JSON status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::App;

/// The replica's health.
pub async fn health(State(app): State<App>) -> Response {
    let status = app.registry().meta().status();
    let storage_ok = app.storage_reachable().await;
    let healthy = status.leader_id.is_some() && storage_ok;
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "replica_id": status.id,
        "role": status.role,
        "leader_id": status.leader_id,
        "term": status.term,
        "last_applied": status.last_applied_index,
        "storage_reachable": storage_ok,
    });
    (code, Json(body)).into_response()
}
