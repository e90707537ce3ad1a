//! The typed configuration of a replica. The binary layers it (later wins): these
//! defaults, a TOML file, `BERTH_...` variables, then flags. Every field names its unit.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything a replica needs to start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on. Default `127.0.0.1:5000`.
    pub listen: SocketAddr,
    /// Where the replica keeps its metadata. Default `./berth-data`.
    pub data_dir: PathBuf,
    /// Blob storage as a URL: `file:///dir`. Default: `file://<data_dir>/storage`.
    pub storage_url: Option<String>,
    /// Short for `storage_url = file:///DIR`.
    pub storage_dir: Option<PathBuf>,
    /// The URL other replicas use to reach this one. Default: `http://<bound address>`
    /// (`https://` with TLS on).
    pub advertise: Option<String>,
    /// TLS of the listener and between replicas.
    pub tls: TlsConfig,
    /// Raft timings and log compaction.
    pub raft: RaftConfig,
    /// How this replica enters its cluster on first start.
    pub cluster: ClusterConfig,
    /// The first administrator's password, for a new cluster only. Never printed.
    #[serde(skip_serializing)]
    pub admin_password: Option<String>,
    /// A file holding the first administrator's password (first line), for a new cluster only.
    pub admin_password_file: Option<PathBuf>,
    /// Limits of the OCI API.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Seconds in-flight requests get to finish after SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
}

/// Joining a cluster. Only read when the data directory holds no replica yet.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Base URL of a member to join (`http://10.0.0.5:5000`); absent: create a new cluster.
    pub join: Option<String>,
    /// The join token. With `join`: the token that admits this replica. Without: a token this
    /// new cluster accepts from joining replicas (for deployments that start all replicas at
    /// once with a shared secret). Never printed.
    #[serde(skip_serializing)]
    pub join_token: Option<String>,
    /// A file holding the join token (first line), instead of `join_token`.
    pub join_token_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("join", &self.join)
            .field("join_token_file", &self.join_token_file)
            .finish_non_exhaustive()
    }
}

/// TLS settings. The mode is chosen when a cluster is created: every replica of a cluster uses
/// the same one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// `off` (plain HTTP), `auto` (Berth's own cluster CA) or `bundle` (the operator's
    /// certificates). Default `off`.
    pub mode: TlsMode,
    /// The bundle's directory: `ca.pem`, `cert.pem`, `key.pem`. Read in `bundle` mode; written
    /// by Berth in `auto` mode. Default `<data_dir>/tls`.
    pub dir: Option<PathBuf>,
    /// Names (DNS names or IP addresses) of the server certificate Berth issues in `auto`
    /// mode. Default: the listen address (unless it is a wildcard), `localhost` and
    /// `127.0.0.1`. The advertise URL's host is always added.
    pub san: Vec<String>,
}

/// How a replica serves and reaches its peers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain HTTP.
    #[default]
    Off,
    /// HTTPS with a server certificate from the cluster's own root CA, which Berth creates on
    /// the cluster's first start, stores in the replicated metadata and serves at `/ca.pem`.
    Auto,
    /// HTTPS with the operator's bundle (`ca.pem`, `cert.pem`, `key.pem`).
    Bundle,
}

/// Raft settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat interval, ms. Default 250.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeout, ms. Default 1000.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the election timeout, ms. Default 2000.
    pub election_timeout_max_ms: u64,
    /// Log entries after which a snapshot is taken and the log compacted. Default 10000.
    pub snapshot_after_logs: u64,
    /// Log entries kept after a snapshot, for replicas that lag briefly. Default 1000.
    pub logs_kept_after_snapshot: u64,
    /// How long a write may wait for a leader and a quorum before failing with 503, ms.
    /// Default 5000.
    pub write_timeout_ms: u64,
}

/// Limits of the OCI API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest manifest accepted, bytes. Default 4 MiB (the spec's advice).
    pub max_manifest_bytes: usize,
    /// Largest page of tags or repositories, whatever `n` asks. Default 10000.
    pub max_page_entries: u32,
}

/// Logging settings (`RUST_LOG` overrides the filter).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter. Default `info,openraft=off`: openraft repeats every failed heartbeat;
    /// Berth logs leader changes and unreachable replicas itself.
    pub filter: String,
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("berth-data"),
            storage_url: None,
            storage_dir: None,
            advertise: None,
            tls: TlsConfig::default(),
            raft: RaftConfig::default(),
            cluster: ClusterConfig::default(),
            admin_password: None,
            admin_password_file: None,
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            shutdown_grace_secs: 30,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_after_logs: 10_000,
            logs_kept_after_snapshot: 1_000,
            write_timeout_ms: 5_000,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let defaults = crate::service::Limits::default();
        Self {
            max_manifest_bytes: defaults.max_manifest_bytes,
            max_page_entries: defaults.max_page_entries,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info,openraft=off".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field's value is out of range or contradicts another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where blobs live, resolved from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageLocation {
    /// A directory on local disk or an NFS mount.
    Directory(PathBuf),
}

