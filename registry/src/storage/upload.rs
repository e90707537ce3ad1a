//! Resumable upload sessions kept in the storage directory, so any replica sharing it can
//! continue a session and a restart loses nothing: `uploads/<id>/data` holds the bytes,
//! `uploads/<id>/state.json` the repository, the offset and the running hash state.
//!
//! The data file is synced before the state that counts its bytes is written, so a state
//! never claims bytes that a crash could lose; bytes past the recorded offset (a request
//! that died half way) are cut off by the next append.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, DigestHasher, RepoName};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::blob::{sync_dir, BlobStore};
use super::error::{Error, Result};
use super::paths::Layout;

/// Bytes handed to the writer thread at a time: request bodies arrive in small frames,
/// and coalescing them keeps channel and syscall overhead off the hot path.
const WRITE_CHUNK_BYTES: usize = 512 * 1024;
/// Chunks in flight between the request task and the writer thread; with the chunk size
/// this bounds an upload's memory (about 4 MiB) whatever the blob's size.
const WRITE_QUEUE_CHUNKS: usize = 8;

/// An upload session id: a random UUID, so ids cannot be guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UploadId(Uuid);

impl UploadId {
    /// A new random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// Text that is not an upload id we could have handed out.
#[derive(Debug, thiserror::Error)]
#[error("not an upload id")]
pub struct InvalidUploadId;

impl FromStr for UploadId {
    type Err = InvalidUploadId;

    /// Only the hyphenated form we hand out is accepted.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidUploadId);
        }
        Uuid::parse_str(s).map(Self).map_err(|_| InvalidUploadId)
    }
}

/// What is known of an upload session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadState {
    /// The repository the session was started for.
    pub repo: RepoName,
    /// When it started (ms since the epoch).
    pub started_at_ms: i64,
    /// Bytes received and durable.
    pub offset: u64,
    /// Hex of `DigestHasher::save_state` over the first `offset` bytes.
    hash_state: String,
}

impl UploadState {
    fn hasher(&self) -> Result<DigestHasher> {
        let raw = hex::decode(&self.hash_state).map_err(|e| Error::CorruptState(e.to_string()))?;
        DigestHasher::restore_state(&raw).map_err(|e| Error::CorruptState(e.to_string()))
    }
}

/// Upload sessions under the storage root.
#[derive(Clone, Debug)]
pub struct UploadStore {
    layout: Layout,
    blobs: BlobStore,
    locks: Arc<Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>>,
}

impl UploadStore {
    /// Upload sessions under `layout`, committing finished blobs into `blobs`.
    pub fn new(layout: Layout, blobs: BlobStore) -> Self {
        Self {
            layout,
            blobs,
            locks: Arc::default(),
        }
    }

    /// Starts an empty session for `repo`.
    ///
    /// # Errors
    /// I/O failures.
    pub async fn start(&self, repo: &RepoName, now_ms: i64) -> Result<(UploadId, UploadState)> {
        let id = UploadId::random();
        let state = UploadState {
            repo: repo.clone(),
            started_at_ms: now_ms,
            offset: 0,
            hash_state: hex::encode(DigestHasher::new(Algorithm::Sha256).save_state()),
        };
        let dir = self.layout.upload_dir(&id);
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::File::create(self.layout.upload_data(&id)).await?;
        self.save_state(&id, &state).await?;
        Ok((id, state))
    }

