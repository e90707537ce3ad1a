//! skopeo against Berth: a hand-made multi-platform OCI image index copied with `--all`
//! (digest kept), copies between repositories, inspect, tag listing, delete by digest,
//! and picking one platform.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::oci::{sha256, OCI_INDEX, OCI_MANIFEST};
use support::{external_tool, run_ok, Berth};

const LONG: Duration = Duration::from_secs(300);

fn skopeo(args: &[&str]) -> String {
    run_ok("skopeo", args, LONG)
}

/// Writes a blob into an OCI layout and returns its descriptor.
fn write_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let digest = sha256(bytes);
    let path = layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    std::fs::write(path, bytes).unwrap();
    json!({ "mediaType": media_type, "digest": digest, "size": bytes.len() })
}

/// An OCI layout holding one index (tag `multi`) of two platform images; returns the index
/// bytes and the arm64 manifest's digest.
fn make_layout(layout: &Path) -> (Vec<u8>, String) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut platforms = Vec::new();
    let mut arm64 = String::new();
    for arch in ["amd64", "arm64"] {
        let layer = format!("layer bytes for {arch}").repeat(1000).into_bytes();
        let layer_desc = write_blob(layout, "application/vnd.oci.image.layer.v1.tar", &layer);
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [sha256(&layer)] },
        }))
        .unwrap();
        let config_desc = write_blob(layout, "application/vnd.oci.image.config.v1+json", &config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config_desc, "layers": [layer_desc],
        }))
        .unwrap();
        let mut desc = write_blob(layout, OCI_MANIFEST, &manifest);
        desc["platform"] = json!({ "architecture": arch, "os": "linux" });
        if arch == "arm64" {
            arm64 = sha256(&manifest);
        }
        platforms.push(desc);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms,
    }))
    .unwrap();
    let mut index_desc = write_blob(layout, OCI_INDEX, &index);
    index_desc["annotations"] = json!({ "org.opencontainers.image.ref.name": "multi" });
    let top = json!({ "schemaVersion": 2, "manifests": [index_desc] });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    (index, arm64)
}

#[test]
fn skopeo_copies_inspects_lists_and_deletes_a_multi_platform_index() {
    if !external_tool("skopeo", &["--version"]) {
        return;
    }
    let b = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let (index, arm64) = make_layout(&layout);
    let index_digest = sha256(&index);
    let src = format!("oci:{}:multi", layout.display());
    let arch = format!("docker://{}/multi/arch:1", b.addr);
    let copy = format!("docker://{}/multi/copy:1", b.addr);

    // --all keeps the index and its digest.
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &src,
        &arch,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &arch]);
    assert_eq!(sha256(raw.trim_end().as_bytes()), index_digest, "{raw}");

    // Between repositories, through the registry.
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &arch,
        &copy,
    ]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &copy]);
    assert_eq!(sha256(raw.trim_end().as_bytes()), index_digest);

    // Inspect resolves a platform.
    let info: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        &arch,
    ]))
    .unwrap();
    assert_eq!(info["Architecture"], "arm64");

    // Tags.
    let tags: Value = serde_json::from_str(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/multi/arch", b.addr),
    ]))
    .unwrap();
    assert_eq!(tags["Tags"], json!(["1"]));

    // One platform picked out of the index.
    let out = work.path().join("one");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        &arch,
        &format!("oci:{}:one", out.display()),
    ]);
    let picked: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(picked["manifests"][0]["digest"], arm64);

    // Delete by digest: the copy is gone, the original stays.
    skopeo(&[
        "delete",
        "--tls-verify=false",
        &format!("docker://{}/multi/copy@{index_digest}", b.addr),
    ]);
    let gone = support::run_cmd(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &copy],
        LONG,
    );
    assert!(!gone.status.success(), "deleted manifest still served");
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &arch]);
    assert_eq!(sha256(raw.trim_end().as_bytes()), index_digest);
}

/// skopeo through token auth: a push with credentials, inspect and delete with them, and
/// nothing without them or with another user's.
#[test]
fn skopeo_authenticates_with_the_token_protocol() {
    if !external_tool("skopeo", &["--version"]) {
        return;
    }
    let b = Berth::start_opts(&[], &[("BERTH_AUTH__ENABLED", "true")]);
    for user in ["alice", "mallory"] {
        let (ok, out, err) = support::cluster::berth_cli_env(
            &["user", "--url", &b.url, "add", user],
            &[("BERTH_NEW_PASSWORD", &format!("{user}-password"))],
        );
        assert!(ok, "{out}{err}");
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let (index, _) = make_layout(&layout);
    let src = format!("oci:{}:multi", layout.display());
    let dest = format!("docker://{}/alice/multi:1", b.addr);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-password",
        &src,
        &dest,
    ]);
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "alice:alice-password",
        &dest,
    ]);
    assert_eq!(sha256(raw.trim_end().as_bytes()), sha256(&index));

    for creds in [None, Some("mallory:mallory-password"), Some("alice:wrong")] {
        let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
        if let Some(c) = creds {
            args.extend(["--creds", c]);
        }
        args.push(&dest);
        let out = support::run_cmd("skopeo", &args, LONG);
        assert!(!out.status.success(), "{creds:?} got in");
    }
    // Mallory cannot delete it either; alice can.
    let out = support::run_cmd(
        "skopeo",
        &[
            "delete",
            "--tls-verify=false",
            "--creds",
            "mallory:mallory-password",
            &dest,
        ],
        LONG,
    );
    assert!(!out.status.success());
    skopeo(&[
        "delete",
        "--tls-verify=false",
        "--creds",
        "alice:alice-password",
        &dest,
    ]);
}
