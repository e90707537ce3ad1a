//! The state every handler shares: the registry services and what health checks need.

use crate::service::Registry;
use crate::storage::Storage;

/// Cheap to clone: everything inside is shared.
#[derive(Clone, Debug)]
pub struct App {
    registry: Registry,
    storage: Storage,
}

impl App {
    /// State over the services and the blob storage.
    pub fn new(registry: Registry, storage: Storage) -> Self {
        Self { registry, storage }
    }

    /// The registry services.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether blob storage answers.
    pub async fn storage_reachable(&self) -> bool {
        self.storage.reachable().await
    }
}