impl Config {
    /// Cross-field checks, at start only.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            return Err(ConfigError::Invalid(
                "raft.election_timeout_min_ms must exceed raft.heartbeat_ms, which must be positive".into(),
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(ConfigError::Invalid(
                "raft.election_timeout_max_ms must exceed raft.election_timeout_min_ms".into(),
            ));
        }
        if self.limits.max_page_entries == 0 || self.limits.max_manifest_bytes == 0 {
            return Err(ConfigError::Invalid("limits must be positive".into()));
        }
        if self.storage_url.is_some() && self.storage_dir.is_some() {
            return Err(ConfigError::Invalid(
                "give storage_url or storage_dir, not both".into(),
            ));
        }
        if self.cluster.join_token.is_some() && self.cluster.join_token_file.is_some() {
            return Err(ConfigError::Invalid(
                "give cluster.join_token or cluster.join_token_file, not both".into(),
            ));
        }
        if self.admin_password.is_some() && self.admin_password_file.is_some() {
            return Err(ConfigError::Invalid(
                "give admin_password or admin_password_file, not both".into(),
            ));
        }
        if let Some(url) = &self.cluster.join {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "cluster.join {url}: give a member's base URL (http://host:port)"
                )));
            }
        }
        self.validate_tls()?;
        self.storage().map(|_| ())
    }

    /// Whether replicas must speak TLS to each other and to clients given the mode: a TLS
    /// replica joins and advertises `https://` URLs, a plain one `http://` URLs.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = self.tls.mode != TlsMode::Off;
        let scheme = if tls { "https://" } else { "http://" };
        for (what, url) in [
            ("cluster.join", &self.cluster.join),
            ("advertise", &self.advertise),
        ] {
            if let Some(url) = url {
                if !url.starts_with(scheme) {
                    return Err(ConfigError::Invalid(format!(
                        "{what} {url}: with tls.mode {:?} replicas are reached at {scheme} URLs",
                        self.tls.mode
                    )));
                }
            }
        }
        if self.tls.san.iter().any(|n| n.trim().is_empty()) {
            return Err(ConfigError::Invalid("tls.san: a name is empty".into()));
        }
        Ok(())
    }

    /// The TLS bundle's directory: `tls.dir`, else `<data_dir>/tls`.
    pub fn tls_dir(&self) -> PathBuf {
        self.tls
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tls"))
    }

    /// The join token, from `cluster.join_token` or the first line of `cluster.join_token_file`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the file cannot be read or is empty.
    pub fn join_token(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.cluster.join_token.as_ref(),
            self.cluster.join_token_file.as_ref(),
            "join token",
        )
    }

    /// The first administrator's password, from `admin_password` or `admin_password_file`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the file cannot be read or is empty.
    pub fn admin_password(&self) -> Result<Option<String>, ConfigError> {
        secret(
            self.admin_password.as_ref(),
            self.admin_password_file.as_ref(),
            "admin password",
        )
    }

    /// The blob storage this configuration names.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a URL of a kind this build cannot use.
    pub fn storage(&self) -> Result<StorageLocation, ConfigError> {
        if let Some(dir) = &self.storage_dir {
            return Ok(StorageLocation::Directory(dir.clone()));
        }
        let Some(url) = &self.storage_url else {
            return Ok(StorageLocation::Directory(self.data_dir.join("storage")));
        };
        match url.split_once("://") {
            Some(("file", path)) if path.starts_with('/') => {
                Ok(StorageLocation::Directory(PathBuf::from(path)))
            }
            Some(("file", _)) => Err(ConfigError::Invalid(format!(
                "storage_url {url}: a file URL needs an absolute path (file:///dir)"
            ))),
            _ => Err(ConfigError::Invalid(format!(
                "storage_url {url}: only file:/// directories are supported by this version"
            ))),
        }
    }
}

/// A secret given inline or as the first line of a file; empty is refused.
fn secret(
    inline: Option<&String>,
    file: Option<&PathBuf>,
    what: &str,
) -> Result<Option<String>, ConfigError> {
    let value = match (inline, file) {
        (Some(v), _) => v.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| {
                ConfigError::Invalid(format!(
                    "cannot read the {what} file {}: {e}",
                    path.display()
                ))
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    if value.trim().is_empty() {
        return Err(ConfigError::Invalid(format!("the {what} is empty")));
    }
    Ok(Some(value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(
            cfg.storage().unwrap(),
            StorageLocation::Directory(PathBuf::from("berth-data/storage"))
        );
    }

    #[test]
    fn storage_urls_resolve() {
        let cfg = Config {
            storage_url: Some("file:///srv/blobs".into()),
            ..Config::default()
        };
        assert_eq!(
            cfg.storage().unwrap(),
            StorageLocation::Directory(PathBuf::from("/srv/blobs"))
        );
        let cfg = Config {
            storage_dir: Some("/x".into()),
            ..Config::default()
        };
        assert_eq!(
            cfg.storage().unwrap(),
            StorageLocation::Directory(PathBuf::from("/x"))
        );
        for bad in ["file://relative", "ftp://x/y", "nonsense"] {
            let cfg = Config {
                storage_url: Some(bad.into()),
                ..Config::default()
            };
            assert!(cfg.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_mode_and_url_schemes_must_agree() {
        let mut cfg = Config::default();
        cfg.cluster.join = Some("https://10.0.0.1:5000".into());
        assert!(cfg.validate().is_err(), "https join without TLS");
        cfg.tls.mode = TlsMode::Auto;
        cfg.validate().unwrap();
        cfg.advertise = Some("http://10.0.0.2:5000".into());
        assert!(cfg.validate().is_err(), "http advertise with TLS");
        cfg.advertise = Some("https://10.0.0.2:5000".into());
        cfg.validate().unwrap();
        cfg.tls.san = vec![" ".into()];
        assert!(cfg.validate().is_err());
        assert_eq!(cfg.tls_dir(), PathBuf::from("berth-data/tls"));
    }

    #[test]
    fn inconsistent_raft_timings_are_refused() {
        let mut cfg = Config::default();
        cfg.raft.election_timeout_min_ms = cfg.raft.heartbeat_ms;
        assert!(cfg.validate().is_err());
    }
}
