//! Starting and stopping a replica: bind, open storage and the metadata node, serve, join
//! the cluster or create it with its first administrator; serve until told to stop, then
//! drain in-flight requests and stop Raft.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use berth_raft::network::RPC_PREFIX;
use berth_raft::{JoinOutcome, MetaNode, NodeConfig, StartMode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api;
use crate::app::App;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::service::{AccessSettings, AdminBootstrap, Limits, Registry};
use crate::storage::{self, Storage};
use crate::tls;

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
    /// TLS material is missing, inconsistent or cannot be made.
    #[error("TLS: {0}")]
    Tls(String),
}

/// What starting a replica found and did, for the binary to report.
#[derive(Debug)]
pub struct StartReport {
    /// This replica's id.
    pub replica_id: u64,
    /// The id of its cluster.
    pub cluster_id: String,
    /// Set when this start joined a cluster: the id given and the replica count.
    pub joined: Option<JoinOutcome>,
    /// What became of the first administrator; `None` if the cluster could not be asked.
    pub admin: Option<AdminBootstrap>,
    /// Where a generated administrator password was written.
    pub admin_password_file: Option<PathBuf>,
    /// Whether the listener serves TLS.
    pub tls: bool,
    /// The SHA-256 fingerprint (hex) of the CA clients should trust, with TLS on.
    pub ca_sha256: Option<String>,
}

/// A started replica: serving HTTP (the API and the replica RPC), a member of its cluster.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    meta: MetaNode,
    grace: Duration,
    stop: watch::Sender<bool>,
    serving: JoinHandle<std::io::Result<()>>,
    report: StartReport,
}

/// How long a start waits for the cluster to answer whether the administrator exists.
const ADMIN_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);
/// File in the data directory that receives a generated administrator password.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

impl Server {
    /// Validates the configuration, binds, checks the data directory and storage, starts the
    /// metadata node and serving; joins the cluster when asked to; creates the first
    /// administrator of a new cluster.
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
        let join_token = cfg.join_token()?;
        let mode = match (&cfg.cluster.join, &join_token) {
            (Some(url), Some(token)) => StartMode::Join {
                url: url.clone(),
                token: token.clone(),
            },
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "joining a cluster needs a join token (--join-token or --join-token-file)"
                        .into(),
                )
                .into())
            }
            (None, _) => StartMode::Create,
        };
        let tls = tls::prepare(cfg)?;

        let listener =
            TcpListener::bind(cfg.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: cfg.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(StartupError::Serve)?;
        let scheme = if tls.enabled() { "https" } else { "http" };
        let advertise_url = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        let meta = MetaNode::start(
            NodeConfig {
                dir: cfg.data_dir.join("raft"),
                advertise_url: advertise_url.clone(),
                heartbeat_ms: cfg.raft.heartbeat_ms,
                election_timeout_min_ms: cfg.raft.election_timeout_min_ms,
                election_timeout_max_ms: cfg.raft.election_timeout_max_ms,
                snapshot_after_logs: cfg.raft.snapshot_after_logs,
                logs_kept_after_snapshot: cfg.raft.logs_kept_after_snapshot,
                write_timeout_ms: cfg.raft.write_timeout_ms,
                peer_tls: tls.peer_tls(),
            },
            mode,
        )
        .await?;
        let tls = match tls::finish(tls, cfg, &meta, &advertise_url).await {
            Ok(tls) => tls,
            Err(e) => {
                let _ = meta.shutdown().await;
                return Err(e);
            }
        };
        let blobs = storage.blobs().clone();
        let uploads = storage.uploads().clone();
        let limits = Limits {
            max_manifest_bytes: cfg.limits.max_manifest_bytes,
            max_page_entries: cfg.limits.max_page_entries,
        };
        let registry =
            Registry::new(meta.clone(), blobs, uploads, limits).with_access(AccessSettings {
                enabled: cfg.auth.enabled,
                service: cfg.auth.service.clone(),
                issuer: cfg.auth.issuer.clone(),
                access_ttl: Duration::from_secs(cfg.auth.access_token_ttl_secs),
                refresh_ttl: Duration::from_secs(cfg.auth.refresh_token_ttl_secs),
            });
        if !cfg.auth.enabled && !cfg.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %cfg.listen,
                "access control is OFF on a non-loopback address: anyone who reaches it can read, push and delete"
            );
        }
        let gc_options = cfg.gc.options()?;
        let gc_interval = cfg.gc.interval()?;
        let app = App::new(registry.clone(), storage, Metrics::new())
            .with_realm(cfg.auth.realm.clone())
            .with_tls(tls.is_some())
            .with_gc(gc_options);
        let scheduled_app = app.clone();
        let mut rpc = axum::Router::new().nest(RPC_PREFIX, meta.rpc_router());
        if let Some(tls) = &tls {
            rpc = rpc.merge(tls::ca_router(tls.ca_pem.clone()));
        }
        let router = api::router(app, rpc);

        // Serve before joining: the leader replicates to this replica while adding it.
        let (stop, stopped) = watch::channel(false);
        let serving = match &tls {
            Some(tls) => spawn_serve(
                tls::TlsListener::new(listener, tls.config.clone()).map_err(StartupError::Serve)?,
                router,
                stopped,
            ),
            None => spawn_serve(listener, router, stopped),
        };
        if let Some(every) = gc_interval {
            tokio::spawn(scheduled_gc(scheduled_app, every, stop.subscribe()));
        }
        let joined = match meta.finish_join().await {
            Ok(joined) => joined,
            Err(e) => {
                let _ = stop.send(true);
                let _ = meta.shutdown().await;
                return Err(e.into());
            }
        };
        // A replica restored without an address records it before anyone can join.
        if let Err(e) = meta.record_restored_address().await {
            let _ = stop.send(true);
            let _ = meta.shutdown().await;
            return Err(e.into());
        }
        if let (None, Some(token)) = (&cfg.cluster.join, &join_token) {
            // A token chosen by the operator for the replicas about to join this cluster.
            if let Err(e) = meta.accept_join_token(token, None).await {
                tracing::warn!(error = %e, "could not record the configured join token yet");
            }
        }
        let admin = bootstrap_admin(&registry, cfg.admin_password()?).await;
        if let Err(e) = registry.ensure_signing_key().await {
            tracing::warn!(error = %e, "no token-signing key yet; logins fail until the cluster has a quorum");
        }
        let admin_password_file = match &admin {
            Some(AdminBootstrap::Generated(password)) => {
                let path = cfg.data_dir.join(ADMIN_PASSWORD_FILE);
                write_private(&path, password).map_err(|source| StartupError::DataDir {
                    path: path.clone(),
                    source,
                })?;
                Some(path)
            }
            _ => None,
        };
        let report = StartReport {
            replica_id: meta.status().id,
            cluster_id: meta.cluster_id().to_owned(),
            joined,
            admin,
            admin_password_file,
            tls: tls.is_some(),
            ca_sha256: tls.map(|t| t.ca_sha256),
        };
        Ok(Server {
            addr,
            meta,
            grace: Duration::from_secs(cfg.shutdown_grace_secs),
            stop,
            serving,
            report,
        })
    }

    /// The address the API is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the start found and did.
    pub fn report(&self) -> &StartReport {
        &self.report
    }

    /// How many replicas the cluster has, as this replica knows.
    pub fn replica_count(&self) -> usize {
        self.meta.member_count()
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
        let mut serving = self.serving;
        let finished_early = tokio::select! {
            () = shutdown => false,
            res = &mut serving => {
                flatten(res)?;
                true
            }
        };
        if !finished_early {
            let _ = self.stop.send(true);
            match tokio::time::timeout(self.grace, &mut serving).await {
                Ok(res) => flatten(res)?,
                Err(_) => {
                    tracing::warn!(
                        "requests still running after the shutdown grace period; stopping anyway"
                    );
                    serving.abort();
                }
            }
        }
        if let Err(e) = self.meta.shutdown().await {
            tracing::warn!(error = %e, "metadata node did not stop cleanly");
        }
        Ok(())
    }
}

