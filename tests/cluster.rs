//! Three-replica clusters of real `berth` processes on 127.0.0.1 sharing one blob directory:
//! reads after writes across replicas, failover without losing acknowledged pushes, quorum
//! loss and recovery, joins by log and by snapshot, uploads across replicas, membership
//! commands, emergency repair.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::cluster::{berth_cli, Cluster};
use support::oci::{
    assert_tag, metrics_text, push_blob, push_image, put_manifest, sha256, OCI_CONFIG, OCI_LAYER,
    OCI_MANIFEST,
};
use support::{client, ADMIN_PASSWORD};

/// Clusters take both cores: one test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A distinct image manifest per `i` over the same config and layer.
fn numbered_manifest(config: &[u8], layer: &[u8], i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": sha256(config), "size": config.len() },
        "layers": [{ "mediaType": OCI_LAYER, "digest": sha256(layer), "size": layer.len() }],
        "annotations": { "n": i.to_string() },
    }))
    .unwrap()
}

async fn get_json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Value of an unlabelled metric in a Prometheus text page.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_push_through_one_replica_is_read_through_the_others_at_once() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3);
    let c = client();
    let [a, b, cc] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    assert_eq!(
        [a.replica_id, b.replica_id, cc.replica_id],
        [1, 2, 3],
        "ids are handed out in join order"
    );

    for i in 0..5 {
        let repo = format!("team/app{i}");
        let digest = push_image(&c, &a.url, &repo, "v1", &format!("seed {i}")).await;
        // No waiting: the read barrier makes the other replicas see it.
        assert_tag(&b.url, &repo, "v1", &digest).await;
        assert_tag(&cc.url, &repo, "v1", &digest).await;
    }
    let blob = push_blob(&c, &b.url, "team/app0", b"pushed through b").await;
    let res = c
        .get(cc.at(&format!("/v2/team/app0/blobs/{blob}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(&res.bytes().await.unwrap()[..], b"pushed through b");

    let catalogs: Vec<Value> = futures::future::join_all(
        cluster
            .nodes
            .iter()
            .map(|n| get_json_owned(n.at("/v2/_catalog"))),
    )
    .await;
    assert_eq!(catalogs[0]["repositories"].as_array().unwrap().len(), 5);
    assert!(catalogs.iter().all(|c| c == &catalogs[0]), "{catalogs:?}");
    for node in &cluster.nodes {
        let tags = get_json(&node.at("/v2/team/app3/tags/list")).await;
        assert_eq!(tags["tags"], json!(["v1"]));
    }

    // Health and metrics on every replica agree on one leader and one term.
    let mut leaders = Vec::new();
    for node in &cluster.nodes {
        let res = c.get(node.at("/health")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let h: Value = res.json().await.unwrap();
        assert_eq!(h["replica_id"], node.replica_id);
        assert_eq!(h["storage_reachable"], true);
        leaders.push(h["leader_id"].clone());
        let ping = c.get(node.at("/_ping")).send().await.unwrap();
        assert_eq!(ping.status(), StatusCode::OK);
        let text = metrics_text(&node.url).await;
        assert!(metric(&text, "berth_raft_term").unwrap() >= 1, "{text}");
        assert!(metric(&text, "berth_raft_applied_index").unwrap() > 0);
        assert!(text
            .contains("berth_http_requests_total{route=\"health\",method=\"GET\",status=\"200\"}"));
    }
    assert!(
        leaders.iter().all(|l| l == &leaders[0] && l.is_u64()),
        "{leaders:?}"
    );
    let leader = &cluster.nodes[cluster.leader().await];
    let text = metrics_text(&leader.url).await;
    assert_eq!(metric(&text, "berth_raft_is_leader"), Some(1));
    assert!(metric(&text, "berth_raft_commit_index").unwrap() > 0);
    assert!(metric(&text, "berth_http_received_bytes_total").unwrap() > 0);
    assert!(
        text.contains("route=\"manifest\",method=\"PUT\",status=\"201\"") || !leader.url.eq(&a.url)
    );
}

async fn get_json_owned(url: String) -> Value {
    get_json(&url).await
}

#[tokio::test]
async fn killing_the_leader_loses_no_acknowledged_push() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3);
    let c = client();
    let (config, layer) = (b"{\"os\":\"linux\"}".to_vec(), b"the layer".to_vec());
    push_blob(&c, &cluster.nodes[0].url, "stream/app", &config).await;
    push_blob(&c, &cluster.nodes[0].url, "stream/app", &layer).await;

    // A client pushes a stream of manifests, moving to the next replica when one fails, as a
    // load balancer would.
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url.clone()).collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pusher = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut acked: Vec<(String, String, Instant)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        for i in 0..5_000 {
            if *stop_rx.borrow() || Instant::now() > deadline {
                break;
            }
            let manifest = numbered_manifest(&config, &layer, i);
            let tag = format!("t{i}");
            let url = &urls[i % urls.len()];
            let res = http
                .put(format!("{url}/v2/stream/app/manifests/{tag}"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.clone())
                .send()
                .await;
            match res {
                Ok(r) if r.status() == StatusCode::CREATED => {
                    acked.push((tag, sha256(&manifest), Instant::now()));
                }
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(
                        r.headers().contains_key("retry-after"),
                        "503 without Retry-After"
                    );
                }
                Ok(r) => panic!(
                    "unexpected {} for {tag}: {}",
                    r.status(),
                    r.text().await.unwrap()
                ),
                Err(_) => {} // the killed replica: the next push goes elsewhere
            }
        }
        acked
    });

    let leader = cluster.leader().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nodes[leader].kill();
    let killed_at = Instant::now();
    // Let pushes continue past the election, then stop the client.
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop_tx.send(true).unwrap();
    let acked = pusher.await.unwrap();

    let before = acked.iter().filter(|(_, _, t)| *t < killed_at).count();
    let after: Vec<_> = acked.iter().filter(|(_, _, t)| *t >= killed_at).collect();
    assert!(before > 0, "no push before the kill");
    assert!(
        after.len() >= 5,
        "pushes did not resume after the election: {}",
        after.len()
    );
    eprintln!(
        "failover: {} pushes before the kill, {} after; first write {:?} after the kill",
        before,
        after.len(),
        after[0].2 - killed_at
    );

    for node in cluster.running() {
        for (tag, digest, _) in &acked {
            assert_tag(&node.url, "stream/app", tag, digest).await;
        }
    }
    // The killed replica comes back and catches up.
    cluster.nodes[leader].restart();
    cluster.settled().await;
    let back = &cluster.nodes[leader];
    for (tag, digest, _) in &acked {
        assert_tag(&back.url, "stream/app", tag, digest).await;
    }
    // A push that failed in transit may still have been committed: at least every acked one.
    let tags = get_json(&back.at("/v2/stream/app/tags/list?n=10000")).await;
    assert!(tags["tags"].as_array().unwrap().len() >= acked.len());
}

