//! Online garbage collection and fsck, end to end: a real `berth serve` on a directory, pushes
//! over HTTP, `berth gc` / `berth fsck` and the admin API.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::cluster::berth_cli;
use support::oci::{image_manifest, push_blob, push_image, put_manifest, sha256, OCI_MANIFEST};
use support::{client, Berth, ADMIN_PASSWORD};

/// Where the directory backend keeps a blob.
fn blob_file(b: &Berth, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    b.storage_dir()
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

/// `berth gc ARGS` against `b`; asserts success and returns the JSON report.
fn gc_cli(b: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["gc", "--url", b.url.as_str()];
    all.extend_from_slice(args);
    let (ok, out, err) = berth_cli(&all);
    assert!(ok, "berth gc failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report {out:?}: {e}"))
}

/// `POST /api/v0/gc` with `body`; returns the status and JSON answer.
async fn gc_api(c: &Client, b: &Berth, body: Value) -> (StatusCode, Value) {
    let res = c
        .post(b.at("/api/v0/gc"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn status_of(c: &Client, url: String) -> StatusCode {
    c.get(url).send().await.unwrap().status()
}

/// The manifest's blobs (config and layers) as the registry serves them.
async fn assert_image_pulls(c: &Client, b: &Berth, repo: &str, reference: &str) {
    let res = c
        .get(b.at(&format!("/v2/{repo}/manifests/{reference}")))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "manifest {repo}:{reference}");
    let manifest: Value = res.json().await.unwrap();
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in manifest["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_owned());
    }
    for digest in digests {
        let res = c
            .get(b.at(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "blob {digest} of {repo}:{reference}"
        );
        assert_eq!(sha256(&res.bytes().await.unwrap()), digest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_with_no_grace_deletes_exactly_the_unreferenced_blobs_and_kept_images_pull() {
    let b = Berth::start();
    let c = client();
    push_image(&c, &b.url, "gc/app", "keep", "kept").await;
    let dropped = push_image(&c, &b.url, "gc/app", "drop", "dropped").await;
    let dropped_config = sha256(br#"{"seed":"dropped"}"#);
    let dropped_layer = sha256(b"layer of dropped");
    let res = c
        .delete(b.at(&format!("/v2/gc/app/manifests/{dropped}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // A blob whose link was deleted: its bytes are garbage too (found by listing storage).
    let unlinked = push_blob(&c, &b.url, "gc/other", b"unlinked bytes").await;
    let res = c
        .delete(b.at(&format!("/v2/gc/other/blobs/{unlinked}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let garbage = [&dropped_config, &dropped_layer, &unlinked];
    let garbage_bytes = (br#"{"seed":"dropped"}"#.len()
        + b"layer of dropped".len()
        + b"unlinked bytes".len()) as u64;
    tokio::time::sleep(Duration::from_millis(20)).await;

    // A dry run reports and deletes nothing.
    let dry = gc_cli(&b, &["--dry-run", "--grace", "0s"]);
    assert_eq!(dry["dry_run"], json!(true));
    assert_eq!(dry["blobs_deleted"], json!(3), "{dry}");
    assert_eq!(dry["bytes_freed"], json!(garbage_bytes), "{dry}");
    for d in garbage {
        assert!(blob_file(&b, d).exists(), "dry run deleted {d}");
    }

    let report = gc_cli(&b, &["--grace", "0"]);
    assert_eq!(report["dry_run"], json!(false));
    assert_eq!(report["blobs_deleted"], json!(3), "{report}");
    assert_eq!(report["bytes_freed"], json!(garbage_bytes), "{report}");
    for d in garbage {
        assert!(!blob_file(&b, d).exists(), "{d} is still in storage");
    }
    assert_image_pulls(&c, &b, "gc/app", "keep").await;
    assert_eq!(
        status_of(&c, b.at(&format!("/v2/gc/app/blobs/{dropped_layer}"))).await,
        StatusCode::NOT_FOUND
    );

    // Nothing left to do; the last report and the metrics say what the run did.
    let again = gc_cli(&b, &["--grace", "0s"]);
    assert_eq!(again["blobs_deleted"], json!(0), "{again}");
    let last = gc_cli(&b, &["--last"]);
    assert_eq!(last["blobs_deleted"], json!(0));
    let metrics = support::oci::metrics_text(&b.url).await;
    assert!(metrics.contains("berth_gc_runs_total 2"), "{metrics}");
    assert!(
        metrics.contains("berth_gc_blobs_deleted_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("berth_gc_bytes_freed_total {garbage_bytes}")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_uploaded_for_a_manifest_not_yet_pushed_survives_the_default_grace() {
    let b = Berth::start();
    let c = client();
    let pending = push_blob(&c, &b.url, "gc/app", b"layer of the next push").await;
    let orphan = push_blob(&c, &b.url, "gc/app", b"unlinked but young").await;
    c.delete(b.at(&format!("/v2/gc/app/blobs/{orphan}")))
        .send()
        .await
        .unwrap();
    let report = gc_cli(&b, &["--untagged", "delete"]);
    assert_eq!(report["blobs_deleted"], json!(0), "{report}");
    assert!(blob_file(&b, &pending).exists());
    assert!(blob_file(&b, &orphan).exists());
    // The push goes on and completes.
    let config = b"{}".to_vec();
    push_blob(&c, &b.url, "gc/app", &config).await;
    let manifest = image_manifest(&config, &[b"layer of the next push"]);
    let res = put_manifest(&c, &b.url, "gc/app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_image_pulls(&c, &b, "gc/app", "v1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn untagged_manifests_go_only_with_the_delete_policy() {
    let b = Berth::start();
    let c = client();
    let digest = push_image(&c, &b.url, "gc/app", "temp", "untagged").await;
    let res = c
        .delete(b.at("/v2/gc/app/manifests/temp"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED, "untag (OCI end-9)");
    let keep = gc_cli(&b, &["--grace", "0s"]);
    assert_eq!(keep["manifests_deleted"], json!(0), "{keep}");
    assert_eq!(
        status_of(&c, b.at(&format!("/v2/gc/app/manifests/{digest}"))).await,
        StatusCode::OK
    );
    let delete = gc_cli(&b, &["--grace", "0s", "--untagged", "delete"]);
    assert_eq!(delete["manifests_deleted"], json!(1), "{delete}");
    assert_eq!(delete["blobs_deleted"], json!(2), "{delete}");
    assert_eq!(
        status_of(&c, b.at(&format!("/v2/gc/app/manifests/{digest}"))).await,
        StatusCode::NOT_FOUND
    );
}

/// Blob pushes the registry asked to send again (GC deleted their bytes meanwhile).
static RETRIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Pushes one image whose layer may be garbage GC is deleting right now; retries what the
/// registry asks to retry (503). Returns whether the manifest was acknowledged.
async fn push_racing(c: &Client, base: &str, repo: &str, tag: &str, layer: &[u8]) -> bool {
    let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
    for blob in [&config[..], layer] {
        let digest = sha256(blob);
        let mut stored = false;
        for _ in 0..20 {
            let res = c
                .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
                .header("content-type", "application/octet-stream")
                .body(blob.to_vec())
                .send()
                .await
                .unwrap();
            match res.status() {
                StatusCode::CREATED => {
                    stored = true;
                    break;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("blob push answered {other}"),
            }
        }
        if !stored {
            return false;
        }
    }
    let manifest = image_manifest(&config, &[layer]);
    let res = put_manifest(c, base, repo, tag, OCI_MANIFEST, &manifest).await;
    res.status() == StatusCode::CREATED
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_of_blobs_gc_is_deleting_are_never_lost() {
    let b = Berth::start();
    let c = client();
    // Garbage: blobs pushed then unlinked, older than the grace period of the runs below.
    let layers: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("shared layer {i}").into_bytes())
        .collect();
    for layer in &layers {
        let d = push_blob(&c, &b.url, "gc/old", layer).await;
        c.delete(b.at(&format!("/v2/gc/old/blobs/{d}")))
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Push images made of exactly those bytes while GC runs again and again.
    let pusher = {
        let (c, base) = (c.clone(), b.url.clone());
        let layers = layers.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for (i, layer) in layers.iter().enumerate() {
                let tag = format!("t{i}");
                if push_racing(&c, &base, "gc/new", &tag, layer).await {
                    acknowledged.push(tag);
                }
            }
            acknowledged
        })
    };
    let mut runs = 0;
    while !pusher.is_finished() {
        let (status, report) = gc_api(&c, &b, json!({ "grace": "1s" })).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status} {report}"
        );
        runs += 1;
    }
    let acknowledged = pusher.await.unwrap();
    assert!(runs > 0);
    eprintln!(
        "{runs} GC runs during {} acknowledged pushes; {} blob pushes retried",
        acknowledged.len(),
        RETRIED.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        acknowledged.len() >= layers.len() / 2,
        "too few pushes succeeded: {}",
        acknowledged.len()
    );
    // One more run after the pushes: every acknowledged image is referenced, so it stays.
    gc_api(&c, &b, json!({ "grace": "0s" })).await;
    for tag in &acknowledged {
        assert_image_pulls(&c, &b, "gc/new", tag).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_uploads_are_removed() {
    let b = Berth::start_opts(&[], &[("BERTH_GC__UPLOAD_MAX_AGE", "1s")]);
    let c = client();
    let res = c
        .post(b.at("/v2/gc/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let url = if location.starts_with("http") {
        location
    } else {
        b.at(&location)
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let dry = gc_cli(&b, &["--dry-run"]);
    assert_eq!(dry["uploads_removed"], json!(1), "{dry}");
    let report = gc_cli(&b, &[]);
    assert_eq!(report["uploads_removed"], json!(1), "{report}");
    assert_eq!(status_of(&c, url).await, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn fsck_finds_missing_truncated_and_corrupt_blobs() {
    let b = Berth::start();
    let c = client();
    push_image(&c, &b.url, "gc/app", "v1", "checked").await;
    let fsck = |deep: bool| {
        let mut args = vec!["fsck", "--url", b.url.as_str()];
        if deep {
            args.push("--deep");
        }
        let (ok, out, err) = berth_cli(&args);
        let report: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e} {err}"));
        (ok, report)
    };
    let (ok, report) = fsck(true);
    assert!(ok, "{report}");
    assert_eq!(report["checked"], json!(2));

    let layer = b"layer of checked";
    let config = br#"{"seed":"checked"}"#;
    // Same size, other bytes: only a deep check notices.
    let mut corrupt = layer.to_vec();
    corrupt[0] ^= 1;
    std::fs::write(blob_file(&b, &sha256(layer)), &corrupt).unwrap();
    let (ok, report) = fsck(false);
    assert!(ok, "{report}");
    let (ok, report) = fsck(true);
    assert!(!ok);
    assert_eq!(
        report["corrupt"][0]["digest"],
        json!(sha256(layer)),
        "{report}"
    );

    std::fs::write(blob_file(&b, &sha256(layer)), &layer[..4]).unwrap();
    std::fs::remove_file(blob_file(&b, &sha256(config))).unwrap();
    let (ok, report) = fsck(false);
    assert!(!ok);
    assert_eq!(
        report["missing"][0]["digest"],
        json!(sha256(config)),
        "{report}"
    );
    assert_eq!(
        report["size_mismatch"][0]["digest"],
        json!(sha256(layer)),
        "{report}"
    );
    assert_eq!(
        report["size_mismatch"][0]["actual_size"],
        json!(4),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_runs_gc_on_the_configured_schedule() {
    let b = Berth::start_opts(
        &[],
        &[("BERTH_GC__INTERVAL", "500ms"), ("BERTH_GC__GRACE", "0s")],
    );
    let c = client();
    let d = push_blob(&c, &b.url, "gc/app", b"collected on schedule").await;
    c.delete(b.at(&format!("/v2/gc/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while blob_file(&b, &d).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled run deleted {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = gc_cli(&b, &["--last"]);
    assert_eq!(last["dry_run"], json!(false), "{last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_on_s3_deletes_unreferenced_blobs_and_keeps_images() {
    let Some(moto) = support::moto::Moto::start() else {
        return;
    };
    let bucket = moto.bucket().await;
    let url = format!("s3://{bucket}/registry");
    let b = Berth::start_with_env(&["--storage-url", &url], &moto.berth_env());
    let c = client();
    push_image(&c, &b.url, "gc/app", "keep", "kept").await;
    let dropped = push_image(&c, &b.url, "gc/app", "drop", "dropped").await;
    c.delete(b.at(&format!("/v2/gc/app/manifests/{dropped}")))
        .send()
        .await
        .unwrap();
    let before = moto.keys(&bucket, "registry/blobs").await;
    assert_eq!(before.len(), 4, "{before:?}");
    let report = gc_cli(&b, &["--grace", "0s"]);
    assert_eq!(report["blobs_deleted"], json!(2), "{report}");
    let after = moto.keys(&bucket, "registry/blobs").await;
    assert_eq!(after.len(), 2, "{after:?}");
    for gone in [
        sha256(br#"{"seed":"dropped"}"#),
        sha256(b"layer of dropped"),
    ] {
        let hex = gone.strip_prefix("sha256:").unwrap();
        assert!(
            !after.iter().any(|k| k.ends_with(hex)),
            "{gone} left in {after:?}"
        );
    }
    assert_image_pulls(&c, &b, "gc/app", "keep").await;
    let (ok, out, err) = berth_cli(&["fsck", "--url", &b.url, "--deep"]);
    assert!(ok, "{out} {err}");
}

/// Three replicas (serialized with the other cluster tests by the `cluster::` prefix).
mod cluster {
    use super::*;
    use support::cluster::Cluster;

    #[tokio::test(flavor = "multi_thread")]
    async fn gc_through_a_follower_frees_shared_storage_and_every_replica_knows_the_report() {
        let cluster = Cluster::start(3);
        cluster.settled().await;
        let leader = cluster.leader().await;
        let follower = (leader + 1) % 3;
        let other = (leader + 2) % 3;
        let c = client();
        let (f, o) = (&cluster.nodes[follower], &cluster.nodes[other]);
        push_image(&c, &f.url, "gc/app", "keep", "kept").await;
        let dropped = push_image(&c, &o.url, "gc/app", "drop", "dropped").await;
        let res = c
            .delete(f.at(&format!("/v2/gc/app/manifests/{dropped}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);

        let (ok, out, err) = berth_cli(&["gc", "--url", &f.url, "--grace", "0s"]);
        assert!(ok, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(report["blobs_deleted"], json!(2), "{report}");
        for gone in [
            sha256(br#"{"seed":"dropped"}"#),
            sha256(b"layer of dropped"),
        ] {
            let hex = gone.strip_prefix("sha256:").unwrap();
            let path = cluster
                .storage_dir()
                .join("blobs/sha256")
                .join(&hex[..2])
                .join(hex);
            assert!(!path.exists(), "{gone} is still in storage");
        }
        for node in cluster.running() {
            assert_image_pulls(&c, node, "gc/app", "keep").await;
        }
        let (ok, out, err) = berth_cli(&["gc", "--url", &o.url, "--last"]);
        assert!(ok, "{err}");
        let last: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(last["blobs_deleted"], json!(2), "{last}");
    }
}

/// Measures a run over 10,000 unreferenced blobs on each backend (for BENCHMARKS.md):
/// `cargo test --release --test gc gc_of_10000 -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark for BENCHMARKS.md (10,000 blobs on two backends): run it by name with --release -- --ignored"]
async fn gc_of_10000_unreferenced_blobs() {
    const N: usize = 10_000;
    // Directory: orphan files written straight into the layout (a crashed push leaves these).
    let b = Berth::start();
    for i in 0..N {
        let bytes = format!("orphan {i}").into_bytes();
        let path = blob_file(&b, &sha256(&bytes));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = gc_cli(&b, &["--grace", "0s"]);
    assert_eq!(report["blobs_deleted"], json!(N), "{report}");
    let ms = report["duration_ms"].as_u64().unwrap().max(1);
    eprintln!(
        "directory: {N} blobs in {ms} ms, {} blobs/s",
        N as u64 * 1000 / ms
    );

    // S3 (moto): pushed over HTTP, then unlinked.
    let Some(moto) = support::moto::Moto::start() else {
        return;
    };
    let bucket = moto.bucket().await;
    let url = format!("s3://{bucket}/registry");
    let b = Berth::start_with_env(&["--storage-url", &url], &moto.berth_env());
    let c = client();
    let base = b.url.clone();
    futures::stream::iter(0..N)
        .map(|i| {
            let (c, base) = (c.clone(), base.clone());
            async move {
                let d = push_blob(&c, &base, "gc/bench", format!("orphan {i}").as_bytes()).await;
                c.delete(format!("{base}/v2/gc/bench/blobs/{d}"))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let report = gc_cli(&b, &["--grace", "0s"]);
    assert_eq!(report["blobs_deleted"], json!(N), "{report}");
    let ms = report["duration_ms"].as_u64().unwrap().max(1);
    eprintln!(
        "s3 (moto): {N} blobs in {ms} ms, {} blobs/s",
        N as u64 * 1000 / ms
    );
}
