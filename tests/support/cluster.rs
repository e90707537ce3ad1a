//! Clusters of real `berth` replicas on 127.0.0.1 sharing one blob directory: the first
//! creates the cluster, the others join it with a token made by `berth join-token`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{client, Berth, ADMIN_PASSWORD};

/// Raft timings for tests: quick elections, still safe on two busy cores.
pub const FAST_RAFT: &[(&str, &str)] = &[
    ("BERTH_RAFT__HEARTBEAT_MS", "100"),
    ("BERTH_RAFT__ELECTION_TIMEOUT_MIN_MS", "600"),
    ("BERTH_RAFT__ELECTION_TIMEOUT_MAX_MS", "1200"),
];

/// Replicas of one cluster and their shared blob storage.
pub struct Cluster {
    /// The replicas, in the order they were started (index 0 created the cluster).
    pub nodes: Vec<Berth>,
    storage: tempfile::TempDir,
    /// The storage flags every replica gets (`--storage-dir SHARED` unless told otherwise).
    storage_args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `n` replicas with the fast timings.
    pub fn start(n: usize) -> Cluster {
        Self::start_with_env(n, &[])
    }

    /// Starts `n` replicas with the fast timings plus `envs`.
    pub fn start_with_env(n: usize, envs: &[(&str, &str)]) -> Cluster {
        Self::start_on(n, None, envs)
    }

    /// Starts `n` replicas on the storage `--storage-url URL` names (`None`: a shared
    /// directory), with the fast timings plus `envs`.
    pub fn start_on(n: usize, storage_url: Option<&str>, envs: &[(&str, &str)]) -> Cluster {
        let storage = tempfile::tempdir().expect("shared storage dir");
        let storage_args = match storage_url {
            Some(url) => vec!["--storage-url".to_owned(), url.to_owned()],
            None => vec![
                "--storage-dir".to_owned(),
                storage.path().to_str().expect("utf-8").to_owned(),
            ],
        };
        let envs: Vec<(String, String)> = FAST_RAFT
            .iter()
            .chain(envs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            storage,
            storage_args,
            envs,
        };
        let args: Vec<&str> = cluster.storage_args.iter().map(String::as_str).collect();
        let first = Berth::start_opts(&args, &cluster.env_refs());
        cluster.nodes.push(first);
        for _ in 1..n {
            cluster.add_replica();
        }
        cluster
    }

    fn env_refs(&self) -> Vec<(&str, &str)> {
        self.envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The blob directory every replica shares.
    pub fn storage_dir(&self) -> &Path {
        self.storage.path()
    }

    /// Joins a new replica through the first running one; returns its index.
    pub fn add_replica(&mut self) -> usize {
        let via = self
            .running()
            .next()
            .expect("a running replica")
            .url
            .clone();
        let token = join_token(&via);
        let mut args: Vec<&str> = self.storage_args.iter().map(String::as_str).collect();
        args.extend(["--join", &via, "--join-token", &token]);
        let node = Berth::start_opts(&args, &self.env_refs());
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Stops every replica and removes its data directory; blob storage is kept.
    pub fn destroy_replicas(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        // Each replica's temporary directory goes with it.
        self.nodes.clear();
    }

    /// Starts the first replica of a new cluster on a data directory that `prepare` fills
    /// first (as `berth restore` does), with `envs` on top of the cluster's; returns its index.
    pub fn start_prepared(&mut self, envs: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> usize {
        let storage = self.storage_dir().to_str().expect("utf-8").to_owned();
        let mut all = self.env_refs();
        all.extend_from_slice(envs);
        let mut node = Berth::new(&["--storage-dir", &storage], &all);
        prepare(&node.data_dir());
        if let Err(e) = node.try_spawn("127.0.0.1:0") {
            panic!("{e}");
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The replicas whose process runs.
    pub fn running(&self) -> impl Iterator<Item = &Berth> {
        self.nodes.iter().filter(|n| n.pid().is_some())
    }

    /// Waits (bounded) until a running replica reports itself leader; returns its index.
    pub async fn leader(&self) -> usize {
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (i, node) in self.nodes.iter().enumerate() {
                if node.pid().is_none() {
                    continue;
                }
                if let Ok(res) = http.get(node.at("/health")).send().await {
                    if let Ok(h) = res.json::<serde_json::Value>().await {
                        if h["role"] == "leader" && h["status"] == "ok" {
                            return i;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until every running replica has applied as much as the leader's log.
    pub async fn settled(&self) {
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut applied = Vec::new();
            for node in self.running() {
                let h: serde_json::Value = match http.get(node.at("/health")).send().await {
                    Ok(res) => res.json().await.unwrap_or_default(),
                    Err(_) => serde_json::Value::Null,
                };
                applied.push(h["last_applied"].as_u64());
            }
            if applied.iter().all(Option::is_some) && applied.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not settle: {applied:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `berth join-token --url VIA` with the test administrator's password.
pub fn join_token(via: &str) -> String {
    let out = berth_cli(&["join-token", "--url", via]);
    assert!(out.0, "join-token failed: {}", out.2);
    out.1.trim().to_owned()
}

/// Runs a `berth` admin command with the test administrator's password in `BERTH_PASSWORD`;
/// returns (success, stdout, stderr). Bounded in time.
pub fn berth_cli(args: &[&str]) -> (bool, String, String) {
    berth_cli_env(args, &[])
}

/// [`berth_cli`] with more environment variables.
pub fn berth_cli_env(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut all = vec![("BERTH_PASSWORD", ADMIN_PASSWORD)];
    all.extend_from_slice(envs);
    let out = super::run_cmd_env(
        env!("CARGO_BIN_EXE_berth"),
        args,
        &all,
        Duration::from_secs(120),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