    /// The session's state.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`] for an unknown id.
    pub async fn state(&self, id: &UploadId) -> Result<UploadState> {
        let raw = match tokio::fs::read(self.layout.upload_state(id)).await {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::UploadNotFound)
            }
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&raw).map_err(|e| Error::CorruptState(e.to_string()))
    }

    /// Appends a chunk. `start`, when the client sent `Content-Range`, must equal the
    /// session's offset. If the body breaks off, the bytes that did arrive are kept, so
    /// the client can ask for the offset and resume.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`], [`Error::ChunkOutOfOrder`], [`Error::Body`], I/O.
    pub async fn append<S>(&self, id: &UploadId, start: Option<u64>, body: S) -> Result<UploadState>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let lock = self.lock(id);
        let _held = lock.lock().await;
        let state = self.state(id).await?;
        self.append_locked(id, state, start, body).await
    }

    /// Finishes a session: appends `body` (the optional last chunk), checks the bytes
    /// against `expected`, and on success commits them durably as that blob and ends the
    /// session, returning the blob's size. On a mismatch the session is removed and nothing
    /// is stored.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`] and the errors of [`UploadStore::append`].
    pub async fn finish<S>(
        &self,
        id: &UploadId,
        expected: &Digest,
        start: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let lock = self.lock(id);
        let _held = lock.lock().await;
        let state = self.state(id).await?;
        let state = self.append_locked(id, state, start, body).await?;
        let data = self.layout.upload_data(id);
        let actual = if expected.algorithm() == Algorithm::Sha256 {
            state.hasher()?.finish()
        } else {
            hash_file(data.clone(), expected.algorithm()).await?
        };
        if &actual != expected {
            self.remove(id).await?;
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.blobs.commit_file(data, expected).await?;
        self.remove(id).await?;
        Ok(state.offset)
    }

    /// Stores a whole blob sent in one request (monolithic upload), verified against
    /// `expected`, without creating a resumable session. Returns its size.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`], [`Error::Body`], I/O.
    pub async fn put_whole<S>(&self, expected: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let uploads = self.layout.uploads();
        tokio::fs::create_dir_all(&uploads).await?;
        let temp = uploads.join(format!("{}.whole", UploadId::random()));
        tokio::fs::File::create(&temp).await?;
        let written = write_stream(
            temp.clone(),
            0,
            DigestHasher::new(expected.algorithm()),
            body,
        )
        .await;
        let (hasher, size, body_error) = match written {
            Ok(w) => w,
            Err(e) => {
                remove_quietly(&temp).await;
                return Err(e);
            }
        };
        if let Some(e) = body_error {
            remove_quietly(&temp).await;
            return Err(Error::Body(e));
        }
        let actual = hasher.finish();
        if &actual != expected {
            remove_quietly(&temp).await;
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        if let Err(e) = self.blobs.commit_file(temp.clone(), expected).await {
            remove_quietly(&temp).await;
            return Err(e);
        }
        Ok(size)
    }

    /// Ends a session and deletes its bytes.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`] for an unknown id, I/O.
    pub async fn cancel(&self, id: &UploadId) -> Result<()> {
        let lock = self.lock(id);
        let _held = lock.lock().await;
        self.state(id).await?;
        self.remove(id).await
    }

    async fn append_locked<S>(
        &self,
        id: &UploadId,
        mut state: UploadState,
        start: Option<u64>,
        body: S,
    ) -> Result<UploadState>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        if let Some(start) = start {
            if start != state.offset {
                return Err(Error::ChunkOutOfOrder {
                    start,
                    offset: state.offset,
                });
            }
        }
        let hasher = state.hasher()?;
        let data = self.layout.upload_data(id);
        let (hasher, offset, body_error) = write_stream(data, state.offset, hasher, body).await?;
        if offset != state.offset {
            state.offset = offset;
            state.hash_state = hex::encode(hasher.save_state());
            self.save_state(id, &state).await?;
        }
        match body_error {
            Some(e) => Err(Error::Body(e)),
            None => Ok(state),
        }
    }

    /// Writes the state next to the data, atomically (temporary file, then rename).
    async fn save_state(&self, id: &UploadId, state: &UploadState) -> Result<()> {
        let path = self.layout.upload_state(id);
        let temp = path.with_extension("json.tmp");
        let json = serde_json::to_vec(state).map_err(|e| Error::CorruptState(e.to_string()))?;
        tokio::fs::write(&temp, json).await?;
        tokio::fs::rename(&temp, &path).await?;
        Ok(())
    }

    async fn remove(&self, id: &UploadId) -> Result<()> {
        let dir = self.layout.upload_dir(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// The in-process lock of one session: two requests on the same session through this
    /// replica never interleave their bytes.
    fn lock(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(*id).or_default().clone()
    }
}

/// Streams `body` into the file at `path` from `offset`, hashing on a blocking thread so the
/// request task keeps reading while the other core hashes and writes. The file is synced
/// before returning. A failure of the body is returned beside what was written.
async fn write_stream<S>(
    path: PathBuf,
    offset: u64,
    mut hasher: DigestHasher,
    mut body: S,
) -> Result<(DigestHasher, u64, Option<std::io::Error>)>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE_CHUNKS);
    let writer = tokio::task::spawn_blocking(move || -> Result<(DigestHasher, u64)> {
        let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(offset)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut end = offset;
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            file.write_all(&chunk)?;
            end += chunk.len() as u64;
        }
        if end != offset {
            file.sync_data()?;
        }
        Ok((hasher, end))
    });

    let mut pending = BytesMut::new();
    let mut body_error = None;
    while let Some(frame) = body.next().await {
        match frame {
            Ok(bytes) if pending.is_empty() && bytes.len() >= WRITE_CHUNK_BYTES => {
                if tx.send(bytes).await.is_err() {
                    break;
                }
            }
            Ok(bytes) => {
                pending.extend_from_slice(&bytes);
                if pending.len() >= WRITE_CHUNK_BYTES
                    && tx.send(pending.split().freeze()).await.is_err()
                {
                    break;
                }
            }
            Err(e) => {
                body_error = Some(e);
                break;
            }
        }
    }
    if !pending.is_empty() {
        // A send error means the writer failed; its error is reported below.
        let _ = tx.send(pending.freeze()).await;
    }
    drop(tx);
    let (hasher, end) = writer
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    Ok((hasher, end, body_error))
}

/// Hashes a whole file with `algorithm` (the rare upload finished with a digest other than
/// the running sha256).
async fn hash_file(path: PathBuf, algorithm: Algorithm) -> Result<Digest> {
    tokio::task::spawn_blocking(move || -> Result<Digest> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = DigestHasher::new(algorithm);
        let mut buf = vec![0u8; WRITE_CHUNK_BYTES];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::debug!(path = %path.display(), error = %e, "could not remove a temporary upload file");
    }
}

/// Makes the uploads directory exist and be durable (called once at start).
///
/// # Errors
/// I/O failures.
pub(crate) fn prepare(layout: &Layout) -> Result<()> {
    std::fs::create_dir_all(layout.uploads())?;
    std::fs::create_dir_all(layout.root().join("blobs"))?;
    sync_dir(layout.root())
}
