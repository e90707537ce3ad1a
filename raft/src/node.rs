//! [`MetaNode`]: one replica's Raft node with its stores, the API the registry uses to write
//! (propose), to read (reader + read barrier) and to expose the replica RPC.
//!
//! Every wait here is bounded by `write_timeout_ms`: with no leader or no quorum, callers get
//! [`MetaError::Unavailable`] instead of hanging. No HTTP registry semantics here.

mod batch;
pub(crate) mod ca;
pub(crate) mod membership;

pub use ca::{ca_fingerprint, PeerTls, CA_PEM_PATH};
pub use membership::{JoinOutcome, ReplicaInfo};

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::command::{MetaCommand, MetaResponse};
use crate::error::MetaError;
use crate::identity::Identity;
use crate::log_store::LogStore;
use crate::network::client::{self, HttpNetworkFactory};
use crate::network::{server, MAX_PAYLOAD_ENTRIES};
use crate::reader::{ClusterCa, MetaReader};
use crate::state_machine::cluster::FIRST_REPLICA_ID;
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
    /// Directory of `cluster.json`, `log.db`, `state.db` and `snapshots/`; created if missing.
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
    /// Log entries kept after a snapshot, so that a briefly lagging replica catches up from
    /// the log instead of receiving the whole snapshot.
    pub logs_kept_after_snapshot: u64,
    /// Bound on [`MetaNode::propose`] and [`MetaNode::read_barrier`], in ms.
    pub write_timeout_ms: u64,
    /// Plain HTTP or TLS between replicas, and which CA to trust.
    pub peer_tls: PeerTls,
}

/// How a replica enters its cluster when its directory has no identity yet. A directory that
/// has one (`cluster.json`) always restarts as the replica it records.
#[derive(Clone, PartialEq, Eq)]
pub enum StartMode {
    /// Create a new one-replica cluster.
    Create,
    /// Join the cluster of the replica at `url` (its HTTP base URL), admitted by `token`.
    Join {
        /// A member's base URL, e.g. `http://10.0.0.5:5000`.
        url: String,
        /// A join token made by `berth join-token`.
        token: String,
    },
}

impl fmt::Debug for StartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartMode::Create => f.write_str("Create"),
            StartMode::Join { url, .. } => f
                .debug_struct("Join")
                .field("url", url)
                .finish_non_exhaustive(),
        }
    }
}

/// A replica's role, from its Raft state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// On the leader: the highest index stored by a quorum of voters (committed). Unknown
    /// elsewhere.
    pub commit_index: Option<u64>,
    /// Last index included in this replica's current snapshot.
    pub snapshot_index: Option<u64>,
    /// Last index removed from this replica's log by compaction.
    pub purged_index: Option<u64>,
    /// How many times this replica saw the leader change since it started.
    pub leader_changes: u64,
    /// Whether this replica is in touch with a working cluster: a follower or learner knows
    /// its leader; a leader heard from a quorum within the election timeout.
    pub in_quorum: bool,
}

/// One replica's metadata node: Raft plus the SQLite stores. Cheap to clone.
#[derive(Clone)]
pub struct MetaNode {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    identity: Identity,
    advertise_url: String,
    /// The member to ask for admission, while this replica is not yet in the membership.
    join_url: Option<String>,
    raft: Raft,
    state_machine: StateMachineStore,
    reader: MetaReader,
    http: reqwest::Client,
    /// The CA certificate `http` trusts, when replicas talk TLS.
    peer_ca_pem: Option<String>,
    /// The cluster CA received at admission, until the metadata holds it.
    admitted_ca: Option<ClusterCa>,
    write_timeout: Duration,
    /// Commands waiting to be committed together (group commit).
    proposals: batch::Queue,
    /// A leader that has not heard from a quorum for this long has lost it.
    quorum_timeout_ms: u64,
    leader_changes: Arc<AtomicU64>,
}

