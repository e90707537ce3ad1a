//! Prometheus metrics: requests by route, method and status with their latency, bytes in
//! and out, and the replica's Raft position, served as text by `GET /metrics`.
//!
//! Request metrics are recorded by the [`record`] middleware around every route; Raft
//! figures are read from the node when scraped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use berth_raft::NodeStatus;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Which route served a request: the label of its metrics. Handlers that know better than
/// the path prefix (the `/v2/` dispatcher) put one in the response's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLabel(pub &'static str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The registry's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    bytes_in: Counter,
    bytes_out: Counter,
    raft_term: Gauge,
    raft_last_log_index: Gauge,
    raft_applied_index: Gauge,
    raft_commit_index: Gauge,
    raft_snapshot_index: Gauge,
    raft_purged_index: Gauge,
    raft_is_leader: Gauge,
    raft_leader_changes: Counter,
    gc: GcCounters,
}

/// Totals of the garbage collection runs of this replica (dry runs excluded).
#[derive(Default)]
struct GcCounters {
    runs: Counter,
    manifests_deleted: Counter,
    blobs_deleted: Counter,
    bytes_freed: Counter,
    uploads_removed: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Metrics {
    /// Empty metrics, registered under the `berth_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let raft_term = Gauge::default();
        let raft_last_log_index = Gauge::default();
        let raft_applied_index = Gauge::default();
        let raft_commit_index = Gauge::default();
        let raft_snapshot_index = Gauge::default();
        let raft_purged_index = Gauge::default();
        let raft_is_leader = Gauge::default();
        let raft_leader_changes = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route",
            latency.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        registry.register("raft_term", "Current Raft term", raft_term.clone());
        registry.register(
            "raft_last_log_index",
            "Index of the last entry in this replica's log",
            raft_last_log_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Index of the last entry applied to this replica's state machine",
            raft_applied_index.clone(),
        );
        registry.register(
            "raft_commit_index",
            "Highest index stored by a quorum (reported by the leader only; 0 elsewhere)",
            raft_commit_index.clone(),
        );
        registry.register(
            "raft_snapshot_index",
            "Last index included in this replica's current snapshot",
            raft_snapshot_index.clone(),
        );
        registry.register(
            "raft_purged_index",
            "Last index removed from this replica's log by compaction",
            raft_purged_index.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 when this replica is the leader",
            raft_is_leader.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Leader changes seen by this replica since it started",
            raft_leader_changes.clone(),
        );
        let gc = GcCounters::default();
        for (name, help, counter) in [
            (
                "gc_runs",
                "Garbage collection runs finished (dry runs excluded)",
                &gc.runs,
            ),
            (
                "gc_manifests_deleted",
                "Manifests deleted by garbage collection",
                &gc.manifests_deleted,
            ),
            (
                "gc_blobs_deleted",
                "Blobs deleted from storage by garbage collection",
                &gc.blobs_deleted,
            ),
            (
                "gc_bytes_freed",
                "Bytes of the blobs garbage collection deleted",
                &gc.bytes_freed,
            ),
            (
                "gc_uploads_removed",
                "Abandoned uploads removed by garbage collection",
                &gc.uploads_removed,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                latency,
                bytes_in,
                bytes_out,
                raft_term,
                raft_last_log_index,
                raft_applied_index,
                raft_commit_index,
                raft_snapshot_index,
                raft_purged_index,
                raft_is_leader,
                raft_leader_changes,
                gc,
            }),
        }
    }

    /// Counts a finished garbage collection run (dry runs are not counted).
    pub fn record_gc(&self, report: &crate::service::GcReport) {
        if report.dry_run {
            return;
        }
        let gc = &self.inner.gc;
        gc.runs.inc();
        gc.manifests_deleted.inc_by(report.manifests_deleted);
        gc.blobs_deleted.inc_by(report.blobs_deleted);
        gc.bytes_freed.inc_by(report.bytes_freed);
        gc.uploads_removed.inc_by(report.uploads_removed);
    }

    /// The text exposition (OpenMetrics text, which Prometheus reads), with the Raft figures
    /// of `status`.
    pub fn render(&self, status: &NodeStatus) -> String {
        let i = &self.inner;
        let as_i64 = |v: Option<u64>| i64::try_from(v.unwrap_or(0)).unwrap_or(i64::MAX);
        i.raft_term.set(as_i64(Some(status.term)));
        i.raft_last_log_index.set(as_i64(status.last_log_index));
        i.raft_applied_index.set(as_i64(status.last_applied_index));
        i.raft_commit_index.set(as_i64(status.commit_index));
        i.raft_snapshot_index.set(as_i64(status.snapshot_index));
        i.raft_purged_index.set(as_i64(status.purged_index));
        i.raft_is_leader
            .set(i64::from(status.role == berth_raft::Role::Leader));
        let seen = i.raft_leader_changes.get();
        if status.leader_changes > seen {
            i.raft_leader_changes.inc_by(status.leader_changes - seen);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &i.registry);
        out
    }
}

