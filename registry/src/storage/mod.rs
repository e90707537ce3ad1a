//! Blob storage: content-addressed blobs and resumable upload sessions, shared by every
//! replica, in a directory (local disk or an NFS mount) or an object store through
//! `object_store`: an S3 bucket (AWS or any S3-compatible service), a Google Cloud Storage
//! bucket or an Azure Blob Storage container, all on the same code path.
//!
//! Layout under the storage root or bucket prefix (one place, like distribution's `paths.go`):
//!
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>     a verified blob, never partial
//! uploads/<uuid>/state.json                   repository, offset, started, running hash state
//!                                             (object stores: multipart id, part ETags, tail name)
//! uploads/<uuid>/data                         directory: bytes received so far; object
//!                                             stores: the multipart upload, completed at the close
//! uploads/<uuid>/tail-<uuid>                  object stores: received bytes too few for a part yet
//! uploads/<uuid>/whole.json                   object stores: a monolithic upload in progress
//! uploads/<uuid>.whole                        directory: a monolithic upload in progress
//! ```
//!
//! Every path is built from parsed values (`Digest`, `UploadId`), never from request text,
//! so no request can name a path outside the root. This module knows nothing of HTTP or
//! of repositories' visibility rules: the service layer checks links in the metadata first.
//!
//! The two backends sit behind [`BlobStore`] and [`UploadStore`] as enums: the directory
//! backend is direct file I/O (temporary name, fsync, rename, fsync the directory), the fast
//! default; the object backend uses `object_store`'s multipart API so that a session can be
//! continued by any replica.

mod blob;
mod dir;
mod error;
mod file_append;
mod file_chunks;
mod object;
mod paths;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};

pub use blob::{BlobEntry, BlobReader, BlobStore};
pub use error::Error;
pub use object::{ObjectBackend, ObjectSettings};
pub use paths::{Keys, Layout};
pub use upload::{InvalidUploadId, SessionOf, UploadId, UploadState, UploadStore};

use crate::config::{AzureConfig, GcsConfig, S3Config, StorageLocation};

/// How long a health check waits for storage to answer.
const REACHABLE_TIMEOUT: Duration = Duration::from_secs(5);

/// S3 and GCS refuse parts under 5 MiB, except the last. Azure takes blocks of any size,
/// but at most 50,000 per blob: chunks are staged up to the same minimum there too, so a
/// client sending many small chunks cannot run a blob out of blocks.
const MIN_PART_BYTES: usize = 5 << 20;

/// Bytes per part unless configured.
const DEFAULT_PART_BYTES: usize = 8 << 20;

/// One replica's view of the shared blob storage.
#[derive(Clone, Debug)]
pub struct Storage {
    blobs: BlobStore,
    uploads: UploadStore,
    target: Target,
}

#[derive(Clone)]
enum Target {
    Dir(Layout),
    Object {
        store: Arc<dyn ObjectBackend>,
        keys: Keys,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(layout) => f.debug_tuple("Dir").field(layout).finish(),
            Self::Object { store, keys } => f
                .debug_struct("Object")
                .field("store", &store.to_string())
                .field("keys", keys)
                .finish(),
        }
    }
}

impl Storage {
    /// Storage in the directory `root`: creates the layout's directories and proves the
    /// root writable, readable and deletable with a synced probe file.
    ///
    /// # Errors
    /// I/O failures.
    pub fn directory(root: impl Into<PathBuf>) -> Result<Self> {
        let layout = Layout::new(root);
        dir::prepare(&layout)?;
        let blobs = dir::DirBlobs::new(layout.clone());
        Ok(Self {
            blobs: BlobStore::dir(blobs.clone()),
            uploads: UploadStore::dir(dir::DirUploads::new(blobs)),
            target: Target::Dir(layout),
        })
    }

