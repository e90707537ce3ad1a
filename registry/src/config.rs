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
    /// Blob storage as a URL: `file:///dir`, `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix` (also `azure://`). Default: `file://<data_dir>/storage`.
    pub storage_url: Option<String>,
    /// Short for `storage_url = file:///DIR`.
    pub storage_dir: Option<PathBuf>,
    /// Options of storage backends (`[storage.s3]`, `[storage.gcs]`, `[storage.azure]`).
    pub storage: StorageConfig,
    /// The URL other replicas use to reach this one. Default: `http://<bound address>`
    /// (`https://` with TLS on).
    pub advertise: Option<String>,
    /// TLS of the listener and between replicas.
    pub tls: TlsConfig,
    /// Raft timings and log compaction.
    pub raft: RaftConfig,
    /// How this replica enters its cluster on first start.
    pub cluster: ClusterConfig,
    /// Access control: tokens, their lifetimes, the names in them.
    pub auth: AuthConfig,
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
    /// Garbage collection (`[gc]`).
    pub gc: GcConfig,
}

/// Garbage collection: its policy and optional schedule. Durations are humantime strings
/// (`"90s"`, `"1h"`, `"7days"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// How often the leader runs garbage collection; none: only when asked (`berth gc`).
    /// Default none.
    pub interval: Option<String>,
    /// What was pushed, linked or written more recently than this is kept (a push under way).
    /// Default `"1h"`.
    pub grace: String,
    /// Untagged manifests (not children of a kept index, not referrers of a kept manifest):
    /// `"keep"` (default) or `"delete"`.
    pub untagged: UntaggedPolicy,
    /// Uploads started longer ago than this are removed. Default `"24h"`.
    pub upload_max_age: String,
    /// Storage deletions in flight at once. Default 16.
    pub concurrency: usize,
}

/// What garbage collection does with untagged manifests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UntaggedPolicy {
    /// Keep them (and what they reference).
    #[default]
    Keep,
    /// Delete those nothing keeps.
    Delete,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval: None,
            grace: "1h".to_owned(),
            untagged: UntaggedPolicy::Keep,
            upload_max_age: "24h".to_owned(),
            concurrency: 16,
        }
    }
}

impl GcConfig {
    /// The options of a run as configured.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a duration that does not parse.
    pub fn options(&self) -> Result<crate::service::GcOptions, ConfigError> {
        Ok(crate::service::GcOptions {
            dry_run: false,
            grace: duration("gc.grace", &self.grace)?,
            delete_untagged: self.untagged == UntaggedPolicy::Delete,
            upload_max_age: duration("gc.upload_max_age", &self.upload_max_age)?,
            concurrency: self.concurrency.max(1),
        })
    }

    /// The schedule, if any.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a duration that does not parse or is zero.
    pub fn interval(&self) -> Result<Option<std::time::Duration>, ConfigError> {
        let Some(text) = &self.interval else {
            return Ok(None);
        };
        let every = duration("gc.interval", text)?;
        if every.is_zero() {
            return Err(ConfigError::Invalid("gc.interval must be positive".into()));
        }
        Ok(Some(every))
    }
}

fn duration(field: &str, text: &str) -> Result<std::time::Duration, ConfigError> {
    humantime::parse_duration(text)
        .map_err(|e| ConfigError::Invalid(format!("{field} {text:?}: {e}")))
}

/// Access control (the Docker token protocol).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether access control is on. Default true; turning it off lets anyone read and write
    /// everything (Berth warns when it is off on a non-loopback address).
    pub enabled: bool,
    /// The `service` of challenges and the `aud` of tokens. Default `berth`.
    pub service: String,
    /// The `iss` of tokens. Default `berth`.
    pub issuer: String,
    /// The token endpoint's absolute URL for challenges; default: the address the client
    /// used (`Host`, `X-Forwarded-Proto`/`-Host`) + `/auth/token`.
    pub realm: Option<String>,
    /// Lifetime of access tokens, seconds. Default 300.
    pub access_token_ttl_secs: u64,
    /// Lifetime of refresh tokens (`docker login`'s stored identity), seconds. Default 90 days.
    pub refresh_token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            service: "berth".to_owned(),
            issuer: "berth".to_owned(),
            realm: None,
            access_token_ttl_secs: 300,
            refresh_token_ttl_secs: 90 * 24 * 3600,
        }
    }
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

