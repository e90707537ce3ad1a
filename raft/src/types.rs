//! openraft type configuration of Berth's metadata store, and aliases for its types.
//!
//! Node ids are `u64`; a node's address ([`BasicNode::addr`]) is the replica's HTTP base URL
//! (`http://127.0.0.1:5000`), under which the replica RPC lives at `/internal/raft`.
//! Snapshots are SQLite files, handed around as open [`tokio::fs::File`]s.

use openraft::BasicNode;

use crate::command::{MetaCommand, MetaResponse};

openraft::declare_raft_types!(
    /// The openraft type configuration: commands are [`MetaCommand`]s, responses
    /// [`MetaResponse`]s, snapshots SQLite files.
    pub TypeConfig:
        D = MetaCommand,
        R = MetaResponse,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A replica's id in the cluster.
pub type NodeId = u64;
/// A Raft log entry of this store.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft log id of this store.
pub type LogId = openraft::LogId<NodeId>;
/// A Raft vote of this store.
pub type Vote = openraft::Vote<NodeId>;
/// The cluster membership as stored in the log and the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// Metadata of a snapshot: last included log id, membership, id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
/// A snapshot: its metadata and an open handle to its SQLite file.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// openraft's storage error for this store.
pub type StorageError = openraft::StorageError<NodeId>;
/// The running Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
