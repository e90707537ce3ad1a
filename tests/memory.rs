//! Blob bytes stream: pushing and pulling a 1 GiB blob keeps the server's peak resident
//! memory (VmHWM) under 100 MiB; so does a 256 MiB blob on S3 storage (moto), where the
//! bytes go up as a multipart upload and come back as a streamed GET.

mod support;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use support::moto::Moto;
use support::{client, Berth};

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 1024;
const LIMIT_KIB: u64 = 100 * 1024;

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn have_proc() -> bool {
    let ok = std::path::Path::new("/proc/self/status").exists();
    if !ok {
        eprintln!("skipping: no /proc to read peak memory from");
    }
    ok
}

#[tokio::test]
async fn a_1_gib_blob_is_pushed_and_pulled_in_bounded_memory() {
    if !have_proc() {
        return;
    }
    let b = Berth::start();
    push_and_pull_in_bounded_memory(&b, CHUNKS).await;
}

#[tokio::test]
async fn a_256_mib_blob_on_s3_is_pushed_and_pulled_in_bounded_memory() {
    if !have_proc() {
        return;
    }
    let Some(moto) = Moto::start() else { return };
    let bucket = moto.bucket().await;
    let url = format!("s3://{bucket}/memory");
    let b = Berth::start_with_env(&["--storage-url", &url], &moto.berth_env());
    push_and_pull_in_bounded_memory(&b, 256).await;
}

/// Streams `chunks` MiB in one PATCH, closes the upload, pulls the blob back, and checks
/// the digest both ways and the server's peak memory.
async fn push_and_pull_in_bounded_memory(b: &Berth, chunks: usize) {
    let pid = b.pid().unwrap();
    let c = client();

    let res = c
        .post(b.at("/v2/big/blob/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();

    // Stream 1 GiB of varied bytes, hashing on the way out.
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let h = hasher.clone();
    let body = futures::stream::iter(0..chunks).map(move |i| {
        let chunk: Vec<u8> = (0..CHUNK).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        h.lock().unwrap().update(&chunk);
        Ok::<_, std::io::Error>(chunk)
    });
    let res = c
        .patch(b.at(&location))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::ACCEPTED,
        "{}",
        res.text().await.unwrap()
    );
    let digest = format!(
        "sha256:{}",
        hex::encode(hasher.lock().unwrap().clone().finalize())
    );
    let res = c
        .put(b.at(&format!("{location}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );

    let res = c
        .get(b.at(&format!("/v2/big/blob/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.bytes_stream();
    let mut pulled = Sha256::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        pulled.update(&chunk);
    }
    assert_eq!(total, CHUNK * chunks);
    assert_eq!(format!("sha256:{}", hex::encode(pulled.finalize())), digest);

    let peak = vm_hwm_kib(pid);
    eprintln!(
        "berth peak resident memory after a {chunks} MiB push+pull: {} MiB",
        peak / 1024
    );
    assert!(
        peak < LIMIT_KIB,
        "peak resident memory {} KiB exceeds {LIMIT_KIB} KiB",
        peak
    );
}