/// Options of storage backends other than a directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `s3://` storage: these win over the `AWS_...` variables object_store reads.
    pub s3: S3Config,
    /// `gs://` storage: these win over the `GOOGLE_...` variables object_store reads.
    pub gcs: GcsConfig,
    /// `az://` storage: these win over the `AZURE_...` variables object_store reads.
    pub azure: AzureConfig,
}

/// Options of `s3://` storage (AWS S3 or an S3-compatible service). Each unset option falls
/// back to the `AWS_...` variable named, then to object_store's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Region, e.g. `eu-west-1` (`AWS_REGION`, `AWS_DEFAULT_REGION`; else `us-east-1`).
    pub region: Option<String>,
    /// Endpoint of an S3-compatible service, e.g. `http://minio:9000` (`AWS_ENDPOINT`;
    /// else AWS).
    pub endpoint: Option<String>,
    /// `true`: address the bucket as `https://bucket.host/`; `false`: path style,
    /// `https://host/bucket/` (`AWS_VIRTUAL_HOSTED_STYLE_REQUEST`; else path style).
    pub virtual_hosted_style: Option<bool>,
    /// Allow plain `http://` endpoints, for tests (`AWS_ALLOW_HTTP`; else false).
    pub allow_http: Option<bool>,
    /// Access key id (`AWS_ACCESS_KEY_ID`; else the instance or container role).
    pub access_key_id: Option<String>,
    /// A file holding the secret access key; the key itself never goes in the
    /// configuration (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key_file: Option<PathBuf>,
    /// A file holding a session token (`AWS_SESSION_TOKEN`).
    pub session_token_file: Option<PathBuf>,
    /// Bytes per multipart upload part, 5 MiB to 5 GiB. Default 8 MiB.
    pub part_size_bytes: Option<usize>,
    /// Retries of a failed request. Default 10.
    pub max_retries: Option<usize>,
    /// No retry starts later than this after the first attempt, ms. Default 180000.
    pub retry_timeout_ms: Option<u64>,
}

/// Options of `gs://` storage (Google Cloud Storage). Each unset option falls back to the
/// `GOOGLE_...` variable named, then to object_store's default. Credentials are files only:
/// the key itself never goes in the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    /// A service account's JSON key file (`GOOGLE_SERVICE_ACCOUNT`,
    /// `GOOGLE_SERVICE_ACCOUNT_PATH`; `GOOGLE_SERVICE_ACCOUNT_KEY` holds the JSON itself).
    /// Default: application default credentials, else the instance's metadata server.
    pub service_account_path: Option<PathBuf>,
    /// Application default credentials, e.g. from `gcloud auth application-default login`
    /// (`GOOGLE_APPLICATION_CREDENTIALS`; else gcloud's well-known file).
    pub application_credentials_path: Option<PathBuf>,
    /// Base URL of the storage API, for an emulator, e.g. `http://127.0.0.1:4443` (a service
    /// account file may name it as `gcs_base_url`). Default: Google's.
    pub base_url: Option<String>,
    /// Allow a plain `http://` base URL, for emulators (`GOOGLE_ALLOW_HTTP`; else false).
    pub allow_http: Option<bool>,
    /// Bytes per multipart upload part, 5 MiB to 5 GiB. Default 8 MiB.
    pub part_size_bytes: Option<usize>,
    /// Retries of a failed request. Default 10.
    pub max_retries: Option<usize>,
    /// No retry starts later than this after the first attempt, ms. Default 180000.
    pub retry_timeout_ms: Option<u64>,
}