/// Middleware: counts the request, its latency and body bytes both ways.
pub async fn record(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let fallback = route_of_path(req.uri().path());
    let req = req.map(|body| Body::new(Counted::new(body, metrics.inner.bytes_in.clone())));
    let res = next.run(req).await;
    let route = res
        .extensions()
        .get::<RouteLabel>()
        .map_or(fallback, |r| r.0);
    let i = &metrics.inner;
    i.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: res.status().as_u16(),
        })
        .inc();
    i.latency
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    res.map(|body| Body::new(Counted::new(body, i.bytes_out.clone())))
}

/// The route label of paths outside `/v2/`.
fn route_of_path(path: &str) -> &'static str {
    if path.starts_with("/v2") {
        "v2_other"
    } else if path.starts_with("/internal/") {
        "replica_rpc"
    } else if path.starts_with("/api/") {
        "admin"
    } else if path == "/health" || path == "/_ping" {
        "health"
    } else if path == "/metrics" {
        "metrics"
    } else {
        "other"
    }
}

/// A body that adds the length of every data frame passing through to a counter.
struct Counted {
    inner: Body,
    counter: Counter,
}

impl Counted {
    fn new(inner: Body, counter: Counter) -> Self {
        Counted { inner, counter }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> NodeStatus {
        NodeStatus {
            id: 1,
            role: berth_raft::Role::Leader,
            leader_id: Some(1),
            term: 3,
            last_applied_index: Some(41),
            last_log_index: Some(42),
            commit_index: Some(42),
            snapshot_index: Some(40),
            purged_index: None,
            leader_changes: 2,
            in_quorum: true,
        }
    }

    #[tokio::test]
    async fn counts_requests_and_bytes_and_renders_raft_figures() {
        let metrics = Metrics::new();
        let app = axum::Router::new()
            .route(
                "/health",
                axum::routing::post(|body: Bytes| async move { body }),
            )
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                record,
            ));
        let res = tower::ServiceExt::oneshot(
            app,
            Request::post("/health").body(Body::from("12345")).unwrap(),
        )
        .await
        .unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"12345");

        let text = metrics.render(&status());
        for line in [
            r#"berth_http_requests_total{route="health",method="POST",status="200"} 1"#,
            "berth_http_received_bytes_total 5",
            "berth_http_sent_bytes_total 5",
            "berth_raft_term 3",
            "berth_raft_applied_index 41",
            "berth_raft_commit_index 42",
            "berth_raft_is_leader 1",
            "berth_raft_leader_changes_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // Rendering twice does not count leader changes twice.
        let text = metrics.render(&status());
        assert!(text.contains("berth_raft_leader_changes_total 2"));
    }

    #[test]
    fn paths_outside_v2_get_their_own_labels() {
        assert_eq!(route_of_path("/internal/raft/append"), "replica_rpc");
        assert_eq!(route_of_path("/api/v0/replicas"), "admin");
        assert_eq!(route_of_path("/_ping"), "health");
        assert_eq!(route_of_path("/metrics"), "metrics");
        assert_eq!(route_of_path("/v2/x/y"), "v2_other");
    }
}