    /// Storage in an object store, under `prefix` (none: the bucket's root). Nothing is
    /// checked: see [`Storage::check`].
    pub fn object_store(
        store: Arc<dyn ObjectBackend>,
        prefix: Option<&Key>,
        settings: ObjectSettings,
    ) -> Self {
        let keys = Keys::new(prefix);
        let blobs = object::ObjectBlobs::new(store.clone(), keys.clone());
        Self {
            blobs: BlobStore::object(blobs.clone()),
            uploads: UploadStore::object(object::ObjectUploads::new(blobs, settings)),
            target: Target::Object { store, keys },
        }
    }

    /// Opens the storage a configuration names and checks that this replica can write,
    /// read and delete there.
    ///
    /// # Errors
    /// A configuration the backend refuses, credentials that cannot be read, or a failed
    /// check.
    pub async fn open(location: &StorageLocation) -> Result<Self> {
        let storage = match location {
            StorageLocation::Directory(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || Self::directory(root))
                    .await
                    .map_err(|e| Error::Io(std::io::Error::other(e)))??
            }
            StorageLocation::S3 {
                bucket,
                prefix,
                options,
            } => {
                let store = s3_store(bucket, options)?;
                Self::open_object(Arc::new(store), prefix, options.part_size_bytes).await?
            }
            StorageLocation::Gcs {
                bucket,
                prefix,
                options,
            } => {
                let store = gcs_store(bucket, options)?;
                Self::open_object(Arc::new(store), prefix, options.part_size_bytes).await?
            }
            StorageLocation::Azure {
                container,
                prefix,
                options,
            } => {
                let store = azure_store(container, options)?;
                Self::open_object(Arc::new(store), prefix, options.part_size_bytes).await?
            }
        };
        Ok(storage)
    }

    /// An object store under the key prefix `prefix` (empty: the root), checked.
    async fn open_object(
        store: Arc<dyn ObjectBackend>,
        prefix: &str,
        part_bytes: Option<usize>,
    ) -> Result<Self> {
        let prefix = (!prefix.is_empty())
            .then(|| Key::parse(prefix))
            .transpose()
            .map_err(|source| Error::ObjectStore(object_store::Error::InvalidPath { source }))?;
        let settings = ObjectSettings {
            part_bytes: part_bytes.unwrap_or(DEFAULT_PART_BYTES),
            min_part_bytes: MIN_PART_BYTES,
            ..ObjectSettings::default()
        };
        let storage = Self::object_store(store, prefix.as_ref(), settings);
        storage.check().await?;
        Ok(storage)
    }

    /// Writes a probe object, reads it back and deletes it. (A directory is checked when
    /// it is opened.)
    ///
    /// # Errors
    /// The first step that failed, or [`Error::Inconsistent`] if other bytes came back.
    pub async fn check(&self) -> Result<()> {
        let Target::Object { store, keys } = &self.target else {
            return Ok(());
        };
        let key = keys.probe(&uuid::Uuid::new_v4());
        let written = Bytes::from(format!("berth storage probe {key}"));
        store.put(&key, PutPayload::from(written.clone())).await?;
        let read = store.get(&key).await?.bytes().await;
        let deleted = store.delete(&key).await;
        if read? != written {
            return Err(Error::Inconsistent(
                "a probe object read back other bytes than were written".into(),
            ));
        }
        deleted?;
        Ok(())
    }

    /// Whether storage answers (for health checks): the blob directory exists, or the
    /// object store answers a metadata request within a few seconds.
    pub async fn reachable(&self) -> bool {
        match &self.target {
            Target::Dir(layout) => tokio::fs::metadata(layout.blobs())
                .await
                .map(|m| m.is_dir())
                .unwrap_or(false),
            Target::Object { store, keys } => {
                let key = keys.blobs();
                let asked = tokio::time::timeout(REACHABLE_TIMEOUT, store.head(&key));
                match asked.await {
                    Ok(Ok(_)) => true,
                    Ok(Err(object_store::Error::NotFound { .. })) => true,
                    Ok(Err(_)) | Err(_) => false,
                }
            }
        }
    }

    /// The blobs.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The upload sessions.
    pub fn uploads(&self) -> &UploadStore {
        &self.uploads
    }
}

