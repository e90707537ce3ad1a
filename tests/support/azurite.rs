//! A real Azure Blob Storage emulator for end-to-end tests: Azurite's blob service
//! (npm `azurite`, command `azurite-blob`) on 127.0.0.1 with a port it picks itself, in
//! memory, stopped by its PID when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;

use super::emulator_wire::{hmac_sha256, http_date};
use super::external_tool;

/// Azurite's well-known development account and key (public, in Microsoft's documentation).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The `x-ms-version` of the requests made here.
const VERSION: &str = "2021-08-06";

/// A running Azurite blob service.
pub struct Azurite {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite. `None`, with a printed reason, when azurite-blob is missing (a
    /// failure with `BERTH_REQUIRE_EXTERNAL=1`).
    pub fn start() -> Option<Azurite> {
        if !external_tool("azurite-blob", &["--version"]) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("azurite.log");
        let out = std::fs::File::create(&log).expect("azurite log");
        // Port 0: Azurite binds a free port and logs which. No telemetry: tests talk to
        // loopback only.
        let child = Command::new("azurite-blob")
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
                "--location",
            ])
            // Anything it writes despite keeping blobs in memory goes to the temp dir.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("azurite log"))
            .stderr(out)
            .spawn()
            .expect("spawn azurite-blob");
        let mut azurite = Azurite {
            child,
            url: String::new(),
            log,
            dir,
        };
        let marker = "successfully listens on ";
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = azurite.log_text();
            if let Some(at) = text.find(marker) {
                let rest = &text[at + marker.len()..];
                azurite.url = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return Some(azurite);
            }
            if let Ok(Some(status)) = azurite.child.try_wait() {
                panic!("azurite-blob exited ({status}); its log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "azurite-blob did not start; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The development account's blob endpoint (`http://127.0.0.1:PORT/devstoreaccount1`).
    pub fn endpoint(&self) -> String {
        format!("{}/{ACCOUNT}", self.url)
    }

    /// Creates a container with a new name and returns the name (object_store works inside
    /// a container and cannot create one).
    pub async fn container(&self) -> String {
        let name = format!("berth-{}", super::unique_suffix());
        let res = self
            .signed(
                reqwest::Method::PUT,
                &format!("/{name}"),
                &[("restype", "container")],
            )
            .send()
            .await
            .expect("create container");
        assert_eq!(res.status(), 201, "create container {name}");
        name
    }

    /// The names of the blobs under `prefix` in `container` (the first 5000).
    pub async fn keys(&self, container: &str, prefix: &str) -> Vec<String> {
        let res = self
            .signed(
                reqwest::Method::GET,
                &format!("/{container}"),
                &[
                    ("comp", "list"),
                    ("prefix", prefix),
                    ("restype", "container"),
                ],
            )
            .send()
            .await
            .expect("list blobs");
        assert!(res.status().is_success(), "list blobs: {}", res.status());
        let xml = res.text().await.expect("list body");
        xml.split("<Name>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Name>").map(|(name, _)| name.to_owned()))
            .collect()
    }

    /// A request to the development account signed with its key (Shared Key authorization;
    /// `query` sorted by name, values without characters that need escaping).
    fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let date = http_date(SystemTime::now());
        let mut resource = format!("/{ACCOUNT}/{ACCOUNT}{path}");
        for (k, v) in query {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        // The verb, eleven standard headers (all empty here), the x-ms- headers, the resource.
        let to_sign = format!(
            "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n{resource}"
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.decode(KEY).expect("the key is base64");
        let signature = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        super::client()
            .request(
                method,
                format!("{}{path}?{}", self.endpoint(), query.join("&")),
            )
            .header("x-ms-date", date)
            .header("x-ms-version", VERSION)
            .header("authorization", format!("SharedKey {ACCOUNT}:{signature}"))
    }

    /// The variables a `berth serve` needs to use this Azurite through object_store's own
    /// `AZURE_...` settings (emulator mode: the development account and key), with short
    /// retries.
    pub fn berth_env(&self) -> Vec<(String, String)> {
        [
            ("AZURE_STORAGE_USE_EMULATOR", "true"),
            ("AZURITE_BLOB_STORAGE_URL", self.url.as_str()),
            ("BERTH_STORAGE__AZURE__MAX_RETRIES", "2"),
            ("BERTH_STORAGE__AZURE__RETRY_TIMEOUT_MS", "5000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The variables for the same through Berth's `[storage.azure]` options instead: the
    /// account, a key file (written into this server's directory) and the endpoint.
    pub fn berth_config_env(&self) -> Vec<(String, String)> {
        let key_file = self.dir.path().join("account-key");
        std::fs::write(&key_file, format!("{KEY}\n")).expect("write the key file");
        [
            ("BERTH_STORAGE__AZURE__ACCOUNT", ACCOUNT.to_owned()),
            (
                "BERTH_STORAGE__AZURE__ACCESS_KEY_FILE",
                key_file.to_str().expect("utf-8").to_owned(),
            ),
            ("BERTH_STORAGE__AZURE__ENDPOINT", self.endpoint()),
            ("BERTH_STORAGE__AZURE__ALLOW_HTTP", "true".to_owned()),
            ("BERTH_STORAGE__AZURE__MAX_RETRIES", "2".to_owned()),
            ("BERTH_STORAGE__AZURE__RETRY_TIMEOUT_MS", "5000".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