/// Serves `router` on `listener` until `stopped` turns true, then drains in-flight requests.
fn spawn_serve<L>(
    listener: L,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    ClientAddr: for<'a> Connected<IncomingStream<'a, L>>,
{
    tokio::spawn(async move {
        axum::serve(
            listener,
            // Handlers see the peer address (the login throttle counts per address).
            router.into_make_service_with_connect_info::<ClientAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
    })
}

/// The peer address of a connection, plain or TLS, for handlers (`ConnectInfo<ClientAddr>`):
/// the login throttle counts failures per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

fn flatten(res: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), StartupError> {
    match res {
        Ok(r) => r.map_err(StartupError::Serve),
        Err(e) => Err(StartupError::Serve(std::io::Error::other(e))),
    }
}

/// Runs garbage collection every `every` while this replica is the leader (one replica runs
/// it; the run's lease in the metadata keeps two from overlapping anyway), until `stop`.
async fn scheduled_gc(app: App, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if app.registry().meta().status().role != berth_raft::Role::Leader {
            continue;
        }
        if let Err(e) = app.run_gc(app.gc_options()).await {
            tracing::warn!(error = %e, "scheduled garbage collection failed");
        }
    }
}

/// Creates the first administrator of a new cluster, retrying (bounded) while the cluster
/// elects its leader.
async fn bootstrap_admin(registry: &Registry, password: Option<String>) -> Option<AdminBootstrap> {
    let deadline = tokio::time::Instant::now() + ADMIN_BOOTSTRAP_TIMEOUT;
    loop {
        match registry.ensure_admin(password.clone()).await {
            Ok(done) => return Some(done),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for the cluster to check the administrator");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not check whether the administrator exists");
                return None;
            }
        }
    }
}

/// Writes `secret` to a new file only its owner can read.
fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

/// Creates `dir` if needed and proves it writable with a synced probe file.
fn check_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".berth-write-probe");
    std::fs::write(&probe, b"ok")?;
    std::fs::File::open(&probe)?.sync_all()?;
    std::fs::remove_file(&probe)
}
