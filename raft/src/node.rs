//! [`MetaNode`]: one replica's Raft node with its stores, the API the registry uses to write
//! (propose), to read (reader + read barrier) and to expose the replica RPC.
//!
//! Every wait here is bounded by `write_timeout_ms`: with no leader or no quorum, callers get
//! [`MetaError::Unavailable`] instead of hanging. No HTTP registry semantics here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use serde::Serialize;

use crate::command::{MetaCommand, MetaResponse};
use crate::error::MetaError;
use crate::log_store::LogStore;
use crate::network::client::{self, HttpNetworkFactory};
use crate::network::{server, MAX_PAYLOAD_ENTRIES};
use crate::reader::MetaReader;
use crate::state_machine::StateMachineStore;
use crate::types::{NodeId, Raft};

/// How many times a write is sent to a leader before giving up (leadership may move while it
/// travels). Within `write_timeout_ms` either way.
const MAX_FORWARD_ATTEMPTS: u32 = 5;
/// Pause between attempts while no leader is known or a leader cannot be reached.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Settings of one replica's Raft node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This replica's id in the cluster; stable across restarts.
    pub id: u64,
    /// Directory of `log.db`, `state.db` and `snapshots/`; created if missing.
    pub dir: PathBuf,
    /// This replica's HTTP base URL as its peers reach it (`http://10.0.0.5:5000`); the replica
    /// RPC is under `/internal/raft` there.
    pub advertise_url: String,
    /// Leader heartbeat interval, in ms.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout, in ms (greater than `heartbeat_ms`).
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout, in ms (greater than the lower bound).
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and allow purging the log) after this many entries since the last
    /// one; 0 disables automatic snapshots.
    pub snapshot_after_logs: u64,
    /// Bound on [`MetaNode::propose`] and [`MetaNode::read_barrier`], in ms.
    pub write_timeout_ms: u64,
}

/// A replica's role, from its Raft state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts writes and serves the read index.
    Leader,
    /// A voter following a leader.
    Follower,
    /// Replicates without voting (a replica being added).
    Learner,
    /// Campaigning for leadership.
    Candidate,
    /// The node is stopping or stopped.
    Shutdown,
}

/// A snapshot of the node's Raft metrics, for `/health` and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// This replica's id.
    pub id: u64,
    /// Its current role.
    pub role: Role,
    /// The leader it knows of, if any.
    pub leader_id: Option<u64>,
    /// Its current Raft term.
    pub term: u64,
    /// Index of the last entry applied to the state machine.
    pub last_applied_index: Option<u64>,
    /// Index of the last entry in its log.
    pub last_log_index: Option<u64>,
}

/// One replica's metadata node: Raft plus the SQLite stores. Cheap to clone.
#[derive(Clone)]
pub struct MetaNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    state_machine: StateMachineStore,
    reader: MetaReader,
    http: reqwest::Client,
    write_timeout: Duration,
}