#[tokio::test]
async fn without_a_majority_writes_fail_fast_with_503_and_recover() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3);
    let c = client();
    let digest = push_image(&c, &cluster.nodes[0].url, "q/app", "before", "before").await;

    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let survivor = &cluster.nodes[0];
    let c = client();
    let started = Instant::now();
    let res = put_manifest(
        &c,
        &survivor.url,
        "q/app",
        "during",
        OCI_MANIFEST,
        &numbered_manifest(b"{\"seed\":\"before\"}", b"layer of before", 1),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    // The leader steps down once it misses its quorum; health follows.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = c.get(survivor.at("/health")).send().await.unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(Instant::now() < deadline, "health stayed {}", res.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    cluster.nodes[1].restart();
    cluster.leader().await;
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let res = put_manifest(
            &c,
            &cluster.nodes[0].url,
            "q/app",
            "after",
            OCI_MANIFEST,
            &numbered_manifest(b"{\"seed\":\"before\"}", b"layer of before", 2),
        )
        .await;
        if res.status() == StatusCode::CREATED {
            break res.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "writes did not recover: {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for node in cluster.running() {
        assert_tag(&node.url, "q/app", "before", &digest).await;
        assert_tag(&node.url, "q/app", "after", &after).await;
    }
}

#[tokio::test]
async fn a_replica_joining_a_compacted_cluster_receives_a_snapshot() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start_with_env(
        3,
        &[
            ("BERTH_RAFT__SNAPSHOT_AFTER_LOGS", "20"),
            ("BERTH_RAFT__LOGS_KEPT_AFTER_SNAPSHOT", "0"),
        ],
    );
    let c = client();
    let base = cluster.nodes[0].url.clone();
    let mut pushed = Vec::new();
    for i in 0..40 {
        let tag = format!("v{i}");
        pushed.push((
            tag.clone(),
            push_image(&c, &base, "snap/app", &tag, &format!("s{i}")).await,
        ));
    }
    // The leader compacts its log: the entries a newcomer needs are gone.
    let leader = &cluster.nodes[cluster.leader().await];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics_text(&leader.url).await;
        if metric(&text, "berth_raft_purged_index").unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log was never compacted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let d = cluster.add_replica();
    let newcomer = &cluster.nodes[d];
    assert_eq!(newcomer.replica_id, 4);
    let text = metrics_text(&newcomer.url).await;
    assert!(
        metric(&text, "berth_raft_snapshot_index").unwrap_or(0) > 0,
        "the newcomer holds no snapshot:\n{text}"
    );
    for (tag, digest) in &pushed {
        assert_tag(&newcomer.url, "snap/app", tag, digest).await;
    }
    let replicas = get_admin(&newcomer.url, "replicas").await;
    assert_eq!(replicas["replicas"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_chunked_upload_started_on_one_replica_finishes_on_another() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3);
    let c = client();
    let [a, b, cc] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&data);
    let (first, rest) = data.split_at(1024 * 1024 + 17);
    let (second, third) = rest.split_at(1024 * 1024);

    let res = c
        .post(a.at("/v2/moving/blob/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let mut location = res.headers()["location"].to_str().unwrap().to_owned();
    let mut offset = 0;
    for (node, chunk) in [(a, first), (b, second)] {
        let res = c
            .patch(node.at(&location))
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{}-{}", offset, offset + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::ACCEPTED,
            "{}",
            res.text().await.unwrap()
        );
        offset += chunk.len();
        location = res.headers()["location"].to_str().unwrap().to_owned();
    }
    // Any replica reports where it stands.
    let status = c.get(cc.at(&location)).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status.headers()["range"],
        format!("0-{}", offset - 1).as_str()
    );

    let sep = if location.contains('?') { '&' } else { '?' };
    let res = c
        .put(cc.at(&format!("{location}{sep}digest={digest}")))
        .header("content-type", "application/octet-stream")
        .body(third.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    for node in &cluster.nodes {
        let res = c
            .get(node.at(&format!("/v2/moving/blob/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(sha256(&res.bytes().await.unwrap()), digest);
    }
}

async fn get_admin(base: &str, path: &str) -> Value {
    let res = client()
        .get(format!("{base}/api/v0/{path}"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn replicas_are_listed_and_removed_and_strangers_kept_out() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3);
    let c = client();
    let a = cluster.nodes[0].url.clone();

    let (ok, table, err) = berth_cli(&["replicas", "--url", &a]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert_eq!(
        rows.iter().filter(|r| r.contains(" leader ")).count(),
        1,
        "{table}"
    );
    assert!(
        rows.iter().all(|r| r.trim_end().ends_with("yes")),
        "{table}"
    );
    let (ok, json_out, _) = berth_cli(&["replicas", "--url", &a, "--json"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(&json_out).unwrap();
    for r in listed["replicas"].as_array().unwrap() {
        assert!(r["last_applied_index"].as_u64().unwrap() > 0, "{r}");
        assert!(["leader", "follower"].contains(&r["role"].as_str().unwrap()));
    }

    // The admin API wants an administrator; the replica RPC wants the cluster key.
    let res = c.get(format!("{a}/api/v0/replicas")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let res = c
        .get(format!("{a}/api/v0/replicas"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = c
        .post(format!("{a}/internal/raft/forward"))
        .json(&json!({"DeleteTag": {"repo": "x", "tag": "y"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = c
        .post(format!("{a}/internal/raft/join"))
        .json(&json!({"token": "berth-join-forged", "address": "http://127.0.0.1:9"}))
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer, json!({"Err": "InvalidJoinToken"}));

    // A replica with a bad token is refused and says why.
    let storage = cluster.storage_dir().to_str().unwrap().to_owned();
    let mut stranger = support::Berth::new(
        &[
            "--storage-dir",
            &storage,
            "--join",
            &a,
            "--join-token",
            "berth-join-nope",
        ],
        support::cluster::FAST_RAFT,
    );
    let refused = stranger.try_spawn("127.0.0.1:0").unwrap_err();
    assert!(refused.contains("join token is not valid"), "{refused}");

    // Remove a follower through the CLI; the count and the advice follow.
    let leader = cluster.leader().await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let id = cluster.nodes[follower].replica_id.to_string();
    let (ok, out, err) = berth_cli(&["remove-replica", "--url", &a, &id]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("removed replica {id}; the cluster has 2 replicas")),
        "{out}"
    );
    assert!(err.contains("odd number"), "{err}");
    cluster.nodes[follower].kill();
    let listed = get_admin(&cluster.nodes[leader].url, "replicas").await;
    assert_eq!(listed["replicas"].as_array().unwrap().len(), 2);
    // A removed replica is never added back under its old id, even by a member.
    let identity: Value = serde_json::from_slice(
        &std::fs::read(cluster.nodes[leader].data_dir().join("raft/cluster.json")).unwrap(),
    )
    .unwrap();
    let res = c
        .post(cluster.nodes[leader].at("/internal/raft/membership"))
        .header("x-berth-cluster-key", identity["cluster_key"].as_str().unwrap())
        .json(&json!({
            "change": {"Add": {"id": cluster.nodes[follower].replica_id, "address": cluster.nodes[follower].url}},
            "forwarded": false,
        }))
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        answer["Err"]["Retired"], cluster.nodes[follower].replica_id,
        "{answer}"
    );
    let (ok, _, err) = berth_cli(&["remove-replica", "--url", &cluster.nodes[leader].url, "99"]);
    assert!(!ok);
    assert!(err.contains("not a member"), "{err}");
    // The two remaining replicas still take writes.
    push_image(&c, &cluster.nodes[leader].url, "after/remove", "v1", "x").await;
}

#[tokio::test]
async fn emergency_repair_turns_a_survivor_into_a_cluster_others_can_join() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3);
    let c = client();
    let digest = push_image(&c, &cluster.nodes[0].url, "repair/app", "before", "b").await;
    cluster.settled().await;
    for node in &mut cluster.nodes {
        node.kill();
    }
    let survivor_dir = cluster.nodes[1].data_dir();
    let dir = survivor_dir.to_str().unwrap();
    let (ok, _, err) = berth_cli(&["emergency-repair", "--data-dir", dir]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = berth_cli(&["emergency-repair", "--data-dir", dir, "--yes"]);
    assert!(ok, "{err}");
    assert!(out.contains("now a one-replica cluster"), "{out}");

    cluster.nodes[1].restart();
    let leader = cluster.leader().await;
    assert_eq!(leader, 1);
    let c = client();
    let survivor = cluster.nodes[1].url.clone();
    assert_tag(&survivor, "repair/app", "before", &digest).await;
    let after = push_image(&c, &survivor, "repair/app", "after", "a").await;
    let listed = get_admin(&survivor, "replicas").await;
    assert_eq!(listed["replicas"].as_array().unwrap().len(), 1);

    let fresh = cluster.add_replica();
    assert_tag(&cluster.nodes[fresh].url, "repair/app", "after", &after).await;
    assert_tag(&cluster.nodes[fresh].url, "repair/app", "before", &digest).await;
}
