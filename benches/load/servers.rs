//! Starting and stopping the registries under test: `berth serve` on 127.0.0.1:0 (port
//! read from its readiness line) and CNCF Distribution (`docker-registry serve CONFIG` on a
//! free port, polled until `GET /v2/` answers), each in a fresh temporary directory; or
//! an already-running registry given by URL. Only processes started here are ever killed,
//! by their own handle. No measuring here besides exposing the process id.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A registry under test.
#[derive(Debug)]
pub struct Server {
    /// `Berth` or `Distribution`.
    pub name: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The process to measure, if known.
    pub pid: Option<u32>,
    child: Option<Child>,
    log: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A registry someone else runs (not stopped by us); `pid`, if given, is measured.
    pub fn external(name: &'static str, url: &str, pid: Option<u32>) -> Self {
        Server {
            name,
            url: url.trim_end_matches('/').to_owned(),
            pid,
            child: None,
            log: None,
            _dir: None,
        }
    }

    /// Starts `berth serve` on a new data directory, logging warnings only and with access
    /// control off (as Distribution is configured), and waits for its readiness line.
    ///
    /// # Errors
    /// It cannot be spawned or does not print a ready line within the bound.
    pub fn start_berth(binary: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("berth-load-").tempdir()?;
        let log = dir.path().join("stderr.log");
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .env("BERTH_AUTH__ENABLED", "false")
            .env("BERTH_ADMIN_PASSWORD", "load-benchmark")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Server {
            name: "Berth",
            url: String::new(),
            pid: Some(child.id()),
            child: Some(child),
            log: Some(log),
            _dir: Some(dir),
        };
        let line = rx.recv_timeout(READY_TIMEOUT).map_err(|_| {
            anyhow::anyhow!("berth printed no ready line; log:\n{}", server.log_tail())
        })?;
        let ready: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("ready line {line}"))?;
        let Some(addr) = ready["http"].as_str().filter(|_| ready["event"] == "ready") else {
            bail!("unexpected first line from berth: {line}");
        };
        server.url = format!("http://{addr}");
        Ok(server)
    }

    /// Starts Distribution with filesystem storage in a new directory, deletes enabled and
    /// warnings-only logs, then polls `GET /v2/` until it answers (bounded).
    ///
    /// # Errors
    /// It cannot be spawned, exits, or does not answer within the bound.
    pub async fn start_distribution(binary: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("distribution-load-")
            .tempdir()?;
        // Distribution cannot report the port it bound: take a free one and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: load-benchmark\n",
                dir.path().join("storage").display()
            ),
        )?;
        let log = dir.path().join("stderr.log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        let mut server = Server {
            name: "Distribution",
            url: format!("http://127.0.0.1:{port}"),
            pid: Some(child.id()),
            child: Some(child),
            log: Some(log),
            _dir: Some(dir),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let start = Instant::now();
        loop {
            if let Ok(res) = http.get(format!("{}/v2/", server.url)).send().await {
                if res.status().is_success() || res.status() == 401 {
                    return Ok(server);
                }
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "distribution exited with {status}; log:\n{}",
                    server.log_tail()
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "distribution did not answer GET /v2/; log:\n{}",
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of the server's log, if we started it.
    pub fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether a server we started has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// Stops a server we started (SIGKILL to its own pid, then reap).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `version` a binary prints, first line only.
pub fn version_of(binary: &Path, arg: &str) -> Option<String> {
    let out = Command::new(binary).arg(arg).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}
