//! Who is in the cluster: admitting a replica with a join token, adding and removing replicas
//! on the leader, and listing them.
//!
//! Joining takes two steps because a replica needs its id before its Raft node can start:
//! 1. [`request_admission`]: the new replica shows a join token to any member, which checks
//!    it against the replicated tokens and answers a fresh replica id and the cluster key (and
//!    the cluster CA, if any: see [`ca`](super::ca) for how a joiner learns to trust it);
//! 2. [`MetaNode::finish_join`]: once the new replica serves the replica RPC, it asks to be
//!    added; the leader adds it as a learner, waits until it has caught up (by log or by
//!    snapshot), then makes it a voter.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use super::ca::{self, DiscoveryError, PeerTls};
use super::{MetaNode, NodeStatus, Role};
use crate::command::{ClusterCommand, MetaCommand, MetaResponse};
use crate::error::{MembershipError, MetaError};
use crate::identity::{self, Identity};
use crate::network::client;
use crate::reader::ClusterCa;
use crate::types::NodeId;

/// How long the leader waits for a new learner to catch up before giving up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a joining replica keeps asking to be added (members may be electing a leader).
const JOIN_TIMEOUT: Duration = Duration::from_secs(900);
/// How long admission (step 1) keeps retrying while the member is unreachable or leaderless.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica listing waits for each replica's status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between retries of a membership step.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Prefix of join tokens, so that they are recognizable in a secret store. A token may end in
/// `.<CA fingerprint>` ([`ca`](super::ca)).
const JOIN_TOKEN_PREFIX: &str = "berth-join-";

/// Step 1 of a join: what the new replica sends to a member.
#[derive(Serialize, Deserialize)]
pub(crate) struct AdmissionRequest {
    /// The join token (its secret part: without a CA fingerprint).
    pub token: String,
    /// The new replica's base URL, as the members will reach it.
    pub address: String,
}

/// Step 1 of a join: what the member answers. The identity's fields stay at the top level, so
/// that the answer reads as before for a cluster without a CA.
#[derive(Serialize, Deserialize)]
pub(crate) struct Admission {
    /// The new replica's identity (its id and the cluster key).
    #[serde(flatten)]
    pub identity: Identity,
    /// The cluster CA, so that the new replica can issue its server certificate before it
    /// serves (the leader calls it over TLS while adding it). The joiner holds the cluster key
    /// and receives the whole metadata anyway: this gives it nothing more, only sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ca: Option<ClusterCa>,
}

/// What a joining replica learnt in step 1.
pub(crate) struct Admitted {
    /// Its identity.
    pub identity: Identity,
    /// The cluster CA, if the cluster has one (checked against the fingerprint of the token
    /// with [`PeerTls::ClusterCa`]).
    pub cluster_ca: Option<ClusterCa>,
}

/// A membership change, executed by the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum MembershipChange {
    /// Add a replica: as a learner until it has caught up, then as a voter.
    Add {
        /// Its replica id (from admission).
        id: NodeId,
        /// Its base URL.
        address: String,
    },
    /// Remove a replica, voter or learner.
    Remove {
        /// Its replica id.
        id: NodeId,
    },
}

/// A membership change as sent over the replica RPC.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MembershipCall {
    pub change: MembershipChange,
    /// Set by a member that forwards to the leader, so that a stale leader does not forward
    /// again.
    pub forwarded: bool,
}

/// What a finished join reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinOutcome {
    /// The new replica's id.
    pub replica_id: u64,
    /// How many replicas the cluster has now, the new one included.
    pub replicas: usize,
}

/// One replica as `berth replicas` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Its replica id.
    pub id: u64,
    /// Its base URL.
    pub address: String,
    /// Its role as the cluster sees it: leader, follower (a voter) or learner.
    pub role: Role,
    /// The last log index it has applied, if it answered.
    pub last_applied_index: Option<u64>,
    /// Whether it answered a status request just now.
    pub answers: bool,
}

