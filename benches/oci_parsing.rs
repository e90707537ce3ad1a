//! Criterion benches for the parsing hot paths: names, references, digests and routes
//! (every request), streaming digest verification (every blob byte pushed) and manifest
//! validation (every manifest pushed). Run with `cargo bench --bench oci_parsing`.

use std::hint::black_box;

use berth_oci::{
    parse_manifest, Algorithm, Digest, DigestHasher, Reference, RepoName, DOCKER_MANIFEST,
    OCI_INDEX, OCI_MANIFEST,
};
use berth_registry::api::route::Route;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;
/// Size of the pieces fed to the hasher, about one HTTP body frame.
const CHUNK: usize = 64 * 1024;

fn parsing(c: &mut Criterion) {
    let digest = Digest::sha256_of(b"bench").to_string();
    let long_name = "a".repeat(60) + "/" + &"b-c".repeat(30) + "/" + &"d.e_f".repeat(16);

    let mut group = c.benchmark_group("parse");
    for (id, name) in [
        ("repo_name/short", "library/ubuntu"),
        ("repo_name/nested", "my-org/team.one/app_v2/builder"),
        ("repo_name/long", long_name.as_str()),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(id), name, |b, name| {
            b.iter(|| RepoName::parse(black_box(name)).unwrap());
        });
    }
    for (id, reference) in [
        ("reference/tag", "v1.2.3-rc.1"),
        ("reference/digest", digest.as_str()),
    ] {
        group.bench_with_input(
            BenchmarkId::from_parameter(id),
            reference,
            |b, reference| {
                b.iter(|| Reference::parse(black_box(reference)).unwrap());
            },
        );
    }
    group.bench_with_input(
        BenchmarkId::from_parameter("digest/sha256"),
        digest.as_str(),
        |b, digest| b.iter(|| Digest::parse(black_box(digest)).unwrap()),
    );
    group.finish();
}

/// The registry's one catch-all route turns every `/v2/` path into a typed route first.
fn route_parsing(c: &mut Criterion) {
    let digest = Digest::sha256_of(b"bench").to_string();
    let paths = [
        (
            "manifest_by_tag",
            "/v2/my-org/team/app/manifests/v1.2.3".to_owned(),
        ),
        ("blob", format!("/v2/my-org/team/app/blobs/{digest}")),
        (
            "upload",
            "/v2/my-org/team/app/blobs/uploads/0a3c2f55-6f5e-4f8e-9b1a-3c1f2e4d5a6b".to_owned(),
        ),
        ("tags_list", "/v2/my-org/team/app/tags/list".to_owned()),
    ];
    let mut group = c.benchmark_group("route");
    for (id, path) in &paths {
        group.bench_with_input(BenchmarkId::from_parameter(id), path, |b, path| {
            b.iter(|| Route::parse(black_box(path)).unwrap());
        });
    }
    group.finish();
}

fn digest_verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify_digest");
    group.sample_size(10);
    for size in [MIB, 64 * MIB] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let expected = Digest::of(algorithm, &data);
            let id = BenchmarkId::new(algorithm.as_str(), format!("{}MiB", size / MIB));
            group.bench_with_input(id, &data, |b, data| {
                b.iter(|| {
                    let mut hasher = DigestHasher::new(algorithm);
                    for chunk in data.chunks(CHUNK) {
                        hasher.update(black_box(chunk));
                    }
                    hasher.verify(&expected).unwrap();
                });
            });
        }
    }
    group.finish();

    // Saved and restored once per PATCH of a chunked upload.
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    hasher.update(&[7; 1000]);
    let saved = hasher.save_state();
    c.bench_function("hasher_state/save_restore", |b| {
        b.iter(|| {
            let restored = DigestHasher::restore_state(black_box(&saved)).unwrap();
            black_box(restored.save_state())
        });
    });
}

/// A descriptor of `media_type` for content `name` (digests must be valid; content is fake).
fn descriptor(media_type: &str, name: &str, size: u64) -> Value {
    json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(name.as_bytes()).to_string(),
        "size": size,
    })
}

/// A Docker schema 2 image manifest with ten layers, as `docker push` sends it.
fn docker_manifest() -> Vec<u8> {
    let layers: Vec<Value> = (0..10)
        .map(|i| {
            descriptor(
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                &format!("layer{i}"),
                1_000_000 + i,
            )
        })
        .collect();
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", "config", 7_023),
        "layers": layers,
    }))
    .unwrap()
}

/// An OCI image index for eight platforms, as `docker buildx` sends it.
fn oci_index() -> Vec<u8> {
    let platforms = [
        ("linux", "amd64", None),
        ("linux", "arm64", Some("v8")),
        ("linux", "arm", Some("v7")),
        ("linux", "arm", Some("v6")),
        ("linux", "386", None),
        ("linux", "ppc64le", None),
        ("linux", "s390x", None),
        ("linux", "riscv64", None),
    ];
    let manifests: Vec<Value> = platforms
        .iter()
        .map(|&(os, architecture, variant)| {
            let mut d = descriptor(
                OCI_MANIFEST,
                &format!("{os}/{architecture}/{variant:?}"),
                1_234,
            );
            d["platform"] = json!({ "os": os, "architecture": architecture });
            if let Some(variant) = variant {
                d["platform"]["variant"] = json!(variant);
            }
            d["annotations"] =
                json!({ "org.opencontainers.image.created": "2024-01-01T00:00:00Z" });
            d
        })
        .collect();
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .unwrap()
}

fn manifest_validation(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_manifest");
    for (id, body, content_type) in [
        (
            "docker_schema2_10_layers",
            docker_manifest(),
            DOCKER_MANIFEST,
        ),
        ("oci_index_8_platforms", oci_index(), OCI_INDEX),
    ] {
        // Fail here, not inside the measurement, if a fixture is wrong.
        parse_manifest(&body, Some(content_type)).unwrap();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(id), &body, |b, body| {
            b.iter(|| parse_manifest(black_box(body), Some(content_type)).unwrap());
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    parsing,
    route_parsing,
    digest_verification,
    manifest_validation
);
criterion_main!(benches);