impl fmt::Debug for MetaNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaNode")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl MetaNode {
    /// Opens (or creates) the stores under `cfg.dir` and starts the Raft node.
    ///
    /// A directory with an identity (`cluster.json`) restarts as that replica and recovers
    /// everything from its files. A fresh directory either creates a new one-replica cluster
    /// ([`StartMode::Create`]) or asks a member for admission with a join token
    /// ([`StartMode::Join`]): it gets its replica id and the cluster key, then waits to be added
    /// ([`finish_join`](Self::finish_join), once this replica serves the replica RPC).
    ///
    /// # Errors
    /// [`MetaError::Config`] for inconsistent timeouts, [`MetaError::Storage`] /
    /// [`MetaError::Io`] / [`MetaError::Migrate`] if the stores cannot be opened,
    /// [`MetaError::Membership`] if the join is refused, [`MetaError::Raft`] if openraft
    /// refuses to start.
    pub async fn start(cfg: NodeConfig, mode: StartMode) -> Result<MetaNode, MetaError> {
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
            max_in_snapshot_log_to_keep: cfg.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::Config(e.to_string()))?;

        tokio::fs::create_dir_all(&cfg.dir).await?;
        let mut admitted_ca = None;
        let (identity, join_url) = match (Identity::load(&cfg.dir).await?, mode) {
            (Some(identity), StartMode::Join { url, .. }) => (identity, Some(url)),
            (Some(identity), StartMode::Create) => (identity, None),
            (None, StartMode::Create) => {
                let identity = Identity::new_cluster(FIRST_REPLICA_ID);
                identity.save(&cfg.dir).await?;
                (identity, None)
            }
            (None, StartMode::Join { url, token }) => {
                let admitted =
                    membership::request_admission(&url, &token, &cfg.advertise_url, &cfg.peer_tls)
                        .await?;
                let identity = admitted.identity;
                identity.save(&cfg.dir).await?;
                tracing::info!(replica_id = identity.replica_id, %url, "admitted to the cluster");
                admitted_ca = admitted.cluster_ca;
                (identity, Some(url))
            }
        };
        let id = identity.replica_id;

        let log_store = LogStore::open(&cfg.dir).await?;
        let state_machine = StateMachineStore::open(&cfg.dir).await?;
        let reader = state_machine.reader().clone();
        let state_machine_handle = state_machine.clone();
        let peer_ca_pem = match &cfg.peer_tls {
            PeerTls::Off => None,
            PeerTls::Ca(pem) => Some(pem.clone()),
            PeerTls::ClusterCa { new_ca } => {
                Some(match (reader.cluster_ca().await?, &admitted_ca) {
                    (Some(stored), _) => stored.cert_pem,
                    (None, Some(admitted)) => admitted.cert_pem.clone(),
                    (None, None) => new_ca.clone(),
                })
            }
        };
        let http = client::member_client(&identity.cluster_key, peer_ca_pem.as_deref())?;

        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            HttpNetworkFactory::new(http.clone()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| MetaError::Raft(e.to_string()))?;

        let leader_changes = Arc::new(AtomicU64::new(0));
        tokio::spawn(count_leader_changes(
            raft.metrics(),
            Arc::clone(&leader_changes),
        ));

        // Only the replica that created the cluster initializes it, and only once: a joining
        // replica (id > 1) must never found a cluster of its own.
        if join_url.is_none()
            && id == FIRST_REPLICA_ID
            && !raft.is_initialized().await.map_err(fatal)?
        {
            let members = BTreeMap::from([(id, BasicNode::new(&cfg.advertise_url))]);
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(id, "initialized a new one-replica cluster"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(MetaError::Raft(e.to_string())),
            }
        }

        let (proposals, queued) = batch::queue();
        let node = MetaNode {
            inner: Arc::new(Inner {
                id,
                identity,
                advertise_url: cfg.advertise_url,
                join_url,
                raft,
                state_machine: state_machine_handle,
                reader,
                http,
                peer_ca_pem,
                admitted_ca,
                write_timeout: Duration::from_millis(cfg.write_timeout_ms),
                proposals,
                quorum_timeout_ms: cfg.election_timeout_max_ms,
                leader_changes,
            }),
        };
        tokio::spawn(batch::run(Arc::downgrade(&node.inner), queued));
        Ok(node)
    }

    /// Commits `cmd` through Raft and returns the state machine's response once applied here
    /// or on the leader. A follower forwards the command to the leader over the replica RPC.
    ///
    /// # Errors
    /// [`MetaError::Unavailable`] when no leader commits it within `write_timeout_ms` (or the
    /// node is shutting down); [`MetaError::Raft`] when openraft fails otherwise. A command may
    /// still be applied after `Unavailable` was returned.
    pub async fn propose(&self, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        let answer = batch::enqueue(&self.inner.proposals, cmd)?;
        // Its batch is bounded by the write timeout too, but may have waited for a turn.
        match tokio::time::timeout(self.inner.write_timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => Err(MetaError::Unavailable),
        }
    }
}

