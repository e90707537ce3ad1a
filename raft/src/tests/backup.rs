//! Backup and restore at the store level: a backup of a running node restores as a new
//! one-replica cluster that serves the data, takes new writes, records its address and admits
//! a joining replica (which receives the restored snapshot); old join tokens admit nobody; a
//! failed restore changes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::support::{digest, link, repo, tag, Put, AT_MS};
use crate::backup::{
    restore, BackupError, BackupHeader, Encryption, Passphrase, RestoreOptions, Restored,
};
use crate::identity::sha256_hex;
use crate::{
    AccessCommand, ClusterCommand, MembershipError, MetaCommand, MetaError, MetaNode, MetaResponse,
    NodeConfig, Role, StartMode,
};

/// scrypt made cheap: these tests are about the stores, not the key derivation.
const TEST_LOG_N: u8 = 10;

fn config(dir: &Path, advertise_url: &str) -> NodeConfig {
    NodeConfig {
        dir: dir.to_path_buf(),
        advertise_url: advertise_url.to_owned(),
        heartbeat_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        snapshot_after_logs: 5,
        logs_kept_after_snapshot: 0,
        write_timeout_ms: 10_000,
        peer_tls: crate::PeerTls::Off,
    }
}

fn passphrase() -> Encryption {
    Encryption::Passphrase(Passphrase::for_writing("a long enough passphrase".to_owned()).unwrap())
}

