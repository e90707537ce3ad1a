//! The openraft network over HTTP (reqwest): one [`HttpNetwork`] per target replica, plus the
//! two calls a follower makes to its leader for [`MetaNode`](crate::MetaNode) (forward a write,
//! ask for the read index).
//!
//! Transport failures (no connection, timeout, a non-200 status) become
//! [`RPCError::Unreachable`], which makes openraft back off; errors openraft itself returned on
//! the peer come back as [`RPCError::RemoteError`].
//!
//! Every request of a member carries the cluster key in [`CLUSTER_KEY_HEADER`]; only the
//! admission request of a replica that is not a member yet goes without it.

use std::error::Error;
use std::fmt;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InstallSnapshotError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::{MetaCommand, MetaResponse};
use crate::error::MetaError;
use crate::network::{CLUSTER_KEY_HEADER, RPC_PREFIX};
use crate::types::{LogId, NodeId, TypeConfig};

/// Builds [`HttpNetwork`]s that share one HTTP client (and its connection pool).
#[derive(Debug, Clone)]
pub struct HttpNetworkFactory {
    http: reqwest::Client,
}

impl HttpNetworkFactory {
    /// A factory whose connections all go through `http`.
    pub fn new(http: reqwest::Client) -> HttpNetworkFactory {
        HttpNetworkFactory { http }
    }
}

/// openraft's connection to one peer replica.
#[derive(Debug)]
pub struct HttpNetwork {
    http: reqwest::Client,
    target: NodeId,
    node: BasicNode,
    /// Whether the last call got through, so that only changes are logged.
    reachable: bool,
}

/// A transport failure: the peer did not give an answer openraft could read.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// The request failed (connect, timeout, body).
    Http(reqwest::Error),
    /// The peer answered with a status other than 200.
    Status(reqwest::StatusCode),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Http(e) => write!(f, "replica rpc: {e}"),
            TransportError::Status(s) => write!(f, "replica rpc: peer answered {s}"),
        }
    }
}

impl Error for TransportError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TransportError::Http(e) => Some(e),
            TransportError::Status(_) => None,
        }
    }
}

impl TransportError {
    /// Whether the request surely never reached the peer, so that retrying cannot apply a
    /// command twice.
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, TransportError::Http(e) if e.is_connect())
    }
}

/// The HTTP client of a member: every request presents the cluster key. With `ca_pem`, peers
/// are reached over HTTPS and trusted only if their certificate chains to that CA (the
/// cluster CA), never the built-in web roots.
pub(crate) fn member_client(
    cluster_key: &str,
    ca_pem: Option<&str>,
) -> Result<reqwest::Client, MetaError> {
    let mut key = reqwest::header::HeaderValue::from_str(cluster_key)
        .map_err(|e| MetaError::Config(format!("cluster key: {e}")))?;
    key.set_sensitive(true);
    let headers = reqwest::header::HeaderMap::from_iter([(
        reqwest::header::HeaderName::from_static(CLUSTER_KEY_HEADER),
        key,
    )]);
    builder(ca_pem)?
        .default_headers(headers)
        .build()
        .map_err(|e| MetaError::Config(format!("http client: {e}")))
}

/// The HTTP client of a replica that is not a member yet (admission only); `ca_pem` as for
/// [`member_client`].
pub(crate) fn plain_client(ca_pem: Option<&str>) -> Result<reqwest::Client, MetaError> {
    builder(ca_pem)?
        .build()
        .map_err(|e| MetaError::Config(format!("http client: {e}")))
}

/// A client builder that trusts only `ca_pem` when given.
fn builder(ca_pem: Option<&str>) -> Result<reqwest::ClientBuilder, MetaError> {
    let builder = reqwest::Client::builder();
    let Some(pem) = ca_pem else {
        return Ok(builder);
    };
    let ca = reqwest::Certificate::from_pem(pem.as_bytes())
        .map_err(|e| MetaError::Config(format!("cluster CA certificate: {e}")))?;
    Ok(builder
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .https_only(true))
}

/// A client that accepts any certificate: only to fetch a member's CA certificate before it
/// can be trusted, which the caller then checks against a fingerprint it already trusts.
pub(crate) fn unverified_client() -> Result<reqwest::Client, MetaError> {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| MetaError::Config(format!("http client: {e}")))
}

fn rpc_url(addr: &str, name: &str) -> String {
    format!("{}{RPC_PREFIX}/{name}", addr.trim_end_matches('/'))
}

/// POSTs `body` as JSON to `{addr}/internal/raft/{name}` and decodes the 200 JSON answer.
pub(crate) async fn post_json<Req, Resp>(
    http: &reqwest::Client,
    addr: &str,
    name: &str,
    body: &Req,
    timeout: Option<std::time::Duration>,
) -> Result<Resp, TransportError>
where
    Req: Serialize + ?Sized,
    Resp: DeserializeOwned,
{
    let mut req = http.post(rpc_url(addr, name)).json(body);
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    let res = req.send().await.map_err(TransportError::Http)?;
    if res.status() != reqwest::StatusCode::OK {
        return Err(TransportError::Status(res.status()));
    }
    res.json().await.map_err(TransportError::Http)
}

/// Asks the replica at `addr` (believed to be the leader) to commit `cmd`.
pub(crate) async fn forward_write(
    http: &reqwest::Client,
    addr: &str,
    cmd: &MetaCommand,
) -> Result<
    Result<MetaResponse, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>,
    TransportError,
> {
    post_json(http, addr, "forward", cmd, None).await
}

/// Asks the replica at `addr` (believed to be the leader) for the log id a linearizable read
/// must wait for.
pub(crate) async fn read_index(
    http: &reqwest::Client,
    addr: &str,
) -> Result<
    Result<Option<LogId>, RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>>,
    TransportError,
> {
    post_json(http, addr, "read-index", &(), None).await
}

impl HttpNetwork {
    async fn call<Req, Resp, E>(
        &mut self,
        name: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = post_json(
            &self.http,
            &self.node.addr,
            name,
            req,
            Some(option.hard_ttl()),
        )
        .await
        .map_err(|e| {
            if self.reachable {
                tracing::warn!(replica = self.target, addr = %self.node.addr, error = %e, "replica unreachable");
                self.reachable = false;
            }
            RPCError::Unreachable(Unreachable::new(&e))
        })?;
        if !self.reachable {
            tracing::info!(replica = self.target, addr = %self.node.addr, "replica reachable again");
            self.reachable = true;
        }
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetworkFactory {
    type Network = HttpNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> HttpNetwork {
        HttpNetwork {
            http: self.http.clone(),
            target,
            node: node.clone(),
            reachable: true,
        }
    }
}

impl RaftNetwork<TypeConfig> for HttpNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
