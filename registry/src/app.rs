//! The state every handler shares: the registry services and what health checks need.

use crate::metrics::Metrics;
use crate::service::Registry;
use crate::storage::Storage;

/// Cheap to clone: everything inside is shared.
#[derive(Clone, Debug)]
pub struct App {
    registry: Registry,
    storage: Storage,
    metrics: Metrics,
    realm: Option<String>,
    /// `https` when this replica serves TLS: the scheme of URLs it derives from a request.
    scheme: &'static str,
    gc: crate::service::GcOptions,
}

impl App {
    /// State over the services, the blob storage and the metrics.
    pub fn new(registry: Registry, storage: Storage, metrics: Metrics) -> Self {
        Self {
            registry,
            storage,
            metrics,
            realm: None,
            scheme: "http",
            gc: crate::service::GcOptions::default(),
        }
    }

    /// The same state for a listener that serves TLS (`true`) or plain HTTP.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.scheme = if tls { "https" } else { "http" };
        self
    }

    /// `https` or `http`: how clients reach this listener.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The same state with these garbage collection settings (from `[gc]`).
    pub fn with_gc(mut self, gc: crate::service::GcOptions) -> Self {
        self.gc = gc;
        self
    }

    /// The configured garbage collection settings; a request may override some.
    pub fn gc_options(&self) -> crate::service::GcOptions {
        self.gc
    }

    /// The same state with a fixed token realm for challenges (else derived per request).
    pub fn with_realm(mut self, realm: Option<String>) -> Self {
        self.realm = realm;
        self
    }

    /// The configured token realm, if any.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// The request and Raft metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The registry services.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs garbage collection once and counts it in the metrics.
    ///
    /// # Errors
    /// As [`Registry::collect_garbage`].
    pub async fn run_gc(
        &self,
        opts: crate::service::GcOptions,
    ) -> crate::service::Result<crate::service::GcReport> {
        let report = self.registry.collect_garbage(opts).await?;
        self.metrics.record_gc(&report);
        Ok(report)
    }

    /// Whether blob storage answers.
    pub async fn storage_reachable(&self) -> bool {
        self.storage.reachable().await
    }
}
