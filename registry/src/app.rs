//! The state every handler shares: the registry services and what health checks need.

use crate::metrics::Metrics;
use crate::service::Registry;
use crate::storage::Layout;

/// Cheap to clone: everything inside is shared.
#[derive(Clone, Debug)]
pub struct App {
    registry: Registry,
    layout: Layout,
    metrics: Metrics,
}

impl App {
    /// State over the services and the storage layout.
    pub fn new(registry: Registry, layout: Layout, metrics: Metrics) -> Self {
        Self {
            registry,
            layout,
            metrics,
        }
    }

    /// The request and Raft metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The registry services.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether blob storage answers (its root can be listed).
    pub async fn storage_reachable(&self) -> bool {
        tokio::fs::metadata(self.layout.root().join("blobs"))
            .await
            .map(|m| m.is_dir())
            .unwrap_or(false)
    }
}
