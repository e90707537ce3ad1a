//! A real S3-compatible server for end-to-end tests: `moto_server` (PyPI `moto[server]`)
//! on 127.0.0.1 with a port it picks itself, stopped by its PID when dropped.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::external_tool;

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto with S3's real limits (parts of at least 5 MiB). `None`, with a printed
    /// reason, when moto_server is missing (a failure with `BERTH_REQUIRE_EXTERNAL=1`).
    pub fn start() -> Option<Moto> {
        if !external_tool("moto_server", &["--help"]) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("moto.log");
        let out = std::fs::File::create(&log).expect("moto log");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("moto log"))
            .stderr(out)
            .spawn()
            .expect("spawn moto_server");
        let mut moto = Moto {
            child,
            endpoint: String::new(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = moto.log_text();
            if let Some(at) = text.find("Running on http://127.0.0.1:") {
                let rest = &text[at + "Running on ".len()..];
                moto.endpoint = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return Some(moto);
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates a new bucket with a unique name and returns the name.
    pub async fn bucket(&self) -> String {
        let name = format!("berth-{}", super::unique_suffix());
        let res = super::client()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(res.status().is_success(), "create bucket: {}", res.status());
        name
    }

    /// The keys under `prefix` in `bucket` (the first 1000).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let res = super::client()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await
            .expect("list bucket");
        assert!(res.status().is_success(), "list bucket: {}", res.status());
        let xml = res.text().await.expect("list body");
        xml.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// The variables a `berth serve` needs to use this server through object_store's
    /// standard `AWS_...` settings, with short retries (moto answers 500 where S3 answers
    /// 404, and the default retries would wait minutes).
    pub fn berth_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("BERTH_STORAGE__S3__MAX_RETRIES", "2"),
            ("BERTH_STORAGE__S3__RETRY_TIMEOUT_MS", "5000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
