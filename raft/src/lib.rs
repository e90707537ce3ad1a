//! Berth's replicated metadata store: an openraft node whose log and state machine live in
//! SQLite, plus the replica-to-replica RPC.
//!
//! - [`MetaNode`] is what the registry holds: [`propose`](MetaNode::propose) a
//!   [`MetaCommand`], read through [`MetaReader`] after a
//!   [`read_barrier`](MetaNode::read_barrier) when needed, mount
//!   [`rpc_router`](MetaNode::rpc_router) under `/internal/raft`.
//! - [`LogStore`] (`log.db`) and [`StateMachineStore`] (`state.db`, `snapshots/`) implement
//!   openraft's storage traits; they are public for tests and benchmarks.
//!
//! - [`backup`]: consistent, encrypted backups of all metadata from a running cluster, and
//!   restoring a new cluster from one.
//!
//! This crate knows the metadata schema but not HTTP registry semantics: no OCI routes, no
//! error JSON, no authentication decisions (ARCHITECTURE.md).

pub mod backup;
mod command;
mod db;
mod error;
mod identity;
mod log_store;
pub mod network;
mod node;
mod reader;
mod repair;
mod state_machine;
mod types;

pub use crate::command::{
    AccessCommand, ClusterCommand, GcCommand, MetaCommand, MetaResponse, Redacted, Rejection,
};
pub use crate::error::{MembershipError, MetaError, Result};
pub use crate::identity::IDENTITY_FILE;
pub use crate::log_store::{LogStore, LOG_DB_FILE};
pub use crate::node::{
    ca_fingerprint, JoinOutcome, MetaNode, NodeConfig, NodeStatus, PeerTls, ReplicaInfo, Role,
    StartMode, CA_PEM_PATH,
};
pub use crate::reader::{
    ClusterCa, GcPlan, LinkedBlob, ManifestInfo, MetaReader, Referrer, RepositoryRecord,
    StoredGrant, StoredKey, StoredManifest, StoredUser, TeamRecord,
};
pub use crate::repair::{emergency_repair, RepairReport};
pub use crate::state_machine::{StateMachineStore, SNAPSHOT_DIR, STATE_DB_FILE};
pub use crate::types::{
    Entry, LogId, NodeId, Raft, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};

#[cfg(test)]
mod tests;
