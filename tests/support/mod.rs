//! Harness for end-to-end tests: start real `berth` processes on 127.0.0.1:0, wait for
//! their readiness line, talk to them over HTTP, kill and restart them.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod azurite;
pub mod cluster;
#[path = "../../registry/src/storage/emulator_wire.rs"]
pub mod emulator_wire;
pub mod fake_gcs;
pub mod moto;
pub mod oci;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a replica may take to print its readiness line (a join includes catching up).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The administrator password every test replica is started with.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A running (or stopped) `berth serve` process with its own data directory.
pub struct Berth {
    child: Option<Child>,
    data: tempfile::TempDir,
    /// A command that runs `berth` (e.g. `ip netns exec NS`); empty: run it directly.
    wrapper: Vec<String>,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
    /// This replica's id, from its readiness line.
    pub replica_id: u64,
    /// `http://127.0.0.1:PORT`, or `https://` when the readiness line says `"tls": true`.
    pub url: String,
    /// The readiness line.
    pub ready: serde_json::Value,
    /// The bound `127.0.0.1:PORT`.
    pub addr: String,
    log: PathBuf,
}

impl Berth {
    /// Starts a replica on a new data directory.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a replica with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_opts(extra, &[])
    }

    /// Starts a replica with extra `serve` flags and environment variables (owned).
    pub fn start_with_env(extra: &[&str], env: &[(String, String)]) -> Self {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::start_opts(extra, &env)
    }

    /// Starts a replica with extra `serve` flags and environment variables.
    pub fn start_opts(extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut b = Self::new(extra, envs);
        b.spawn("127.0.0.1:0");
        b
    }

    /// A replica that is not started yet: [`try_spawn`](Self::try_spawn) starts it.
    pub fn new(extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let log = data.path().join("stderr.log");
        Berth {
            child: None,
            data,
            wrapper: Vec::new(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            replica_id: 0,
            url: String::new(),
            ready: serde_json::Value::Null,
            addr: String::new(),
            log,
        }
    }

    /// Runs `berth` through `wrapper` (e.g. `ip netns exec NS`, which execs it in place).
    pub fn wrapped(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// The blob storage directory (inside the data directory by default).
    pub fn storage_dir(&self) -> PathBuf {
        self.data_dir().join("storage")
    }

    fn spawn(&mut self, listen: &str) {
        if let Err(e) = self.try_spawn(listen) {
            panic!("{e}");
        }
    }

    /// Starts the process on `listen`; the error carries its log when it does not become
    /// ready (it may have exited, e.g. on a refused join).
    pub fn try_spawn(&mut self, listen: &str) -> Result<(), String> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_berth"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_berth")),
        };
        let mut child = command
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env("RUST_LOG", "info,openraft=off")
            .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Access control has its own tests (tests/auth.rs); the others test the registry.
            .env("BERTH_AUTH__ENABLED", "false")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the process never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "berth did not become ready; log:\n{}",
                    self.log_text()
                ));
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        self.addr = ready["http"].as_str().expect("http address").to_owned();
        let scheme = if ready["tls"] == true {
            "https"
        } else {
            "http"
        };
        self.url = format!("{scheme}://{}", self.addr);
        self.replica_id = ready["replica_id"].as_u64().expect("replica id");
        self.ready = ready;
        self.child = Some(child);
        Ok(())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts again on the same data directory and the same port.
    pub fn restart(&mut self) {
        self.kill();
        let addr = self.addr.clone();
        // The port may be briefly unavailable after a kill; retry a bounded number of times.
        for attempt in 0..20 {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spawn(&addr)));
            if result.is_ok() {
                return;
            }
            assert!(
                attempt < 19,
                "berth did not restart; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What the process wrote to stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An absolute URL for `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- berth log ({}) ---\n{}", self.addr, self.log_text());
        }
    }
}

/// An HTTP client with a generous timeout against hanging, never a speed assertion.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Runs `berth` with arguments and returns (exit success, stdout, stderr), bounded in time.
pub fn run_berth(args: &[&str], dir: &Path) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    for _ in 0..300 {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A name part unique within this process (a counter) and across processes (clock and pid):
/// lowercase hex digits and single `-`, as bucket and container names allow.
pub fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}-{nanos:x}-{n}", std::process::id())
}

/// Whether an external tool works here. Missing tools skip a test with a printed reason on
/// a developer's machine; with `BERTH_REQUIRE_EXTERNAL=1` (CI) they fail it instead.
pub fn external_tool(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        let reason = format!("`{tool} {}` does not work here", probe.join(" "));
        assert!(
            std::env::var("BERTH_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "{reason}, and BERTH_REQUIRE_EXTERNAL=1 requires it"
        );
        eprintln!("skipping: {reason}");
    }
    ok
}

/// Runs a command to completion within `timeout`, killing it past that; returns its output.
pub fn run_cmd(program: &str, args: &[&str], timeout: Duration) -> std::process::Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_cmd_with(cmd, timeout)
}

/// [`run_cmd`] with extra environment variables.
pub fn run_cmd_env(
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> std::process::Output {
    let mut cmd = Command::new(program);
    cmd.args(args).envs(envs.iter().copied());
    run_cmd_with(cmd, timeout)
}

/// [`run_cmd`] of a prepared command (arguments, variables, directory).
pub fn run_cmd_with(mut cmd: Command, timeout: Duration) -> std::process::Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    // Drain the pipes on threads so a chatty command never blocks on them.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut buf);
        buf
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// [`run_cmd`] that must succeed; returns stdout and stderr together as text.
pub fn run_ok(program: &str, args: &[&str], timeout: Duration) -> String {
    let out = run_cmd(program, args, timeout);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}
