//! Starting and stopping a replica: bind, open storage and the metadata node, serve until
//! told to stop, then drain in-flight requests and stop Raft.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_raft::{MetaNode, NodeConfig};
use tokio::net::TcpListener;

use crate::api;
use crate::app::App;
use crate::config::{Config, ConfigError};
use crate::service::{Limits, Registry};
use crate::storage::{self, Storage};

/// Why a replica could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory cannot be created or written.
    #[error("data directory {path} is not usable: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Blob storage failed its start-up check.
    #[error("blob storage at {location} is not usable: {source}")]
    Storage {
        /// The storage URL.
        location: String,
        /// Why.
        source: storage::Error,
    },
    /// The metadata store could not start.
    #[error("metadata store: {0}")]
    Meta(#[from] berth_raft::MetaError),
    /// Serving failed.
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

/// A started replica, bound and ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: App,
    meta: MetaNode,
    grace: Duration,
}

impl Server {
    /// Validates the configuration, binds, checks the data directory and storage, and
    /// starts the metadata node.
    ///
    /// # Errors
    /// A [`StartupError`] that says which part failed and why.
    pub async fn start(cfg: &Config) -> Result<Server, StartupError> {
        cfg.validate()?;
        check_writable(&cfg.data_dir).map_err(|source| StartupError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
        let location = cfg.storage()?;
        let storage = Storage::open(&location)
            .await
            .map_err(|source| StartupError::Storage {
                location: location.to_string(),
                source,
            })?;

        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
        let bound = listener.local_addr().map_err(StartupError::Serve)?;
        let advertise_url = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let meta = MetaNode::start(NodeConfig {
            id: cfg.raft.node_id,
            dir: cfg.data_dir.join("raft"),
            advertise_url,
            heartbeat_ms: cfg.raft.heartbeat_ms,
            election_timeout_min_ms: cfg.raft.election_timeout_min_ms,
            election_timeout_max_ms: cfg.raft.election_timeout_max_ms,
            snapshot_after_logs: cfg.raft.snapshot_after_logs,
            write_timeout_ms: cfg.raft.write_timeout_ms,
        })
        .await?;
        let blobs = storage.blobs().clone();
        let uploads = storage.uploads().clone();
        let limits = Limits {
            max_manifest_bytes: cfg.limits.max_manifest_bytes,
            max_page_entries: cfg.limits.max_page_entries,
        };
        let registry = Registry::new(meta.clone(), blobs, uploads, limits);
        Ok(Server {
            listener,
            app: App::new(registry, storage),
            meta,
            grace: Duration::from_secs(cfg.shutdown_grace_secs),
        })
    }

    /// The address the API is bound to.
    ///
    /// # Errors
    /// Only if the socket is broken.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// This replica's id.
    pub fn replica_id(&self) -> u64 {
        self.meta.status().id
    }

    /// Serves until `shutdown` resolves, gives in-flight requests the grace period, then
    /// stops the metadata node.
    ///
    /// # Errors
    /// [`StartupError::Serve`] if the listener fails.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let router = api::router(self.app).nest("/internal/raft", self.meta.rpc_router());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let serving = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let grace = self.grace;
        let mut stopped = stop_rx.clone();
        let deadline = async move {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            res = serving => res.map_err(StartupError::Serve)?,
            () = deadline => tracing::warn!("requests still running after the shutdown grace period; stopping anyway"),
        }
        if let Err(e) = self.meta.shutdown().await {
            tracing::warn!(error = %e, "metadata node did not stop cleanly");
        }
        Ok(())
    }
}

/// Creates `dir` if needed and proves it writable with a synced probe file.
fn check_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".berth-write-probe");
    std::fs::write(&probe, b"ok")?;
    std::fs::File::open(&probe)?.sync_all()?;
    std::fs::remove_file(&probe)
}