async fn until_leader(node: &MetaNode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.status().role != Role::Leader {
        assert!(Instant::now() < deadline, "no leader: {:?}", node.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves the node's replica RPC on `listener`.
fn serve(node: &MetaNode, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().nest(crate::network::RPC_PREFIX, node.rpc_router());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// A one-node cluster with a tagged manifest, a user, a join token (returned), replica ids
/// handed out and one retired, and enough entries for snapshots and a purged log.
async fn populated(dir: &Path) -> (MetaNode, String) {
    let node = MetaNode::start(config(dir, "http://127.0.0.1:9"), StartMode::Create)
        .await
        .unwrap();
    assert_eq!(
        node.propose(link("app", 1)).await.unwrap(),
        MetaResponse::Ok
    );
    let mut put = Put::new("app", 10);
    put.blobs = vec![1];
    put.tag = Some("latest");
    assert_eq!(node.propose(put.cmd()).await.unwrap(), MetaResponse::Ok);
    let user = MetaCommand::Access(AccessCommand::CreateUser {
        name: "admin".to_owned(),
        password_hash: "$argon2id$stand-in".to_owned(),
        admin: true,
        at_ms: AT_MS,
    });
    assert_eq!(node.propose(user).await.unwrap(), MetaResponse::Ok);
    for _ in 0..3 {
        node.propose(MetaCommand::Cluster(ClusterCommand::AllocateReplicaId))
            .await
            .unwrap();
    }
    node.propose(MetaCommand::Cluster(ClusterCommand::RetireReplica {
        id: 2,
    }))
    .await
    .unwrap();
    for n in 2..9 {
        node.propose(link("lib", n)).await.unwrap();
    }
    let token = node.create_join_token(None).await.unwrap();
    (node, token)
}

/// A backup of `node` as the bytes an HTTP body would carry.
async fn backup_bytes(node: &MetaNode, encryption: Encryption) -> (BackupHeader, Vec<u8>) {
    let prepared = node
        .prepare_backup()
        .await
        .unwrap()
        .with_work_factor(TEST_LOG_N);
    let header = prepared.header().clone();
    let mut stream = Box::pin(prepared.into_stream(encryption));
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (header, bytes)
}

async fn restore_bytes(
    bytes: Vec<u8>,
    encryption: Encryption,
    dir: &Path,
    replace: bool,
) -> Result<Restored, BackupError> {
    let options = RestoreOptions {
        dir: dir.to_path_buf(),
        replace,
        advertise: None,
    };
    restore(std::io::Cursor::new(bytes), encryption, options, |_| {}).await
}

#[tokio::test]
async fn a_backup_restores_as_a_new_cluster_that_serves_the_data_and_admits_replicas() {
    let old_dir = tempfile::tempdir().unwrap();
    let (old, old_token) = populated(old_dir.path()).await;
    let (header, bytes) = backup_bytes(&old, passphrase()).await;
    let applied = old.status().last_applied_index.unwrap();
    assert_eq!(header.cluster_id, old.cluster_id());
    assert_eq!(header.replica_id, 1);
    assert!(header.last_applied.index <= applied && header.last_applied.index > 10);
    assert_eq!(header.tables["users"], 1);
    assert_eq!(header.tables["tags"], 1);
    assert_eq!(header.tables["join_tokens"], 1);
    assert_eq!(header.blob_count, 8, "app's blob 1 and lib's 2..=8");
    assert_eq!(header.membership.len(), 1);
    old.shutdown().await.unwrap();
    drop(old);

    let new_dir = tempfile::tempdir().unwrap();
    let raft_dir = new_dir.path().join("raft");
    let restored = restore_bytes(bytes, passphrase(), &raft_dir, false)
        .await
        .unwrap();
    assert_ne!(restored.cluster_id, header.cluster_id);
    assert_eq!(restored.replica_id, 1);
    assert_eq!(restored.dropped_join_tokens, 1);
    let blobs: Vec<_> = restored
        .blobs
        .digests()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(blobs.len(), 8);
    assert!(blobs.contains(&digest(1)));
    drop(restored);
    // Only the replica is left in the data directory: no working files.
    let names: Vec<_> = std::fs::read_dir(new_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["raft"]);

    let (listener, url) = bind().await;
    let node = MetaNode::start(config(&raft_dir, &url), StartMode::Create)
        .await
        .unwrap();
    let server = serve(&node, listener);
    // Local reads work before any election.
    let r = node.reader();
    assert_eq!(
        r.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(10))
    );
    assert!(r.user("admin").await.unwrap().unwrap().admin);
    assert!(!r
        .join_token_valid(&sha256_hex(&old_token), AT_MS)
        .await
        .unwrap());
    assert!(!r.replica_retired(2).await.unwrap());

    assert!(node.record_restored_address().await.unwrap());
    until_leader(&node).await;
    let replicas = node.replicas().await;
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].address, url);
    assert_eq!(node.cluster_id(), r_cluster_id(&raft_dir).await);
    let status = node.status();
    assert!(status.term > header.last_applied.term, "{status:?}");
    assert_eq!(
        node.propose(link("app", 2)).await.unwrap(),
        MetaResponse::Ok
    );
    assert!(node.status().last_applied_index.unwrap() > header.last_applied.index + 1);

    // An old token admits nobody; a new one admits a replica, numbered from 2 again.
    let (stranger_listener, stranger_url) = bind().await;
    drop(stranger_listener);
    let stranger_dir = tempfile::tempdir().unwrap();
    let refused = MetaNode::start(
        config(stranger_dir.path(), &stranger_url),
        StartMode::Join {
            url: url.clone(),
            token: old_token,
        },
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(MetaError::Membership(MembershipError::InvalidJoinToken))
        ),
        "{refused:?}"
    );
    let token = node.create_join_token(None).await.unwrap();
    let (joiner_listener, joiner_url) = bind().await;
    let joiner_dir = tempfile::tempdir().unwrap();
    let joiner = MetaNode::start(
        config(joiner_dir.path(), &joiner_url),
        StartMode::Join {
            url: url.clone(),
            token,
        },
    )
    .await
    .unwrap();
    let joiner_server = serve(&joiner, joiner_listener);
    let joined = joiner.finish_join().await.unwrap().unwrap();
    assert_eq!((joined.replica_id, joined.replicas), (2, 2));
    joiner.read_barrier().await.unwrap();
    let jr = joiner.reader();
    assert_eq!(
        jr.resolve_tag(&repo("app"), &tag("latest")).await.unwrap(),
        Some(digest(10))
    );
    assert_eq!(
        jr.blob_link(&repo("app"), &digest(2)).await.unwrap(),
        Some(102)
    );
    assert!(jr.user("admin").await.unwrap().is_some());

    joiner.shutdown().await.unwrap();
    joiner_server.abort();
    node.shutdown().await.unwrap();
    server.abort();
    drop(node);

    // A restart keeps the recorded address and does not record it again.
    let node = MetaNode::start(config(&raft_dir, &url), StartMode::Create)
        .await
        .unwrap();
    assert!(!node.record_restored_address().await.unwrap());
    assert_eq!(
        node.reader()
            .resolve_tag(&repo("app"), &tag("latest"))
            .await
            .unwrap(),
        Some(digest(10))
    );
    node.shutdown().await.unwrap();
}

