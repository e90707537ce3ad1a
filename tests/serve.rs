//! `berth serve` as a process: readiness, restart recovery, graceful stop, configuration
//! layering and clear start-up errors.

mod support;

use reqwest::StatusCode;
use support::oci::{push_blob, push_image, sha256};
use support::{client, run_berth, Berth};

#[tokio::test]
async fn base_endpoint_answers_with_the_api_version_header_end_1() {
    let b = Berth::start();
    let res = client().get(b.at("/v2/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
}

#[tokio::test]
async fn a_killed_replica_restarts_with_every_acknowledged_write() {
    let mut b = Berth::start();
    let c = client();
    let mut pushed = Vec::new();
    for i in 0..20 {
        let repo = format!("team/app{}", i % 3);
        let digest = push_image(&c, &b.url, &repo, &format!("v{i}"), &format!("seed-{i}")).await;
        pushed.push((repo, format!("v{i}"), digest));
    }
    let big = vec![42u8; 3 * 1024 * 1024];
    let big_digest = push_blob(&c, &b.url, "team/big", &big).await;

    b.kill(); // SIGKILL: nothing gets a chance to flush
    b.restart();
    let c = client(); // pooled connections died with the old process

    for (repo, tag, digest) in &pushed {
        let res = c
            .get(b.at(&format!("/v2/{repo}/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{repo}:{tag}");
        assert_eq!(
            res.headers()["docker-content-digest"].to_str().unwrap(),
            digest
        );
        let body = res.bytes().await.unwrap();
        assert_eq!(&sha256(&body), digest);
    }
    let res = c
        .get(b.at(&format!("/v2/team/big/blobs/{big_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(sha256(&res.bytes().await.unwrap()), big_digest);
    let catalog: serde_json::Value = c
        .get(b.at("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["team/app0", "team/app1", "team/app2", "team/big"])
    );
}

#[tokio::test]
async fn sigterm_stops_the_replica_cleanly_and_it_starts_again() {
    let mut b = Berth::start();
    let c = client();
    let digest = push_image(&c, &b.url, "a", "v1", "sigterm").await;
    assert!(
        b.terminate(),
        "berth did not exit 0 on SIGTERM:\n{}",
        b.log_text()
    );
    b.restart();
    let c = client(); // pooled connections died with the old process
    let res = c.head(b.at("/v2/a/manifests/v1")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
}

#[test]
fn defaults_are_loopback_port_5000_and_a_local_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run_berth(&["serve", "--print-config"], dir.path());
    assert!(ok, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:5000\""), "{out}");
    assert!(out.contains("data_dir = \"berth-data\""), "{out}");
}

#[test]
fn file_env_and_flags_layer_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("berth.toml"),
        "listen = \"127.0.0.1:7001\"\ndata_dir = \"/from/file\"\n[raft]\nheartbeat_ms = 100\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "serve",
            "--config",
            "berth.toml",
            "--print-config",
            "--listen",
            "127.0.0.1:7002",
        ])
        .env("BERTH_DATA_DIR", "/from/env")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("listen = \"127.0.0.1:7002\""), "{text}");
    assert!(text.contains("data_dir = \"/from/env\""), "{text}");
    assert!(text.contains("heartbeat_ms = 100"), "{text}");
}

#[test]
fn a_malformed_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "listen = [not toml").unwrap();
    let (ok, _, err) = run_berth(&["serve", "--config", "bad.toml"], dir.path());
    assert!(!ok);
    assert!(
        err.contains("error:") && err.contains("configuration"),
        "{err}"
    );

    std::fs::write(dir.path().join("typo.toml"), "lisen = \"127.0.0.1:1\"\n").unwrap();
    let (ok, _, err) = run_berth(&["serve", "--config", "typo.toml"], dir.path());
    assert!(!ok);
    assert!(err.contains("lisen"), "{err}");

    let (ok, _, err) = run_berth(&["serve", "--config", "missing.toml"], dir.path());
    assert!(!ok);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn an_unusable_data_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file can never be created, even by root.
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let data = dir.path().join("file").join("data");
    let (ok, _, err) = run_berth(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(!ok);
    assert!(err.contains("data directory"), "{err}");
}

#[test]
fn an_unsupported_storage_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run_berth(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--storage-url",
            "ftp://host/x",
        ],
        dir.path(),
    );
    assert!(!ok);
    assert!(err.contains("storage_url"), "{err}");
}

/// `berth healthcheck` (for a container's HEALTHCHECK): exit 0 with the health JSON while
/// the replica serves, non-zero once it is gone.
#[test]
fn healthcheck_exits_zero_only_for_a_healthy_replica() {
    let mut b = Berth::start();
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run_berth(&["healthcheck", "--url", &b.url], dir.path());
    assert!(ok, "{err}");
    let health: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(health["status"], "ok");
    b.kill();
    let (ok, _, err) = run_berth(
        &["healthcheck", "--url", &b.url, "--timeout", "2s"],
        dir.path(),
    );
    assert!(!ok);
    assert!(err.contains("cannot reach"), "{err}");
}

/// A replica whose blob storage disappears (an NFS mount gone) tells load balancers: 503
/// with `storage_reachable: false` on `/health` and `/_ping`, and 200 again once it is back.
#[tokio::test]
async fn health_answers_503_while_storage_is_unreachable() {
    let storage = tempfile::tempdir().unwrap();
    let dir = storage.path().join("blobs-root");
    let b = Berth::start_with(&["--storage-dir", dir.to_str().unwrap()]);
    let c = client();
    let res = c.get(b.at("/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let moved = storage.path().join("gone");
    std::fs::rename(&dir, &moved).unwrap();
    for path in ["/health", "/_ping"] {
        let res = c.get(b.at(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let health: serde_json::Value = res.json().await.unwrap();
        assert_eq!(health["storage_reachable"], false);
        assert_eq!(health["status"], "unavailable");
    }
    std::fs::rename(&moved, &dir).unwrap();
    let res = c.get(b.at("/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