/// Options of `az://` storage (Azure Blob Storage). Each unset option falls back to the
/// `AZURE_...` variable named, then to object_store's default. Credentials are files only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    /// Storage account name (`AZURE_STORAGE_ACCOUNT_NAME`). Required unless `use_emulator`.
    pub account: Option<String>,
    /// A file holding the account's access key (`AZURE_STORAGE_ACCOUNT_KEY`,
    /// `AZURE_STORAGE_ACCESS_KEY` hold the key itself). Default: other credentials
    /// object_store finds (`AZURE_STORAGE_SAS_KEY`, a service principal, a managed identity).
    pub access_key_file: Option<PathBuf>,
    /// Blob service endpoint, e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite
    /// (`AZURE_STORAGE_ENDPOINT`). Default: `https://<account>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// Talk to a local Azurite with its well-known development account and key
    /// (`AZURE_STORAGE_USE_EMULATOR`); its address comes from `AZURITE_BLOB_STORAGE_URL`
    /// (default `http://127.0.0.1:10000`), so it excludes `endpoint`. Default false.
    pub use_emulator: Option<bool>,
    /// Allow a plain `http://` endpoint (`AZURE_ALLOW_HTTP`; else false; implied by
    /// `use_emulator`).
    pub allow_http: Option<bool>,
    /// Bytes per block of a multipart upload, 5 MiB to 4000 MiB. Default 8 MiB.
    pub part_size_bytes: Option<usize>,
    /// Retries of a failed request. Default 10.
    pub max_retries: Option<usize>,
    /// No retry starts later than this after the first attempt, ms. Default 180000.
    pub retry_timeout_ms: Option<u64>,
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
            storage: StorageConfig::default(),
            advertise: None,
            tls: TlsConfig::default(),
            raft: RaftConfig::default(),
            cluster: ClusterConfig::default(),
            auth: AuthConfig::default(),
            admin_password: None,
            admin_password_file: None,
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            shutdown_grace_secs: 30,
            gc: GcConfig::default(),
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
    /// An S3 bucket (AWS or S3-compatible), under a key prefix (empty: the bucket's root).
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix without leading or trailing `/`.
        prefix: String,
        /// Region, endpoint, credentials and retries.
        options: S3Config,
    },
    /// A Google Cloud Storage bucket, under a key prefix (empty: the bucket's root).
    Gcs {
        /// The bucket.
        bucket: String,
        /// Key prefix without leading or trailing `/`.
        prefix: String,
        /// Credentials, base URL and retries.
        options: GcsConfig,
    },
    /// An Azure Blob Storage container, under a key prefix (empty: the container's root).
    Azure {
        /// The container.
        container: String,
        /// Key prefix without leading or trailing `/`.
        prefix: String,
        /// Account, credentials, endpoint and retries.
        options: AzureConfig,
    },
}

impl std::fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Directory(dir) => write!(f, "file://{}", dir.display()),
            Self::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Gcs { bucket, prefix, .. } => write!(f, "gs://{bucket}/{prefix}"),
            Self::Azure {
                container, prefix, ..
            } => write!(f, "az://{container}/{prefix}"),
        }
    }
}

/// The object stores a storage URL may name, with what their bucket names allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    /// `s3://bucket/prefix` etc., for messages.
    fn form(self) -> &'static str {
        match self {
            Self::S3 => "s3://bucket/prefix",
            Self::Gcs => "gs://bucket/prefix",
            Self::Azure => "az://container/prefix",
        }
    }

    /// What a bucket (container) is called, for messages.
    fn bucket_word(self) -> &'static str {
        match self {
            Self::S3 | Self::Gcs => "bucket",
            Self::Azure => "container",
        }
    }

    /// `None` when `name` is a valid bucket (container) name, else what is wrong with it.
    fn bucket_problem(self, name: &str) -> Option<&'static str> {
        let edges_alnum = |n: &str| {
            n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && n.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        match self {
            // Lenient: S3-compatible services accept more than AWS does.
            Self::S3 => (name.len() > 255
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
            .then_some("letters, digits, '.', '-' and '_' only, at most 255"),
            // https://cloud.google.com/storage/docs/buckets#naming
            Self::Gcs => (!(3..=222).contains(&name.len())
                || !name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
                })
                || !edges_alnum(name)
                || name.split('.').any(|part| part.is_empty() || part.len() > 63))
            .then_some(
                "3 to 63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ),
            // https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
            Self::Azure => (!(3..=63).contains(&name.len())
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                || !edges_alnum(name)
                || name.contains("--"))
            .then_some(
                "3 to 63 lowercase letters, digits and single '-', starting and ending with a letter or digit",
            ),
        }
    }
}

