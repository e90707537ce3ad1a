//! `berth serve --storage-url s3://...` against a real S3-compatible server (moto, with
//! S3's 5 MiB part minimum): monolithic and chunked pushes, ranged pulls, a chunked upload
//! continued by another process sharing the bucket, and one that survives a restart of the
//! process it started on. Skipped with a printed reason when moto_server is missing
//! (a failure with `BERTH_REQUIRE_EXTERNAL=1`).

mod support;

use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Client, StatusCode};
use support::moto::Moto;
use support::oci::{sha256, varied_bytes};
use support::{client, Berth};

const MIB: usize = 1 << 20;

/// The key prefix the tests' replicas use in their bucket.
const PREFIX: &str = "registry/blobs";

/// A replica on `s3://bucket/registry/blobs` of `moto`.
fn berth_on(moto: &Moto, bucket: &str) -> Berth {
    let url = format!("s3://{bucket}/{PREFIX}");
    Berth::start_with_env(&["--storage-url", &url], &moto.berth_env())
}

/// The path of a `Location` (absolute URL or path), to send to any replica.
fn path_of(b: &Berth, location: &str) -> String {
    location
        .strip_prefix(b.url.as_str())
        .unwrap_or(location)
        .to_owned()
}

fn with_query(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

async fn open_upload(c: &Client, b: &Berth, repo: &str) -> String {
    let res = c
        .post(b.at(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    path_of(b, res.headers()["location"].to_str().unwrap())
}

/// PATCHes `chunk` at `start` through `b`; asserts 202 and the new range; returns the
/// session path to use next.
async fn patch(c: &Client, b: &Berth, session: &str, chunk: &[u8], start: usize) -> String {
    let res = c
        .patch(b.at(session))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(
            CONTENT_RANGE,
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        res.text().await.unwrap()
    );
    assert_eq!(
        headers["range"].to_str().unwrap(),
        format!("0-{}", start + chunk.len() - 1)
    );
    path_of(b, headers["location"].to_str().unwrap())
}

/// GET of the session's status through `b`: the `Range` header.
async fn status(c: &Client, b: &Berth, session: &str) -> String {
    let res = c.get(b.at(session)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    res.headers()["range"].to_str().unwrap().to_owned()
}

/// Closes the session through `b` with a last chunk at `start`; asserts 201.
async fn close(c: &Client, b: &Berth, session: &str, last: &[u8], start: usize, digest: &str) {
    let mut req = c
        .put(b.at(&with_query(session, &format!("digest={digest}"))))
        .header(CONTENT_TYPE, "application/octet-stream");
    if !last.is_empty() {
        req = req.header(CONTENT_RANGE, format!("{start}-{}", start + last.len() - 1));
    }
    let res = req.body(last.to_vec()).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
}

/// The blob is in the bucket at its key, and no upload left anything behind.
async fn assert_stored(moto: &Moto, bucket: &str, bytes: &[u8]) {
    let digest = sha256(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let key = format!("{PREFIX}/blobs/sha256/{}/{hex}", &hex[..2]);
    assert_eq!(moto.keys(bucket, &key).await, vec![key.clone()]);
    let left = moto.keys(bucket, &format!("{PREFIX}/uploads/")).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The whole blob and a few ranges of it come back intact through `b`.
async fn assert_pull(c: &Client, b: &Berth, repo: &str, bytes: &[u8]) {
    let digest = sha256(bytes);
    let url = b.at(&format!("/v2/{repo}/blobs/{digest}"));
    let res = c.head(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-length"].to_str().unwrap(),
        bytes.len().to_string()
    );
    let res = c.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.bytes().await.unwrap();
    assert_eq!(sha256(&body), digest, "pulled bytes differ");
    let len = bytes.len();
    for (range, from, to) in [
        ("bytes=0-9".to_owned(), 0, 10),
        (format!("bytes={}-", len - 7), len - 7, len),
        ("bytes=-5".to_owned(), len - 5, len),
        (
            format!("bytes={}-{}", 5 * MIB - 3, 5 * MIB + 2),
            5 * MIB - 3,
            5 * MIB + 3,
        ),
    ] {
        let res = c.get(&url).header(RANGE, &range).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            res.headers()["content-range"].to_str().unwrap(),
            format!("bytes {from}-{}/{len}", to - 1),
            "{range}"
        );
        assert_eq!(&res.bytes().await.unwrap()[..], &bytes[from..to], "{range}");
    }
}

#[tokio::test]
async fn monolithic_pushes_and_ranged_pulls_on_s3() {
    let Some(moto) = Moto::start() else { return };
    let bucket = moto.bucket().await;
    let b = berth_on(&moto, &bucket);
    let c = client();

    // (The status may still be 503 while the replica elects itself leader.)
    let res = c.get(b.at("/health")).send().await.unwrap();
    let health: serde_json::Value = res.json().await.unwrap();
    assert_eq!(health["storage_reachable"], true, "{health}");

    // Large enough for a multipart upload straight to the blob's key (8 MiB parts), and a
    // small one that goes up in a single request.
    for (seed, len) in [(1, 21 * MIB + 123), (2, 6 * MIB)] {
        let bytes = varied_bytes(seed, len);
        let digest = support::oci::push_blob(&c, &b.url, "mono/app", &bytes).await;
        assert_eq!(digest, sha256(&bytes));
        assert_stored(&moto, &bucket, &bytes).await;
        assert_pull(&c, &b, "mono/app", &bytes).await;
    }

    // A wrong digest stores nothing.
    let bytes = varied_bytes(3, 9 * MIB);
    let wrong = sha256(b"not these bytes");
    let res = c
        .post(b.at(&format!("/v2/mono/app/blobs/uploads/?digest={wrong}")))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = c
        .head(b.at(&format!("/v2/mono/app/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let hex = wrong.trim_start_matches("sha256:");
    assert!(moto
        .keys(
            &bucket,
            &format!("{PREFIX}/blobs/sha256/{}/{hex}", &hex[..2])
        )
        .await
        .is_empty());

    // POST, then the whole blob in the closing PUT.
    let bytes = varied_bytes(4, 11 * MIB);
    let session = open_upload(&c, &b, "mono/app").await;
    close(&c, &b, &session, &bytes, 0, &sha256(&bytes)).await;
    assert_stored(&moto, &bucket, &bytes).await;
    assert_pull(&c, &b, "mono/app", &bytes).await;
}

#[tokio::test]
async fn a_chunked_push_continues_on_another_process_sharing_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    let bucket = moto.bucket().await;
    let a = berth_on(&moto, &bucket);
    let b = berth_on(&moto, &bucket);
    let c = client();

    // Chunks below the 5 MiB part minimum (staged), above it, and across part boundaries,
    // alternating between the two processes.
    let sizes = [3 * MIB, 7 * MIB + 11, MIB, 2 * MIB];
    let bytes = varied_bytes(5, sizes.iter().sum());
    let digest = sha256(&bytes);
    let mut session = open_upload(&c, &a, "shared/app").await;
    let mut at = 0;
    for (i, size) in sizes[..3].iter().enumerate() {
        let via = if i % 2 == 0 { &a } else { &b };
        session = patch(&c, via, &session, &bytes[at..at + size], at).await;
        at += size;
        let other = if i % 2 == 0 { &b } else { &a };
        assert_eq!(status(&c, other, &session).await, format!("0-{}", at - 1));
    }
    // The session lives in the bucket, beside its staged bytes and parts.
    let id = session
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let state = moto
        .keys(&bucket, &format!("{PREFIX}/uploads/{id}/state.json"))
        .await;
    assert_eq!(state.len(), 1, "{state:?}");
    close(&c, &b, &session, &bytes[at..], at, &digest).await;
    assert_stored(&moto, &bucket, &bytes).await;
    assert_pull(&c, &b, "shared/app", &bytes).await;
}

#[tokio::test]
async fn a_chunked_push_survives_a_restart_in_the_middle() {
    let Some(moto) = Moto::start() else { return };
    let bucket = moto.bucket().await;
    let mut b = berth_on(&moto, &bucket);
    let mut c = client();

    let bytes = varied_bytes(6, 17 * MIB + 5);
    let digest = sha256(&bytes);
    let session = open_upload(&c, &b, "restart/app").await;
    let first = 9 * MIB + 1; // one part sent, the rest staged
    let session = patch(&c, &b, &session, &bytes[..first], 0).await;

    b.restart(); // SIGKILL, then a new process on the same data and port
    c = client(); // no pooled connection to the killed process
    assert_eq!(status(&c, &b, &session).await, format!("0-{}", first - 1));
    let second = 5 * MIB;
    let session = patch(&c, &b, &session, &bytes[first..first + second], first).await;
    b.restart();
    c = client();
    close(
        &c,
        &b,
        &session,
        &bytes[first + second..],
        first + second,
        &digest,
    )
    .await;
    assert_stored(&moto, &bucket, &bytes).await;
    assert_pull(&c, &b, "restart/app", &bytes).await;
}

#[test]
fn serve_refuses_storage_it_cannot_write() {
    let Some(moto) = Moto::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // No such bucket: the start-up probe cannot write.
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--storage-url",
        "s3://no-such-bucket/x",
    ];
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args).current_dir(dir.path());
    for (k, v) in moto.berth_env() {
        cmd.env(k, v);
    }
    let out = support::run_cmd_with(cmd, std::time::Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("blob storage at s3://no-such-bucket/x is not usable"),
        "{err}"
    );
}
