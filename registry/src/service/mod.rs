//! The registry's domain rules: what a push, a pull, a mount or a delete means, in terms of
//! the replicated metadata (`berth_raft`) and blob storage (`crate::storage`).
//!
//! No axum or HTTP types here: bodies arrive as byte streams and results are plain values;
//! `crate::api` turns them into responses.

mod access;
mod backup;
mod blob;
mod cluster;
mod directory;
mod error;
mod fsck;
mod gc;
mod listing;
mod manifest;
mod seen;
mod tokens;
mod upload;

use std::time::{SystemTime, UNIX_EPOCH};

use berth_raft::MetaNode;

use crate::storage::{BlobStore, UploadStore};

pub use access::{AdminBootstrap, ADMIN_USER};
pub use backup::BackupDownload;
pub use blob::{BlobRange, BlobStat};
pub use directory::valid_name;
pub use error::Error;
pub use fsck::{FsckProblem, FsckReport};
pub use gc::{GcOptions, GcReport};
pub use listing::{Page, Referrers};
pub use manifest::{ManifestStored, PushedManifest};
pub use tokens::{AccessDenied, AccessSettings, IssuedTokens};
pub use upload::{MountOutcome, UploadProgress};

/// Result with the service [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Limits the operator may tune; defaults follow the spec's advice.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest manifest accepted (the spec suggests 4 MiB).
    pub max_manifest_bytes: usize,
    /// Largest page of a tag or catalog listing, whatever `n` asks.
    pub max_page_entries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_page_entries: 10_000,
        }
    }
}

/// The registry's services over one metadata node and one blob storage.
#[derive(Clone, Debug)]
pub struct Registry {
    meta: MetaNode,
    blobs: BlobStore,
    uploads: UploadStore,
    limits: Limits,
    access: std::sync::Arc<tokens::AccessState>,
    /// One backup at a time on this replica.
    backups: std::sync::Arc<tokio::sync::Semaphore>,
    /// Blobs storage recently had, for pulls of linked blobs.
    seen: std::sync::Arc<seen::SeenInStorage>,
}

impl Registry {
    /// Services over `meta` and the stores.
    pub fn new(meta: MetaNode, blobs: BlobStore, uploads: UploadStore, limits: Limits) -> Self {
        Self {
            meta,
            blobs,
            uploads,
            limits,
            access: std::sync::Arc::default(),
            backups: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            seen: std::sync::Arc::default(),
        }
    }

    /// The same services with access control as `settings` say.
    pub fn with_access(mut self, settings: AccessSettings) -> Self {
        self.access = std::sync::Arc::new(tokens::AccessState::new(settings));
        self
    }

    /// The metadata node (for health and the replica API).
    pub fn meta(&self) -> &MetaNode {
        &self.meta
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// Milliseconds since the Unix epoch: the proposer's clock, carried inside commands so
/// applying them stays deterministic.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