impl Inner {
    /// Commits `cmd` (a batch or a lone command) within the write timeout.
    async fn propose_now(&self, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        match tokio::time::timeout(self.write_timeout, self.propose_until_committed(cmd)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.write_timeout.as_millis(),
                    "write not committed in time"
                );
                Err(MetaError::Unavailable)
            }
        }
    }

    async fn propose_until_committed(&self, cmd: MetaCommand) -> Result<MetaResponse, MetaError> {
        let raft = &self.raft;
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
            if leader_id == self.id {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            forwards += 1;
            if forwards > MAX_FORWARD_ATTEMPTS {
                tracing::warn!(leader_id, "giving up forwarding a write");
                return Err(MetaError::Unavailable);
            }
            match client::forward_write(&self.http, &node.addr, &cmd).await {
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
}

impl MetaNode {
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

    /// The axum router of the replica-to-replica RPC, for the binary to mount under
    /// [`RPC_PREFIX`](crate::network::RPC_PREFIX). Every route but `join` answers only callers
    /// that present the cluster key; `join` only holders of a valid join token.
    pub fn rpc_router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// The Raft handle, for the RPC handlers.
    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The state machine, for backups.
    pub(crate) fn state_machine(&self) -> &StateMachineStore {
        &self.inner.state_machine
    }

    /// The URL this replica advertises to its peers.
    pub(crate) fn advertise_url(&self) -> &str {
        &self.inner.advertise_url
    }

    /// This replica's identity (id, cluster id, cluster key).
    pub(crate) fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// How many replicas (voters and learners) the membership this replica knows has.
    pub fn member_count(&self) -> usize {
        self.inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .count()
    }

    /// The id of the cluster this replica belongs to.
    pub fn cluster_id(&self) -> &str {
        &self.inner.identity.cluster_id
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
            commit_index: quorum_index(&m),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            leader_changes: self.inner.leader_changes.load(Ordering::Relaxed),
            in_quorum: match m.state {
                ServerState::Leader => m
                    .millis_since_quorum_ack
                    .is_some_and(|ms| ms <= self.inner.quorum_timeout_ms),
                _ => m.current_leader.is_some(),
            },
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

/// Counts and logs changes of the known leader until the node stops (its metrics channel
/// closes). openraft's own logs are too chatty for operators; this is the event they want.
async fn count_leader_changes(
    mut metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
    changes: Arc<AtomicU64>,
) {
    let mut leader = metrics.borrow().current_leader;
    while metrics.changed().await.is_ok() {
        let (now, term) = {
            let m = metrics.borrow();
            (m.current_leader, m.current_term)
        };
        if now != leader {
            match now {
                Some(id) => {
                    changes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(leader = id, term, "leader elected");
                }
                None => tracing::warn!(previous = ?leader, term, "no leader"),
            }
        }
        leader = now;
    }
}

/// On a leader, the highest log index a majority of voters has stored: the commit index.
fn quorum_index(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> Option<u64> {
    let replication = m.replication.as_ref()?;
    let mut matched: Vec<u64> = m
        .membership_config
        .membership()
        .voter_ids()
        .map(|id| {
            if id == m.id {
                m.last_log_index.unwrap_or(0)
            } else {
                replication
                    .get(&id)
                    .and_then(|l| l.as_ref())
                    .map_or(0, |l| l.index)
            }
        })
        .collect();
    if matched.is_empty() {
        return None;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(matched.len() / 2).copied()
}

/// openraft's fatal errors: a stopped node is unavailable; anything else is broken.
fn fatal(f: Fatal<NodeId>) -> MetaError {
    match f {
        Fatal::Stopped => MetaError::Unavailable,
        other => MetaError::Raft(other.to_string()),
    }
}
