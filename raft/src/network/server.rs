//! The axum router answering the replica RPC of [`client`](super::client), to be mounted by
//! the binary under [`RPC_PREFIX`](super::RPC_PREFIX) (`/internal/raft`).
//!
//! # Authentication
//!
//! Every route but `join` sits behind [`require_cluster_key`]: a request without the cluster
//! key in [`CLUSTER_KEY_HEADER`] gets 401 before any handler runs. `join` is how a replica
//! that has no key yet gets one: it must show a join token, checked against the replicated
//! tokens by [`MetaNode::admit`].
//!
//! Handlers only translate JSON to openraft calls and back; openraft's errors ride in the 200
//! body (see the [module table](super)).

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use sha2::{Digest as _, Sha256};

use crate::command::{MetaCommand, MetaResponse};
use crate::error::MembershipError;
use crate::network::{CLUSTER_KEY_HEADER, RPC_BODY_LIMIT_BYTES};
use crate::node::membership::{Admission, AdmissionRequest, MembershipCall};
use crate::node::{MetaNode, NodeStatus};
use crate::types::{LogId, NodeId, TypeConfig};

/// The replica RPC routes of `node`: `join` for holders of a join token, the rest for members.
pub fn router(node: MetaNode) -> Router {
    let members_only = Router::new()
        .route("/append", post(append))
        .route("/vote", post(vote))
        .route("/snapshot", post(snapshot))
        .route("/forward", post(forward))
        .route("/read-index", post(read_index))
        .route("/status", post(status))
        .route("/membership", post(membership))
        .route_layer(middleware::from_fn_with_state(
            node.clone(),
            require_cluster_key,
        ));
    Router::new()
        .merge(members_only)
        .route("/join", post(join))
        .layer(DefaultBodyLimit::max(RPC_BODY_LIMIT_BYTES))
        .with_state(node)
}

/// Lets a request through only if it carries this cluster's key. Both sides are hashed
/// before comparing, so the comparison's timing says nothing about the key.
async fn require_cluster_key(State(node): State<MetaNode>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(CLUSTER_KEY_HEADER)
        .map(|v| Sha256::digest(v.as_bytes()));
    let expected = Sha256::digest(node.identity().cluster_key.as_bytes());
    if presented.as_ref() == Some(&expected) {
        next.run(req).await
    } else {
        tracing::warn!(path = %req.uri().path(), "replica rpc without a valid cluster key");
        (StatusCode::UNAUTHORIZED, "cluster key required").into_response()
    }
}

async fn append(
    State(node): State<MetaNode>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(node.raft().append_entries(req).await)
}

async fn vote(
    State(node): State<MetaNode>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(node.raft().vote(req).await)
}

async fn snapshot(
    State(node): State<MetaNode>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(node.raft().install_snapshot(req).await)
}

/// A follower forwards a write it cannot commit itself; answered only by the leader (others
/// answer `ForwardToLeader`).
async fn forward(
    State(node): State<MetaNode>,
    Json(cmd): Json<MetaCommand>,
) -> Json<Result<MetaResponse, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>> {
    Json(node.raft().client_write(cmd).await.map(|r| r.data))
}

/// A follower's read barrier asks the leader which log id it must have applied.
async fn read_index(
    State(node): State<MetaNode>,
) -> Json<Result<Option<LogId>, RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>> {
    Json(
        node.raft()
            .get_read_log_id()
            .await
            .map(|(read_log_id, _applied)| read_log_id),
    )
}

/// This replica's status, for another replica's listing.
async fn status(State(node): State<MetaNode>) -> Json<NodeStatus> {
    Json(node.status())
}

/// Adds or removes a replica; a member that is not the leader forwards it there.
async fn membership(
    State(node): State<MetaNode>,
    Json(call): Json<MembershipCall>,
) -> Json<Result<usize, MembershipError>> {
    Json(node.change_membership(&call.change, call.forwarded).await)
}

/// Admits a new replica that shows a valid join token: answers its id and the cluster key
/// (and the cluster CA, if any).
async fn join(
    State(node): State<MetaNode>,
    Json(req): Json<AdmissionRequest>,
) -> Json<Result<Admission, MembershipError>> {
    Json(node.admit(&req).await)
}
