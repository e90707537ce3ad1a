//! OCI client helpers for tests: digests, blob and manifest pushes, error codes.

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Media types used in tests.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic varied bytes, different for each seed, so that a misplaced part changes
/// the digest.
pub fn varied_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Monolithic upload (POST ?digest=); asserts 201 and returns the digest.
pub async fn push_blob(c: &Client, base: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let res = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "push blob: {}",
        res.text().await.unwrap()
    );
    digest
}

/// A descriptor JSON for bytes.
pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(bytes), "size": bytes.len() })
}

/// An OCI image manifest over a config and layers (given as bytes).
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// PUTs a manifest; returns the response.
pub async fn put_manifest(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Response {
    c.put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Pushes config + layers + manifest under `tag`; returns the manifest's digest.
pub async fn push_image(c: &Client, base: &str, repo: &str, tag: &str, seed: &str) -> String {
    let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
    let layer = format!("layer of {seed}").into_bytes();
    push_blob(c, base, repo, &config).await;
    push_blob(c, base, repo, &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    let res = put_manifest(c, base, repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "push manifest: {}",
        res.text().await.unwrap()
    );
    sha256(&manifest)
}

/// The first error code of an error response (asserting the spec's body shape).
pub async fn error_code(res: Response) -> String {
    let body: Value = res.json().await.expect("error body is JSON");
    body["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}

/// Every manifest type the tests push, for GETs that must not be refused on `Accept`.
pub const ANY_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Asserts `repo:tag` resolves to `digest` through the registry at `base`.
pub async fn assert_tag(base: &str, repo: &str, tag: &str, digest: &str) {
    let res = super::client()
        .get(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("accept", ANY_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{repo}:{tag} via {base}");
    assert_eq!(
        res.headers()["docker-content-digest"],
        digest,
        "{repo}:{tag} via {base}"
    );
}

/// The Prometheus text page of the registry at `base`.
pub async fn metrics_text(base: &str) -> String {
    super::client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
