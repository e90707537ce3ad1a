//! `berth emergency-repair`: turn a stopped replica whose cluster lost its majority for good
//! into a one-replica cluster that keeps all of its data.
//!
//! Raft cannot change the membership without a quorum, so this works offline on the replica's
//! own files: it appends to the log a membership entry whose only voter is this replica, at
//! the next index and in the last entry's term. openraft takes the last membership in the log
//! as effective at start, so the replica elects itself, commits that entry with its first
//! leader entry, and serves; new replicas can then join it. Whatever the lost replicas had
//! committed that never reached this one is lost: that is what "emergency" means.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, EntryPayload, Membership, StorageHelper};
use serde::Serialize;

use crate::error::MetaError;
use crate::identity::Identity;
use crate::log_store::LogStore;
use crate::state_machine::StateMachineStore;
use crate::types::{Entry, LogId, NodeId};

/// What [`emergency_repair`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// The surviving replica, now the only member.
    pub replica_id: NodeId,
    /// Its address in the new membership.
    pub address: String,
    /// The replicas that were dropped from the membership.
    pub removed: Vec<NodeId>,
    /// Index of the membership entry written.
    pub log_index: u64,
}

/// Rewrites the membership of the stopped replica in `dir` (its Raft directory) to itself
/// alone. `address` replaces its recorded address when given.
///
/// # Errors
/// [`MetaError::Config`] when `dir` holds no replica or nothing to repair; storage errors
/// when its files cannot be read or written.
pub async fn emergency_repair(
    dir: &Path,
    address: Option<&str>,
) -> Result<RepairReport, MetaError> {
    let identity = Identity::load(dir).await?.ok_or_else(|| {
        MetaError::Config(format!(
            "{} holds no replica (no cluster.json)",
            dir.display()
        ))
    })?;
    let id = identity.replica_id;
    let mut log = LogStore::open(dir).await?;
    let mut state_machine = StateMachineStore::open(dir).await?;
    let result = repair(&mut log, &mut state_machine, id, address).await;
    state_machine.close().await;
    state_machine.reader().close().await;
    result
}

async fn repair(
    log: &mut LogStore,
    state_machine: &mut StateMachineStore,
    id: NodeId,
    address: Option<&str>,
) -> Result<RepairReport, MetaError> {
    let raft_err = |e: openraft::StorageError<NodeId>| MetaError::Raft(e.to_string());
    let membership = StorageHelper::new(log, state_machine)
        .get_membership()
        .await
        .map_err(raft_err)?;
    let effective = membership.effective().membership().clone();
    let address = match address {
        Some(a) => a.to_owned(),
        None => effective
            .get_node(&id)
            .map(|n| n.addr.clone())
            .ok_or_else(|| {
                MetaError::Config(format!(
                    "replica {id} has no recorded address; give one with --advertise"
                ))
            })?,
    };
    let removed: Vec<NodeId> = effective
        .nodes()
        .map(|(n, _)| *n)
        .filter(|n| *n != id)
        .collect();

    let (last_applied, _) = state_machine.applied_state().await.map_err(raft_err)?;
    let state = log.get_log_state().await.map_err(raft_err)?;
    let last: LogId = state.last_log_id.or(last_applied).ok_or_else(|| {
        MetaError::Config("the replica has no log: it never joined a cluster".to_owned())
    })?;
    let entry = Entry {
        log_id: LogId::new(last.leader_id, last.index + 1),
        payload: EntryPayload::Membership(Membership::new(
            vec![BTreeSet::from([id])],
            BTreeMap::from([(id, BasicNode::new(&address))]),
        )),
    };
    log.append_batch([entry])
        .await
        .map_err(|e| MetaError::Raft(format!("writing the new membership: {e}")))?;
    tracing::warn!(
        id,
        ?removed,
        "emergency repair: this replica is now the only member"
    );
    Ok(RepairReport {
        replica_id: id,
        address,
        removed,
        log_index: last.index + 1,
    })
}