/// Step 1 of a join: asks the member at `url` to admit this replica with `token`, retrying
/// while the member is unreachable or has no leader. With [`PeerTls::ClusterCa`], the member's
/// CA is learnt through the token's fingerprint first.
pub(crate) async fn request_admission(
    url: &str,
    token: &str,
    advertise_url: &str,
    tls: &PeerTls,
) -> Result<Admitted, MetaError> {
    let (secret, fingerprint) = ca::split_join_token(token);
    let request = AdmissionRequest {
        token: secret.to_owned(),
        address: advertise_url.to_owned(),
    };
    let mut trusted_ca_pem = match tls {
        PeerTls::Off => None,
        PeerTls::Ca(pem) => Some(pem.clone()),
        PeerTls::ClusterCa { .. } if fingerprint.is_none() => {
            return Err(MembershipError::Failed(
                "joining a cluster with its own CA (--tls auto) needs a join token that carries \
                 the CA fingerprint (TOKEN.FINGERPRINT, as `berth join-token` prints it)"
                    .into(),
            )
            .into())
        }
        PeerTls::ClusterCa { .. } => None,
    };
    let deadline = tokio::time::Instant::now() + ADMISSION_TIMEOUT;
    loop {
        let retry_reason = match (&trusted_ca_pem, fingerprint) {
            (None, Some(fp)) if matches!(tls, PeerTls::ClusterCa { .. }) => {
                match ca::discover_ca(url, fp).await {
                    Ok(pem) => {
                        trusted_ca_pem = Some(pem);
                        continue;
                    }
                    Err(DiscoveryError::Refused(e)) => return Err(e.into()),
                    Err(DiscoveryError::Unreachable(reason)) => reason,
                }
            }
            _ => {
                let http = client::plain_client(trusted_ca_pem.as_deref())?;
                let answer: Result<Result<Admission, MembershipError>, _> =
                    client::post_json(&http, url, "join", &request, Some(ADMISSION_TIMEOUT)).await;
                match answer {
                    Ok(Ok(admission)) => {
                        return admitted(admission, trusted_ca_pem, tls);
                    }
                    Ok(Err(MembershipError::NoLeader)) => MembershipError::NoLeader.to_string(),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(e) if e.is_connect() => e.to_string(),
                    Err(e) => {
                        return Err(MembershipError::Failed(format!("asking {url}: {e}")).into())
                    }
                }
            }
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(MembershipError::Failed(format!(
                "no admission from {url} within {} s: {retry_reason}",
                ADMISSION_TIMEOUT.as_secs()
            ))
            .into());
        }
        tracing::warn!(%url, reason = %retry_reason, "admission not possible yet; retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Checks that a cluster CA in the admission is the one the joiner verified.
fn admitted(
    admission: Admission,
    trusted_ca_pem: Option<String>,
    tls: &PeerTls,
) -> Result<Admitted, MetaError> {
    if let (PeerTls::ClusterCa { .. }, Some(trusted)) = (tls, &trusted_ca_pem) {
        let same = admission
            .cluster_ca
            .as_ref()
            .and_then(|ca| ca::ca_fingerprint(&ca.cert_pem))
            .is_some_and(|fp| ca::ca_fingerprint(trusted).as_deref() == Some(fp.as_str()));
        if !same {
            return Err(MembershipError::Failed(
                "the member admitted this replica but sent no cluster CA, or another one than \
                 it serves"
                    .into(),
            )
            .into());
        }
    }
    Ok(Admitted {
        identity: admission.identity,
        cluster_ca: admission.cluster_ca,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl MetaNode {
    /// Makes a new join token, valid for `ttl` (`None`: until the cluster is gone), and
    /// returns it. Only its SHA-256 is stored. When the cluster has a CA, the token carries its
    /// fingerprint ([`ca`](super::ca)).
    ///
    /// # Errors
    /// [`MetaError::Unavailable`] when the write cannot be committed.
    pub async fn create_join_token(&self, ttl: Option<Duration>) -> Result<String, MetaError> {
        let token = format!("{JOIN_TOKEN_PREFIX}{}", identity::random_hex(32));
        self.accept_join_token(&token, ttl).await?;
        Ok(match self.cluster_ca().await? {
            Some(cluster_ca) => ca::with_fingerprint(&token, &cluster_ca),
            None => token,
        })
    }

    /// Accepts `token` (chosen by the operator, e.g. a deployment secret) as a join token for
    /// `ttl`. Accepting the same token again changes nothing.
    ///
    /// # Errors
    /// [`MetaError::Unavailable`] when the write cannot be committed.
    pub async fn accept_join_token(
        &self,
        token: &str,
        ttl: Option<Duration>,
    ) -> Result<(), MetaError> {
        let now = now_ms();
        let expires_at_ms =
            ttl.map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
        self.propose(MetaCommand::Cluster(ClusterCommand::AddJoinToken {
            token_sha256: identity::sha256_hex(ca::split_join_token(token).0),
            created_at_ms: now,
            expires_at_ms,
        }))
        .await?;
        Ok(())
    }

    /// Step 1 of a join, on a member: checks the token and hands out a replica id (with the
    /// cluster CA, if any).
    pub(crate) async fn admit(
        &self,
        request: &AdmissionRequest,
    ) -> Result<Admission, MembershipError> {
        let unavailable = |e: MetaError| match e {
            MetaError::Unavailable => MembershipError::NoLeader,
            other => MembershipError::Failed(other.to_string()),
        };
        self.read_barrier().await.map_err(unavailable)?;
        let valid = self
            .reader()
            .join_token_valid(
                &identity::sha256_hex(ca::split_join_token(&request.token).0),
                now_ms(),
            )
            .await
            .map_err(unavailable)?;
        if !valid {
            tracing::warn!(address = %request.address, "refused a join with an invalid token");
            return Err(MembershipError::InvalidJoinToken);
        }
        match self
            .propose(MetaCommand::Cluster(ClusterCommand::AllocateReplicaId))
            .await
            .map_err(unavailable)?
        {
            MetaResponse::ReplicaId(replica_id) => {
                tracing::info!(replica_id, address = %request.address, "admitted a new replica");
                let cluster_ca = self.cluster_ca().await.map_err(unavailable)?;
                Ok(Admission {
                    identity: Identity {
                        replica_id,
                        ..self.identity().clone()
                    },
                    cluster_ca,
                })
            }
            other => Err(MembershipError::Failed(format!(
                "unexpected answer to a replica id allocation: {other:?}"
            ))),
        }
    }

    /// Step 2 of a join: when this replica was started with a join URL and is not a voter
    /// yet, asks to be added and waits until it is a voter. `None` when it was a member
    /// already (a restart).
    ///
    /// # Errors
    /// [`MetaError::Membership`] when the cluster refuses or does not add it in time.
    pub async fn finish_join(&self) -> Result<Option<JoinOutcome>, MetaError> {
        let Some(url) = &self.inner.join_url else {
            return Ok(None);
        };
        if self.is_voter_in_core().await? {
            return Ok(None);
        }
        let call = MembershipCall {
            change: MembershipChange::Add {
                id: self.inner.id,
                address: self.inner.advertise_url.clone(),
            },
            forwarded: false,
        };
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        let replicas = loop {
            let answer: Result<Result<usize, MembershipError>, _> = client::post_json(
                &self.inner.http,
                url,
                "membership",
                &call,
                Some(CATCH_UP_TIMEOUT + Duration::from_secs(60)),
            )
            .await;
            let reason = match answer {
                Ok(Ok(replicas)) => break replicas,
                Ok(Err(e @ (MembershipError::NoLeader | MembershipError::Busy))) => e.to_string(),
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(MembershipError::Failed(format!(
                    "not added by {url} within {} s: {reason}",
                    JOIN_TIMEOUT.as_secs()
                ))
                .into());
            }
            tracing::warn!(%url, %reason, "not added yet; retrying");
            tokio::time::sleep(RETRY_PAUSE).await;
        };
        // The leader committed the change; wait until it reached this replica too.
        let id = self.inner.id;
        self.inner
            .raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(
                |m| {
                    m.membership_config
                        .membership()
                        .voter_ids()
                        .any(|v| v == id)
                },
                "the join to arrive here",
            )
            .await
            .map_err(|e| MembershipError::Failed(e.to_string()))?;
        Ok(Some(JoinOutcome {
            replica_id: id,
            replicas,
        }))
    }

    /// Removes replica `id` from the membership (through the leader) and returns how many
    /// replicas remain.
    ///
    /// # Errors
    /// [`MetaError::Membership`]: not a member, the last voter, no leader, or a change in
    /// progress.
    pub async fn remove_replica(&self, id: u64) -> Result<usize, MetaError> {
        let change = MembershipChange::Remove { id };
        Ok(self.change_membership(&change, false).await?)
    }

    /// Executes `change` if this replica leads, else forwards it to the leader (unless it was
    /// forwarded here already). Answers the number of replicas afterwards.
    pub(crate) async fn change_membership(
        &self,
        change: &MembershipChange,
        forwarded: bool,
    ) -> Result<usize, MembershipError> {
        match self.change_membership_here(change).await {
            Err(Redirect::Leader(leader_id, address))
                if !forwarded && leader_id != self.inner.id =>
            {
                let call = MembershipCall {
                    change: change.clone(),
                    forwarded: true,
                };
                let answer: Result<Result<usize, MembershipError>, _> = client::post_json(
                    &self.inner.http,
                    &address,
                    "membership",
                    &call,
                    Some(CATCH_UP_TIMEOUT + Duration::from_secs(30)),
                )
                .await;
                answer.map_err(|e| {
                    MembershipError::Failed(format!("forwarding to the leader: {e}"))
                })?
            }
            Err(Redirect::Leader(..) | Redirect::NoLeader) => Err(MembershipError::NoLeader),
            Err(Redirect::Refused(e)) => Err(e),
            Ok(n) => Ok(n),
        }
    }

    async fn change_membership_here(&self, change: &MembershipChange) -> Result<usize, Redirect> {
        let raft = &self.inner.raft;
        // Only the leader's view of the membership is authoritative.
        if raft.metrics().borrow().current_leader != Some(self.inner.id) {
            return Err(self.redirect());
        }
        let membership = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let written = match change {
            MembershipChange::Add { id, address } => {
                if voters.contains(id) {
                    return Ok(membership.nodes().count());
                }
                if self
                    .reader()
                    .replica_retired(*id)
                    .await
                    .map_err(|e| Redirect::Refused(MembershipError::Failed(e.to_string())))?
                {
                    return Err(Redirect::Refused(MembershipError::Retired(*id)));
                }
                let added = raft
                    .add_learner(*id, BasicNode::new(address), false)
                    .await
                    .map_err(Redirect::from)?;
                let target = added.log_id.index;
                let id = *id;
                tracing::info!(id, %address, "added a learner; waiting for it to catch up");
                raft.wait(Some(CATCH_UP_TIMEOUT))
                    .metrics(
                        |m| {
                            m.replication
                                .as_ref()
                                .and_then(|r| r.get(&id))
                                .and_then(|matched| matched.as_ref())
                                .is_some_and(|matched| matched.index >= target)
                        },
                        "the new learner to catch up",
                    )
                    .await
                    .map_err(|_| {
                        Redirect::Refused(MembershipError::CatchUpTimeout(
                            CATCH_UP_TIMEOUT.as_secs(),
                        ))
                    })?;
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(Redirect::from)?
            }
            MembershipChange::Remove { id } => {
                let change = if voters.contains(id) {
                    if voters.len() == 1 {
                        return Err(Redirect::Refused(MembershipError::LastVoter(*id)));
                    }
                    ChangeMembers::RemoveVoters(BTreeSet::from([*id]))
                } else if membership.get_node(id).is_some() {
                    ChangeMembers::RemoveNodes(BTreeSet::from([*id]))
                } else {
                    return Err(Redirect::Refused(MembershipError::NotMember(*id)));
                };
                // Retire the id first, so that it cannot be added back while it goes.
                self.propose(MetaCommand::Cluster(ClusterCommand::RetireReplica {
                    id: *id,
                }))
                .await
                .map_err(|e| match e {
                    MetaError::Unavailable => Redirect::NoLeader,
                    other => Redirect::Refused(MembershipError::Failed(other.to_string())),
                })?;
                let removed = raft
                    .change_membership(change, false)
                    .await
                    .map_err(Redirect::from)?;
                tracing::info!(id, "removed a replica");
                removed
            }
        };
        Ok(written.membership.map_or(0, |m| m.nodes().count()))
    }

    /// Where to send a leader-only request, from this replica's metrics.
    fn redirect(&self) -> Redirect {
        let metrics = self.inner.raft.metrics().borrow().clone();
        match metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| (id, n.addr.clone()))
        }) {
            Some((id, addr)) => Redirect::Leader(id, addr),
            None => Redirect::NoLeader,
        }
    }

    /// Whether this replica is a voter in the membership it has stored, asked of the Raft
    /// core itself: right after start the metrics may not show the stored membership yet.
    async fn is_voter_in_core(&self) -> Result<bool, MetaError> {
        let id = self.inner.id;
        self.inner
            .raft
            .with_raft_state(move |st| {
                st.membership_state
                    .effective()
                    .membership()
                    .voter_ids()
                    .any(|v| v == id)
            })
            .await
            .map_err(|e| MetaError::Raft(e.to_string()))
    }

    /// Every replica in the membership with its role and, when it answers within a short
    /// timeout, its applied index.
    pub async fn replicas(&self) -> Vec<ReplicaInfo> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let (voters, metrics) = (&voters, &metrics);
        let statuses = membership.nodes().map(|(id, node)| {
            let id = *id;
            let address = node.addr.clone();
            async move {
                let status = if id == self.inner.id {
                    Some(self.status())
                } else {
                    client::post_json::<_, NodeStatus>(
                        &self.inner.http,
                        &address,
                        "status",
                        &(),
                        Some(STATUS_TIMEOUT),
                    )
                    .await
                    .ok()
                };
                let role = if metrics.current_leader == Some(id) {
                    Role::Leader
                } else if voters.contains(&id) {
                    Role::Follower
                } else {
                    Role::Learner
                };
                ReplicaInfo {
                    id,
                    address,
                    role,
                    last_applied_index: status.as_ref().and_then(|s| s.last_applied_index),
                    answers: status.is_some(),
                }
            }
        });
        futures::future::join_all(statuses).await
    }
}

/// Why a membership change could not run on this replica.
enum Redirect {
    /// Another replica leads: its id and address.
    Leader(NodeId, String),
    /// No leader is known.
    NoLeader,
    /// The change itself was refused.
    Refused(MembershipError),
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for Redirect {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => Redirect::Leader(id, node.addr),
                    _ => Redirect::NoLeader,
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                use openraft::error::ChangeMembershipError as C;
                match e {
                    C::InProgress(_) => Redirect::Refused(MembershipError::Busy),
                    other => Redirect::Refused(MembershipError::Failed(other.to_string())),
                }
            }
            RaftError::Fatal(f) => Redirect::Refused(MembershipError::Failed(f.to_string())),
        }
    }
}
