//! `MetaNode` as a one-node cluster: commit, read, restart, time out; and the replica RPC
//! router answered over real HTTP on loopback.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::BasicNode;

use super::support::{digest, link, repo, tag, Put};
use crate::network::client::{self, HttpNetworkFactory};
use crate::{
    LogStore, MetaCommand, MetaError, MetaNode, MetaResponse, NodeConfig, Raft, Rejection, Role,
    StartMode, StateMachineStore, Vote,
};

fn config(dir: &Path, write_timeout_ms: u64) -> NodeConfig {
    NodeConfig {
        dir: dir.to_path_buf(),
        advertise_url: "http://127.0.0.1:9".to_owned(),
        heartbeat_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        snapshot_after_logs: 5,
        logs_kept_after_snapshot: 0,
        write_timeout_ms,
        peer_tls: crate::PeerTls::Off,
    }
}

/// Waits (bounded) until the node reports itself leader.
async fn until_leader(node: &MetaNode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.status().role != Role::Leader {
        assert!(Instant::now() < deadline, "no leader: {:?}", node.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_single_node_commits_reads_and_recovers_everything_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = MetaNode::start(config(dir.path(), 10_000), StartMode::Create)
        .await
        .unwrap();

    // Proposed right away: propose waits for the election instead of failing.
    assert_eq!(
        node.propose(link("app", 1)).await.unwrap(),
        MetaResponse::Ok
    );
    let mut put = Put::new("app", 10);
    put.blobs = vec![1];
    put.tag = Some("latest");
    assert_eq!(node.propose(put.cmd()).await.unwrap(), MetaResponse::Ok);
    // Enough entries to build snapshots (snapshot_after_logs = 5) and purge the log.
    for n in 2..14 {
        assert_eq!(
            node.propose(link("lib", n)).await.unwrap(),
            MetaResponse::Ok
        );
    }
    let unknown = MetaCommand::DeleteTag {
        repo: repo("app"),
        tag: tag("nope"),
    };
    assert_eq!(
        node.propose(unknown).await.unwrap(),
        MetaResponse::Rejected(Rejection::TagUnknown)
    );

    node.read_barrier().await.unwrap();
    let r = node.reader();
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(10))
    );
    assert_eq!(
        r.blob_link(&repo("lib"), &digest(13)).await.unwrap(),
        Some(113)
    );
    let status = node.status();
    assert_eq!(status.id, 1);
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.leader_id, Some(1));
    assert!(status.term >= 1);
    let applied = status.last_applied_index.expect("something applied");
    assert!(applied >= 15, "{status:?}");
    assert!(status.last_log_index >= Some(applied));

    node.shutdown().await.unwrap();
    assert!(matches!(
        node.propose(link("app", 2)).await,
        Err(MetaError::Unavailable)
    ));
    drop(node);

    let node = MetaNode::start(config(dir.path(), 10_000), StartMode::Create)
        .await
        .unwrap();
    let r = node.reader();
    // Local reads work at once, before any election.
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(10))
    );
    assert_eq!(
        r.blob_link(&repo("lib"), &digest(13)).await.unwrap(),
        Some(113)
    );
    assert_eq!(
        r.manifest(&repo("app"), &digest(10))
            .await
            .unwrap()
            .unwrap()
            .body,
        put.body().into_bytes()
    );
    assert_eq!(
        node.propose(link("app", 2)).await.unwrap(),
        MetaResponse::Ok
    );
    node.read_barrier().await.unwrap();
    until_leader(&node).await;
    assert!(node.status().last_applied_index.unwrap() > applied);
    assert_eq!(
        r.blob_link(&repo("app"), &digest(2)).await.unwrap(),
        Some(102)
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_quorum_propose_and_read_barrier_are_unavailable_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A cluster of two voters whose second member never answers: no leader can be elected.
    {
        let cfg = config(dir.path(), 0);
        let raft_config = openraft::Config {
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_timeout_min_ms,
            election_timeout_max: cfg.election_timeout_max_ms,
            ..Default::default()
        }
        .validate()
        .unwrap();
        let raft = Raft::new(
            1,
            Arc::new(raft_config),
            HttpNetworkFactory::new(reqwest::Client::new()),
            LogStore::open(dir.path()).await.unwrap(),
            StateMachineStore::open(dir.path()).await.unwrap(),
        )
        .await
        .unwrap();
        let members = BTreeMap::from([
            (1, BasicNode::new("http://127.0.0.1:9")),
            (2, BasicNode::new("http://127.0.0.1:9")),
        ]);
        raft.initialize(members).await.unwrap();
        raft.shutdown().await.unwrap();
    }

    let node = MetaNode::start(config(dir.path(), 1_000), StartMode::Create)
        .await
        .unwrap();
    let started = Instant::now();
    assert!(matches!(
        node.propose(link("app", 1)).await,
        Err(MetaError::Unavailable)
    ));
    assert!(matches!(
        node.read_barrier().await,
        Err(MetaError::Unavailable)
    ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(node.status().leader_id, None);
    assert!(!node.reader().repository_exists(&repo("app")).await.unwrap());
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_rpc_router_answers_forwarded_writes_read_index_votes_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let node = MetaNode::start(config(dir.path(), 10_000), StartMode::Create)
        .await
        .unwrap();
    until_leader(&node).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().nest("/internal/raft", node.rpc_router());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // Without the cluster key nothing gets through, not even a status request.
    let stranger = reqwest::Client::new();
    let refused = client::forward_write(&stranger, &addr, &link("app", 1)).await;
    assert!(
        matches!(refused, Err(client::TransportError::Status(s)) if s == reqwest::StatusCode::UNAUTHORIZED),
        "{refused:?}"
    );
    let wrong_key = client::member_client("not-the-key", None).unwrap();
    assert!(client::read_index(&wrong_key, &addr).await.is_err());
    assert!(!node.reader().repository_exists(&repo("app")).await.unwrap());

    let http = client::member_client(&node.identity().cluster_key, None).unwrap();
    let written = client::forward_write(&http, &addr, &link("app", 1))
        .await
        .unwrap();
    assert_eq!(written.unwrap(), MetaResponse::Ok);
    assert_eq!(
        node.reader()
            .blob_link(&repo("app"), &digest(1))
            .await
            .unwrap(),
        Some(101)
    );

    let read_log_id = client::read_index(&http, &addr)
        .await
        .unwrap()
        .unwrap()
        .expect("a read log id");
    assert!(Some(read_log_id.index) <= node.status().last_applied_index);

    let mut factory = HttpNetworkFactory::new(http.clone());
    let mut peer = factory.new_client(1, &BasicNode::new(&addr)).await;
    let option = RPCOption::new(Duration::from_secs(5));
    let vote = peer
        .vote(VoteRequest::new(Vote::new(0, 2), None), option.clone())
        .await
        .unwrap();
    assert!(!vote.vote_granted, "a stale candidate gets no vote");
    let append = AppendEntriesRequest {
        vote: Vote::new_committed(0, 2),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    peer.append_entries(append, option.clone()).await.unwrap();

    let mut gone = factory
        .new_client(3, &BasicNode::new("http://127.0.0.1:9"))
        .await;
    let err = gone
        .vote(VoteRequest::new(Vote::new(5, 2), None), option)
        .await
        .unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    server.abort();
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_proposals_are_committed_together_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let node = MetaNode::start(config(dir.path(), 10_000), StartMode::Create)
        .await
        .unwrap();
    until_leader(&node).await;
    let before = node.status().last_log_index.unwrap_or(0);

    // 64 links and, among them, 16 refused deletes of tags that do not exist.
    let proposals = (0..80u64).map(|n| {
        let node = node.clone();
        async move {
            let cmd = if n % 5 == 4 {
                MetaCommand::DeleteTag {
                    repo: repo("app"),
                    tag: tag(&format!("missing-{n}")),
                }
            } else {
                link("app", 1_000 + n)
            };
            (n, node.propose(cmd).await.unwrap())
        }
    });
    for (n, answer) in futures::future::join_all(proposals).await {
        let expected = if n % 5 == 4 {
            MetaResponse::Rejected(Rejection::TagUnknown)
        } else {
            MetaResponse::Ok
        };
        assert_eq!(answer, expected, "proposal {n}");
    }
    for n in (0..80u64).filter(|n| n % 5 != 4) {
        assert_eq!(
            node.reader()
                .blob_link(&repo("app"), &digest(1_000 + n))
                .await
                .unwrap(),
            Some(1_100 + n),
            "link {n}"
        );
    }
    let entries = node.status().last_log_index.unwrap() - before;
    assert!(
        entries < 80,
        "80 concurrent proposals took {entries} log entries: none were batched"
    );
    node.shutdown().await.unwrap();
}
