//! Replica-to-replica RPC over HTTP: the openraft network client and the axum router that
//! answers it.
//!
//! Every call is a `POST` of a JSON body to `{addr}/internal/raft/<name>`; openraft's own
//! `Result` rides in a 200 JSON body, so only transport failures are HTTP-level failures.
//!
//! | path          | request                              | 200 body                                      |
//! |---------------|--------------------------------------|-----------------------------------------------|
//! | `append`      | `AppendEntriesRequest`               | `Result<AppendEntriesResponse, RaftError>`    |
//! | `vote`        | `VoteRequest`                        | `Result<VoteResponse, RaftError>`             |
//! | `snapshot`    | `InstallSnapshotRequest` (one chunk) | `Result<InstallSnapshotResponse, RaftError>`  |
//! | `forward`     | `MetaCommand`                        | `Result<MetaResponse, RaftError<ClientWriteError>>` |
//! | `read-index`  | `null`                               | `Result<Option<LogId>, RaftError<CheckIsLeaderError>>` |
//! | `status`      | `null`                               | `NodeStatus`                                  |
//! | `membership`  | `MembershipCall` (add or remove)     | `Result<usize, MembershipError>`              |
//! | `join`        | `AdmissionRequest` (token, address)  | `Result<Admission, MembershipError>` (identity, cluster CA) |
//!
//! Authentication: every route but `join` needs the cluster key in [`CLUSTER_KEY_HEADER`]
//! (else 401); `join` needs a valid join token in its body.

pub mod client;
pub mod server;

/// Largest request body the replica RPC accepts. An append carries at most
/// [`MAX_PAYLOAD_ENTRIES`] entries, each a manifest of at most 4 MiB (JSON-escaped once more).
pub const RPC_BODY_LIMIT_BYTES: usize = 512 * 1024 * 1024;

/// Entries per append RPC, so that an append of large manifests stays under
/// [`RPC_BODY_LIMIT_BYTES`].
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;

/// The header in which members present the cluster key.
pub const CLUSTER_KEY_HEADER: &str = "x-berth-cluster-key";

/// The prefix under which the binary mounts [`server::router`], and under which the client
/// calls peers.
pub const RPC_PREFIX: &str = "/internal/raft";