/// Result with the storage [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An S3 client for `bucket`: the `AWS_...` variables first (`AmazonS3Builder::from_env`),
/// then what the configuration sets.
///
/// # Errors
/// A secret file that cannot be read, or options the builder refuses.
pub fn s3_store(bucket: &str, options: &S3Config) -> Result<object_store::aws::AmazonS3> {
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(v) = &options.region {
        builder = builder.with_region(v);
    }
    if let Some(v) = &options.endpoint {
        builder = builder.with_endpoint(v);
    }
    if let Some(v) = options.virtual_hosted_style {
        builder = builder.with_virtual_hosted_style_request(v);
    }
    if let Some(v) = options.allow_http {
        builder = builder.with_allow_http(v);
    }
    if let Some(v) = &options.access_key_id {
        builder = builder.with_access_key_id(v);
    }
    if let Some(path) = &options.secret_access_key_file {
        builder = builder.with_secret_access_key(read_secret(path)?);
    }
    if let Some(path) = &options.session_token_file {
        builder = builder.with_token(read_secret(path)?);
    }
    if let Some(retry) = retry_config(options.max_retries, options.retry_timeout_ms) {
        builder = builder.with_retry(retry);
    }
    Ok(builder.build()?)
}

/// A Google Cloud Storage client for `bucket`: the `GOOGLE_...` variables first
/// (`GoogleCloudStorageBuilder::from_env`), then what the configuration sets.
///
/// # Errors
/// Options the builder refuses, e.g. a service account file that cannot be read or parsed.
pub fn gcs_store(
    bucket: &str,
    options: &GcsConfig,
) -> Result<object_store::gcp::GoogleCloudStorage> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    use object_store::ClientConfigKey;

    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    if let Some(path) = &options.service_account_path {
        builder = builder.with_service_account_path(path.to_string_lossy());
    }
    if let Some(path) = &options.application_credentials_path {
        builder = builder.with_application_credentials(path.to_string_lossy());
    }
    if let Some(url) = &options.base_url {
        builder = builder.with_base_url(url);
    }
    if let Some(v) = options.allow_http {
        builder = builder.with_config(
            GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
            v.to_string(),
        );
    }
    if let Some(retry) = retry_config(options.max_retries, options.retry_timeout_ms) {
        builder = builder.with_retry(retry);
    }
    Ok(builder.build()?)
}

/// An Azure Blob Storage client for `container`: the `AZURE_...` variables first
/// (`MicrosoftAzureBuilder::from_env`), then what the configuration sets.
///
/// # Errors
/// An access key file that cannot be read, or options the builder refuses (no account,
/// a key that is not base64).
pub fn azure_store(
    container: &str,
    options: &AzureConfig,
) -> Result<object_store::azure::MicrosoftAzure> {
    let mut builder =
        object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(container);
    if let Some(v) = &options.account {
        builder = builder.with_account(v);
    }
    if let Some(path) = &options.access_key_file {
        builder = builder.with_access_key(read_secret(path)?);
    }
    if let Some(v) = &options.endpoint {
        builder = builder.with_endpoint(v.clone());
    }
    if let Some(v) = options.use_emulator {
        builder = builder.with_use_emulator(v);
    }
    if let Some(v) = options.allow_http {
        builder = builder.with_allow_http(v);
    }
    if let Some(retry) = retry_config(options.max_retries, options.retry_timeout_ms) {
        builder = builder.with_retry(retry);
    }
    Ok(builder.build()?)
}

/// object_store's retry settings with what the configuration changes, if anything.
fn retry_config(
    max_retries: Option<usize>,
    retry_timeout_ms: Option<u64>,
) -> Option<object_store::RetryConfig> {
    if max_retries.is_none() && retry_timeout_ms.is_none() {
        return None;
    }
    let mut retry = object_store::RetryConfig::default();
    if let Some(n) = max_retries {
        retry.max_retries = n;
    }
    if let Some(ms) = retry_timeout_ms {
        retry.retry_timeout = Duration::from_millis(ms);
    }
    Some(retry)
}

fn read_secret(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("reading {}: {e}", path.display()),
            ))
        })
}

#[cfg(test)]
mod emulator_wire;
#[cfg(test)]
mod emulators;
#[cfg(test)]
mod tests;
