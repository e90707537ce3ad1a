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
    /// The URL other replicas use to reach this one. Default: `http://<bound address>`.
    pub advertise: Option<String>,
    /// Raft timings and log compaction.
    pub raft: RaftConfig,
    /// Limits of the OCI API.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Seconds in-flight requests get to finish after SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
}

/// Raft settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// This replica's id in a new cluster. Default 1.
    pub node_id: u64,
    /// Leader heartbeat interval, ms. Default 250.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeout, ms. Default 1000.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the election timeout, ms. Default 2000.
    pub election_timeout_max_ms: u64,
    /// Log entries after which a snapshot is taken and the log compacted. Default 10000.
    pub snapshot_after_logs: u64,
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
    /// A tracing filter. Default `info,openraft=warn` (openraft is chatty at info).
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
            raft: RaftConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            shutdown_grace_secs: 30,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_after_logs: 10_000,
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
            filter: "info,openraft=warn".to_owned(),
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
        if r.node_id == 0 {
            return Err(ConfigError::Invalid(
                "raft.node_id must be at least 1".into(),
            ));
        }
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
        self.storage().map(|_| ())
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
    fn inconsistent_raft_timings_are_refused() {
        let mut cfg = Config::default();
        cfg.raft.election_timeout_min_ms = cfg.raft.heartbeat_ms;
        assert!(cfg.validate().is_err());
    }
}