/// `scheme://bucket[/prefix]` split and checked: the bucket (container) name and the key
/// prefix without leading or trailing `/`.
fn split_bucket_url<'a>(
    url: &str,
    cloud: Cloud,
    rest: &'a str,
) -> Result<(&'a str, &'a str), ConfigError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let word = cloud.bucket_word();
    if bucket.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "storage_url {url}: no {word} name; expected {}",
            cloud.form()
        )));
    }
    if cloud == Cloud::Azure && bucket.contains('@') {
        return Err(ConfigError::Invalid(format!(
            "storage_url {url}: give only the container (az://container/prefix); the account goes in storage.azure.account or AZURE_STORAGE_ACCOUNT_NAME"
        )));
    }
    if let Some(problem) = cloud.bucket_problem(bucket) {
        return Err(ConfigError::Invalid(format!(
            "storage_url {url}: {bucket:?} is not a valid {word} name ({problem}); expected {}",
            cloud.form()
        )));
    }
    let prefix = prefix.trim_matches('/');
    let prefix_ok = prefix.is_empty()
        || (prefix
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
            && object_store::path::Path::parse(prefix).is_ok());
    if !prefix_ok {
        return Err(ConfigError::Invalid(format!(
            "storage_url {url}: the key prefix must be /-separated names, without empty, . or .. parts"
        )));
    }
    Ok((bucket, prefix))
}

/// Checks a configured part size against the store's limits.
fn check_part_size(
    field: &str,
    part: Option<usize>,
    max: usize,
    max_text: &str,
) -> Result<(), ConfigError> {
    match part {
        Some(part) if !(5 << 20..=max).contains(&part) => Err(ConfigError::Invalid(format!(
            "{field} must be between 5 MiB and {max_text}"
        ))),
        _ => Ok(()),
    }
}

/// `s3://bucket[/prefix]` split and checked.
fn parse_s3(url: &str, rest: &str, options: &S3Config) -> Result<StorageLocation, ConfigError> {
    let (bucket, prefix) = split_bucket_url(url, Cloud::S3, rest)?;
    check_part_size(
        "storage.s3.part_size_bytes",
        options.part_size_bytes,
        5 << 30,
        "5 GiB",
    )?;
    Ok(StorageLocation::S3 {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        options: options.clone(),
    })
}

/// `gs://bucket[/prefix]` split and checked.
fn parse_gcs(url: &str, rest: &str, options: &GcsConfig) -> Result<StorageLocation, ConfigError> {
    let (bucket, prefix) = split_bucket_url(url, Cloud::Gcs, rest)?;
    check_part_size(
        "storage.gcs.part_size_bytes",
        options.part_size_bytes,
        5 << 30,
        "5 GiB",
    )?;
    if let Some(base) = &options.base_url {
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ConfigError::Invalid(format!(
                "storage.gcs.base_url {base}: give an http:// or https:// URL"
            )));
        }
    }
    Ok(StorageLocation::Gcs {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        options: options.clone(),
    })
}