impl fmt::Debug for MetaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaNode")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl MetaNode {
    /// Opens (or creates) the stores under `cfg.dir` and starts the Raft node. On a fresh
    /// directory with no membership it initializes a one-node cluster of itself; a restart
    /// recovers everything from the directory.
    ///
    /// # Errors
    /// [`MetaError::Config`] for inconsistent timeouts, [`MetaError::Storage`] /
    /// [`MetaError::Io`] / [`MetaError::Migrate`] if the stores cannot be opened,
    /// [`MetaError::Raft`] if openraft refuses to start.
    pub async fn start(cfg: NodeConfig) -> Result<MetaNode, MetaError> {
        MetaNode::start_with(cfg, true).await
    }

    /// [`start`](Self::start), initializing a one-node cluster on a fresh directory only when
    /// `bootstrap` is set; otherwise a fresh node waits to be added by a leader.
    // TODO: the join issue makes this public (`berth serve --join`).
    pub(crate) async fn start_with(
        cfg: NodeConfig,
        bootstrap: bool,
    ) -> Result<MetaNode, MetaError> {
        let raft_config = openraft::Config {
            cluster_name: "berth".to_owned(),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            snapshot_policy: if cfg.snapshot_after_logs == 0 {
                SnapshotPolicy::Never
            } else {
                SnapshotPolicy::LogsSinceLast(cfg.snapshot_after_logs)
            },
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::Config(e.to_string()))?;

        tokio::fs::create_dir_all(&cfg.dir).await?;
        let log_store = LogStore::open(&cfg.dir).await?;
        let state_machine = StateMachineStore::open(&cfg.dir).await?;
        let reader = state_machine.reader().clone();
        let state_machine_handle = state_machine.clone();
        // TODO(#5): the cluster's credentials for replica-to-replica calls go on this client.
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| MetaError::Config(format!("http client: {e}")))?;

        let raft = Raft::new(
            cfg.id,
            Arc::new(raft_config),
            HttpNetworkFactory::new(http.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| MetaError::Raft(e.to_string()))?;

        if bootstrap && !raft.is_initialized().await.map_err(fatal)? {
            let members = BTreeMap::from([(cfg.id, BasicNode::new(&cfg.advertise_url))]);
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(id = cfg.id, "initialized a one-node cluster"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(MetaError::Raft(e.to_string())),
            }
        }

        Ok(MetaNode {
            inner: Arc::new(Inner {
                id: cfg.id,
                raft,
                state_machine: state_machine_handle,
                reader,
                http,
                write_timeout: Duration::from_millis(cfg.write_timeout_ms),
            }),
        })
    }

    /// Commits `cmd` through Raft and returns the state machine's response once applied here
    /// or on the leader. A follower forwards the command to the leader over the replica RPC.
    ///
    /// # Errors
    /// [`MetaError::Unavailable`] when no leader commits it within `write_timeout_ms` (or the
    /// node is shutting down); [`MetaError::Raft`] when openraft fails otherwise. A command may
    /// still be applied after `Unavailable` was returned.
    pub async fn propose(&self, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        match tokio::time::timeout(self.inner.write_timeout, self.propose_until_committed(cmd))
            .await
        {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.inner.write_timeout.as_millis(),
                    "write not committed in time"
                );
                Err(MetaError::Unavailable)
            }
        }
    }

    async fn propose_until_committed(&self, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        let raft = &self.inner.raft;
        let mut forwards = 0;
        loop {
            let leader = match raft.client_write(cmd.clone()).await {
                Ok(written) => return Ok(written.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(e @ ClientWriteError::ChangeMembershipError(_))) => {
                    return Err(MetaError::Raft(e.to_string()))
                }
                Err(RaftError::Fatal(f)) => return Err(fatal(f)),
            };
            let (Some(leader_id), Some(node)) = (leader.leader_id, leader.leader_node) else {
                // No leader yet (election in progress): wait for one.
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            if leader_id == self.inner.id {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            forwards += 1;
            if forwards > MAX_FORWARD_ATTEMPTS {
                tracing::warn!(leader_id, "giving up forwarding a write");
                return Err(MetaError::Unavailable);
            }
            match client::forward_write(&self.inner.http, &node.addr, &cmd).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                    // Leadership moved while the request travelled; ask again.
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Err(RaftError::APIError(e @ ClientWriteError::ChangeMembershipError(_)))) => {
                    return Err(MetaError::Raft(e.to_string()))
                }
                Ok(Err(RaftError::Fatal(f))) => {
                    tracing::warn!(leader_id, error = %f, "leader is stopping");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) if e.is_connect() => {
                    // The request never left: safe to retry.
                    tracing::warn!(leader_id, error = %e, "leader unreachable");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    // The leader may have applied it: retrying could apply it twice.
                    tracing::warn!(leader_id, error = %e, "forwarded write failed in transit");
                    return Err(MetaError::Unavailable);
                }
            }
        }
    }

    /// The reads of this replica's applied state. Pass [`read_barrier`](Self::read_barrier)
    /// first when the answer must include every write acknowledged anywhere.
    pub fn reader(&self) -> &MetaReader {
        &self.inner.reader
    }

    /// Linearizable read barrier: once this returns `Ok`, [`reader`](Self::reader) sees every
    /// write committed before the call. On the leader this confirms leadership with a quorum;
    /// on a follower it asks the leader for its read log id over the replica RPC and waits
    /// until that is applied here.
    ///
    /// # Errors
    /// [`MetaError::Unavailable`] when that cannot be established within `write_timeout_ms`;
    /// [`MetaError::Raft`] when openraft failed.
    pub async fn read_barrier(&self) -> Result<(), MetaError> {
        match tokio::time::timeout(self.inner.write_timeout, self.wait_for_read_index()).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.inner.write_timeout.as_millis(),
                    "read barrier timed out"
                );
                Err(MetaError::Unavailable)
            }
        }
    }

    async fn wait_for_read_index(&self) -> Result<(), MetaError> {
        let raft = &self.inner.raft;
        loop {
            let leader = match raft.ensure_linearizable().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                    tracing::warn!(error = %e, "read barrier: no quorum");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(RaftError::Fatal(f)) => return Err(fatal(f)),
            };
            let (Some(leader_id), Some(node)) = (leader.leader_id, leader.leader_node) else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            if leader_id == self.inner.id {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            match client::read_index(&self.inner.http, &node.addr).await {
                Ok(Ok(read_log_id)) => {
                    let Some(read_log_id) = read_log_id else {
                        return Ok(());
                    };
                    raft.wait(None)
                        .applied_index_at_least(Some(read_log_id.index), "read barrier")
                        .await
                        .map_err(|e| {
                            tracing::warn!(error = %e, "read barrier: waiting to apply failed");
                            MetaError::Unavailable
                        })?;
                    return Ok(());
                }
                Ok(Err(e)) => {
                    tracing::warn!(leader_id, error = %e, "read barrier: leader refused");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    tracing::warn!(leader_id, error = %e, "read barrier: leader unreachable");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// The axum router of the replica-to-replica RPC (append, vote, snapshot, forward-write,
    /// read-index), for the binary to mount under `/internal/raft`.
    ///
    /// There is no authentication on it yet: anyone who reaches it can change metadata.
    /// TODO(#5): a shared-secret header check goes in front of these routes
    /// (see [`network::server`](crate::network::server)).
    pub fn rpc_router(&self) -> axum::Router {
        server::router(self.inner.raft.clone())
    }

    /// This replica's id, role, leader, term and log positions, from the Raft metrics.
    pub fn status(&self) -> NodeStatus {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        NodeStatus {
            id: m.id,
            role: match m.state {
                ServerState::Leader => Role::Leader,
                ServerState::Follower => Role::Follower,
                ServerState::Learner => Role::Learner,
                ServerState::Candidate => Role::Candidate,
                ServerState::Shutdown => Role::Shutdown,
            },
            leader_id: m.current_leader,
            term: m.current_term,
            last_applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
        }
    }

    /// Stops the Raft node and closes the stores. Reads and writes fail afterwards.
    ///
    /// # Errors
    /// [`MetaError::Raft`] if the Raft task ended abnormally.
    pub async fn shutdown(&self) -> Result<(), MetaError> {
        self.inner
            .raft
            .shutdown()
            .await
            .map_err(|e| MetaError::Raft(format!("shutdown: {e}")))?;
        // openraft does not wait for a snapshot build it started; the store does.
        self.inner.state_machine.close().await;
        self.inner.reader.close().await;
        tracing::info!(id = self.inner.id, "raft node stopped");
        Ok(())
    }
}

/// openraft's fatal errors: a stopped node is unavailable; anything else is broken.
fn fatal(f: Fatal<NodeId>) -> MetaError {
    match f {
        Fatal::Stopped => MetaError::Unavailable,
        other => MetaError::Raft(other.to_string()),
    }
}
