//! `GET /health` and `GET /_ping` for load balancers: 200 when this replica can serve (it is
//! a voter, a leader is known and storage answers), 503 otherwise, with a small JSON status;
//! and `GET /metrics` for Prometheus.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_raft::Role;
use serde_json::json;

use crate::app::App;

/// The replica's health.
pub async fn health(State(app): State<App>) -> Response {
    let status = app.registry().meta().status();
    let storage_ok = app.storage_reachable().await;
    // A learner is still catching up (joining): it should not take client traffic yet.
    let voter = matches!(status.role, Role::Leader | Role::Follower);
    let healthy = voter && status.in_quorum && storage_ok;
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
        "in_quorum": status.in_quorum,
        "storage_reachable": storage_ok,
    });
    (code, Json(body)).into_response()
}

/// Prometheus metrics in the text exposition format.
pub async fn metrics(State(app): State<App>) -> Response {
    let text = app.metrics().render(&app.registry().meta().status());
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