/// `az://container[/prefix]` (or `azure://`) split and checked.
fn parse_azure(
    url: &str,
    rest: &str,
    options: &AzureConfig,
) -> Result<StorageLocation, ConfigError> {
    let (container, prefix) = split_bucket_url(url, Cloud::Azure, rest)?;
    check_part_size(
        "storage.azure.part_size_bytes",
        options.part_size_bytes,
        4000 << 20,
        "4000 MiB",
    )?;
    if let Some(endpoint) = &options.endpoint {
        if options.use_emulator == Some(true) {
            return Err(ConfigError::Invalid(
                "storage.azure: give endpoint or use_emulator, not both (with use_emulator the emulator's address comes from AZURITE_BLOB_STORAGE_URL)".into(),
            ));
        }
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ConfigError::Invalid(format!(
                "storage.azure.endpoint {endpoint}: give an http:// or https:// URL"
            )));
        }
    }
    if options.account.as_deref().is_some_and(|a| {
        a.is_empty()
            || !a
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }) {
        return Err(ConfigError::Invalid(
            "storage.azure.account: a storage account name is lowercase letters and digits".into(),
        ));
    }
    Ok(StorageLocation::Azure {
        container: container.to_owned(),
        prefix: prefix.to_owned(),
        options: options.clone(),
    })
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
        self.gc.options()?;
        self.gc.interval()?;
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
        if self.auth.access_token_ttl_secs < 60 {
            return Err(ConfigError::Invalid(
                "auth.access_token_ttl_secs must be at least 60".into(),
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
    /// [`ConfigError::Invalid`] for a URL of a kind this build cannot use, a bucket name the
    /// service would refuse, or backend options out of range.
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
            Some(("s3", rest)) => parse_s3(url, rest, &self.storage.s3),
            Some(("gs", rest)) => parse_gcs(url, rest, &self.storage.gcs),
            Some(("az" | "azure", rest)) => parse_azure(url, rest, &self.storage.azure),
            Some(("abfs" | "abfss" | "adl", _)) => Err(ConfigError::Invalid(format!(
                "storage_url {url}: Data Lake URLs are not supported; use az://container/prefix (Azure Blob Storage)"
            ))),
            _ => Err(ConfigError::Invalid(format!(
                "storage_url {url}: use file:///dir, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
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
        let cfg = Config {
            storage_url: Some("s3://my-bucket/team/registry/".into()),
            ..Config::default()
        };
        assert_eq!(
            cfg.storage().unwrap(),
            StorageLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/registry".into(),
                options: S3Config::default(),
            }
        );
        let cfg = Config {
            storage_url: Some("s3://my-bucket".into()),
            ..Config::default()
        };
        assert!(
            matches!(cfg.storage().unwrap(), StorageLocation::S3 { prefix, .. } if prefix.is_empty())
        );
        for bad in [
            "file://relative",
            "ftp://x/y",
            "nonsense",
            "s3://",
            "s3:///prefix",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "s3://bu cket/x",
        ] {
            let cfg = Config {
                storage_url: Some(bad.into()),
                ..Config::default()
            };
            assert!(cfg.validate().is_err(), "{bad}");
        }
    }

    fn storage_of(url: &str) -> Result<StorageLocation, ConfigError> {
        let cfg = Config {
            storage_url: Some(url.into()),
            ..Config::default()
        };
        cfg.validate()?;
        cfg.storage()
    }

    #[test]
    fn gcs_urls_resolve_with_their_options() {
        let mut cfg = Config {
            storage_url: Some("gs://my-bucket.example/team/registry/".into()),
            ..Config::default()
        };
        cfg.storage.gcs.base_url = Some("http://127.0.0.1:4443".into());
        cfg.storage.gcs.service_account_path = Some("/run/secrets/gcs.json".into());
        cfg.validate().unwrap();
        let location = cfg.storage().unwrap();
        assert_eq!(location.to_string(), "gs://my-bucket.example/team/registry");
        let StorageLocation::Gcs {
            bucket,
            prefix,
            options,
        } = location
        else {
            panic!("not GCS: {location:?}");
        };
        assert_eq!(
            (bucket.as_str(), prefix.as_str()),
            ("my-bucket.example", "team/registry")
        );
        assert_eq!(options, cfg.storage.gcs);
        assert!(
            matches!(storage_of("gs://b_1-x").unwrap(), StorageLocation::Gcs { prefix, .. } if prefix.is_empty())
        );
    }

    #[test]
    fn azure_urls_resolve_with_either_scheme() {
        for url in ["az://images/berth", "azure://images/berth/"] {
            let location = storage_of(url).unwrap();
            assert_eq!(
                location,
                StorageLocation::Azure {
                    container: "images".into(),
                    prefix: "berth".into(),
                    options: AzureConfig::default(),
                },
                "{url}"
            );
            assert_eq!(location.to_string(), "az://images/berth");
        }
        let mut cfg = Config {
            storage_url: Some("az://c0-ntainer".into()),
            ..Config::default()
        };
        cfg.storage.azure.account = Some("myaccount".into());
        cfg.storage.azure.endpoint = Some("http://127.0.0.1:10000/myaccount".into());
        cfg.storage.azure.allow_http = Some(true);
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_gcs_and_azure_urls_say_what_is_wrong() {
        for (url, expected) in [
            ("gs://", "no bucket name; expected gs://bucket/prefix"),
            ("gs:///prefix", "no bucket name"),
            ("gs://ab", "not a valid bucket name"),
            ("gs://UPPER/x", "not a valid bucket name"),
            ("gs://-dash/x", "not a valid bucket name"),
            ("gs://a..b/x", "not a valid bucket name"),
            ("gs://bucket/a/../b", "the key prefix"),
            ("az://", "no container name; expected az://container/prefix"),
            ("azure:///x", "no container name"),
            ("az://Images/x", "not a valid container name"),
            ("az://two--dashes", "not a valid container name"),
            ("az://under_score", "not a valid container name"),
            (
                "az://c@account.blob.core.windows.net/x",
                "the account goes in storage.azure.account",
            ),
            ("az://images/a//b", "the key prefix"),
            (
                "abfss://fs@acct.dfs.core.windows.net/x",
                "Data Lake URLs are not supported",
            ),
            (
                "gcs://bucket",
                "use file:///dir, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix",
            ),
        ] {
            let err = storage_of(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn gcs_and_azure_options_out_of_range_are_refused() {
        let mut cfg = Config {
            storage_url: Some("gs://bucket".into()),
            ..Config::default()
        };
        cfg.storage.gcs.part_size_bytes = Some(1 << 20);
        assert!(cfg.validate().is_err());
        cfg.storage.gcs.part_size_bytes = Some(16 << 20);
        cfg.storage.gcs.base_url = Some("127.0.0.1:4443".into());
        assert!(cfg.validate().unwrap_err().to_string().contains("base_url"));

        let mut cfg = Config {
            storage_url: Some("az://container".into()),
            ..Config::default()
        };
        cfg.storage.azure.part_size_bytes = Some(4001 << 20);
        assert!(cfg.validate().is_err());
        cfg.storage.azure.part_size_bytes = Some(4000 << 20);
        cfg.validate().unwrap();
        cfg.storage.azure.use_emulator = Some(true);
        cfg.validate().unwrap();
        cfg.storage.azure.endpoint = Some("http://127.0.0.1:10000/devstoreaccount1".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("endpoint or use_emulator, not both"), "{err}");
        cfg.storage.azure.use_emulator = None;
        cfg.storage.azure.account = Some("Not-Valid".into());
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("storage.azure.account"));
    }

    #[test]
    fn s3_part_sizes_below_the_s3_minimum_are_refused() {
        let mut cfg = Config {
            storage_url: Some("s3://bucket".into()),
            ..Config::default()
        };
        cfg.storage.s3.part_size_bytes = Some(1 << 20);
        assert!(cfg.validate().is_err());
        cfg.storage.s3.part_size_bytes = Some(16 << 20);
        cfg.validate().unwrap();
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
