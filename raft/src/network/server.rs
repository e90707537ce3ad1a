//! The axum router answering the replica RPC of [`client`](super::client), to be mounted by
//! the binary under [`RPC_PREFIX`](super::RPC_PREFIX) (`/internal/raft`).
//!
//! # Authentication
//!
//! There is none yet: anyone who can reach this router can vote, append entries, install a
//! snapshot and write metadata. TODO(#5): check the cluster's shared secret header (or the
//! peer certificate) in a `route_layer` on [`router`], before any handler runs, and reject
//! with 401 otherwise. Until then the binary must not expose this router beyond the replicas.
//!
//! Handlers only translate JSON to openraft calls and back; openraft's errors ride in the 200
//! body (see the [module table](super)).

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use crate::command::{MetaCommand, MetaResponse};
use crate::network::RPC_BODY_LIMIT_BYTES;
use crate::types::{LogId, NodeId, Raft, TypeConfig};

/// The replica RPC routes (`/append`, `/vote`, `/snapshot`, `/forward`, `/read-index`) for
/// `raft`. Unauthenticated for now: see the module docs, TODO(#5).
pub fn router(raft: Raft) -> Router {
    Router::new()
        .route("/append", post(append))
        .route("/vote", post(vote))
        .route("/snapshot", post(snapshot))
        .route("/forward", post(forward))
        .route("/read-index", post(read_index))
        .layer(DefaultBodyLimit::max(RPC_BODY_LIMIT_BYTES))
        .with_state(raft)
}

async fn append(
    State(raft): State<Raft>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.append_entries(req).await)
}

async fn vote(
    State(raft): State<Raft>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(raft.vote(req).await)
}

async fn snapshot(
    State(raft): State<Raft>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(raft.install_snapshot(req).await)
}

/// A follower forwards a write it cannot commit itself; answered only by the leader (others
/// answer `ForwardToLeader`).
async fn forward(
    State(raft): State<Raft>,
    Json(cmd): Json<MetaCommand>,
) -> Json<Result<MetaResponse, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>> {
    Json(raft.client_write(cmd).await.map(|r| r.data))
}

/// A follower's read barrier asks the leader which log id it must have applied.
async fn read_index(
    State(raft): State<Raft>,
) -> Json<Result<Option<LogId>, RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>> {
    Json(
        raft.get_read_log_id()
            .await
            .map(|(read_log_id, _applied)| read_log_id),
    )
}