/// The cluster id recorded in a replica directory.
async fn r_cluster_id(dir: &Path) -> String {
    crate::identity::Identity::load(dir)
        .await
        .unwrap()
        .unwrap()
        .cluster_id
}

#[tokio::test]
async fn a_failed_restore_changes_nothing_and_replace_is_explicit() {
    let old_dir = tempfile::tempdir().unwrap();
    let (old, _) = populated(old_dir.path()).await;
    let (_, bytes) = backup_bytes(&old, passphrase()).await;
    let (_, plain) = backup_bytes(&old, Encryption::None).await;
    let newer_schema = old
        .prepare_backup()
        .await
        .unwrap()
        .alter_database(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (99991231000000, 'from the future', 1, x'00', 0)",
        )
        .await;
    let newer_schema =
        tokio::task::spawn_blocking(move || newer_schema.write_to(Vec::new(), &Encryption::None))
            .await
            .unwrap()
            .unwrap();
    old.shutdown().await.unwrap();

    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let raft_dir = data.join("raft");
    let wrong = Encryption::Passphrase(Passphrase::new("not the passphrase".to_owned()).unwrap());
    let mut cut = bytes.clone();
    cut.truncate(bytes.len() - 100);
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let cases: Vec<(&str, Vec<u8>, Encryption)> = vec![
        ("wrong passphrase", bytes.clone(), wrong),
        ("truncated", cut, passphrase()),
        ("flipped byte", flipped, passphrase()),
        ("no passphrase", bytes.clone(), Encryption::None),
        ("newer schema", newer_schema, Encryption::None),
    ];
    for (what, input, encryption) in cases {
        let result = restore_bytes(input, encryption, &raft_dir, false).await;
        assert!(result.is_err(), "{what}: restored");
        assert!(!data.exists(), "{what}: left {data:?} behind");
        match (what, result) {
            ("wrong passphrase", Err(BackupError::WrongPassphrase))
            | ("truncated", Err(BackupError::Truncated | BackupError::Damaged(_)))
            | ("flipped byte", Err(BackupError::Damaged(_)))
            | ("no passphrase", Err(BackupError::NeedsPassphrase))
            | ("newer schema", Err(BackupError::NewerSchema(99_991_231_000_000))) => {}
            (what, other) => panic!("{what}: {other:?}"),
        }
    }

    // A replica already there is refused, then replaced only when asked; blob storage beside
    // it is never touched.
    std::fs::create_dir_all(&raft_dir).unwrap();
    std::fs::write(raft_dir.join("cluster.json"), b"{}").unwrap();
    std::fs::create_dir_all(data.join("storage/blobs")).unwrap();
    std::fs::write(data.join("storage/blobs/keep"), b"blob").unwrap();
    let refused = restore_bytes(bytes.clone(), passphrase(), &raft_dir, false).await;
    assert!(
        matches!(refused, Err(BackupError::NotEmpty(_))),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(raft_dir.join("cluster.json")).unwrap(), b"{}");
    let restored = restore_bytes(plain, Encryption::None, &raft_dir, true)
        .await
        .unwrap();
    drop(restored);
    assert_ne!(std::fs::read(raft_dir.join("cluster.json")).unwrap(), b"{}");
    assert!(raft_dir.join(crate::STATE_DB_FILE).exists());
    assert_eq!(
        std::fs::read(data.join("storage/blobs/keep")).unwrap(),
        b"blob"
    );
    let mut names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["raft", "storage"]);
}
