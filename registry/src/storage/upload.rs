//! Resumable upload sessions kept in shared storage, so any replica sharing it can continue
//! a session and a restart loses nothing: the session's state (`uploads/<id>.json` in a
//! directory, `uploads/<id>/state.json` in a bucket) holds the repository, the offset, the
//! running hash state and (on an object store) the multipart upload's id and parts; the
//! bytes sit beside it (see the `dir` and `object` backends).
//!
//! This type owns what both backends share: the session lock of this process and the check
//! that a chunk starts where the session's bytes end.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, DigestHasher, RepoName};
use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::dir::DirUploads;
use super::error::{Error, Result};
use super::object::{ObjectParts, ObjectUploads};

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

/// Whose a session is: a request continues it only for the repository and the user
/// (when access control is on) that started it.
#[derive(Clone, Copy, Debug)]
pub struct SessionOf<'a> {
    /// The repository it was started for.
    pub repo: &'a RepoName,
    /// The user who started it, if access control knew one.
    pub owner: Option<&'a str>,
}

impl SessionOf<'_> {
    /// Whether `state` is this one's session.
    pub fn matches(&self, state: &UploadState) -> bool {
        &state.repo == self.repo && state.owner.as_deref() == self.owner
    }
}

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
    /// The user who started it (`None`: anonymous, or access control off); only they may
    /// continue it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Bytes received and durable.
    pub offset: u64,
    /// Hex of `DigestHasher::save_state` over the first `offset` bytes.
    hash_state: String,
    /// Where the bytes are on an object store; absent on a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) object: Option<ObjectParts>,
}

impl UploadState {
    /// An empty session for `repo`.
    pub(super) fn new(repo: RepoName, owner: Option<String>, now_ms: i64) -> Self {
        Self {
            repo,
            owner,
            started_at_ms: now_ms,
            offset: 0,
            hash_state: hex::encode(DigestHasher::new(Algorithm::Sha256).save_state()),
            object: None,
        }
    }

    /// The running sha256 over the first `offset` bytes.
    pub(super) fn hasher(&self) -> Result<DigestHasher> {
        let raw = hex::decode(&self.hash_state).map_err(|e| Error::CorruptState(e.to_string()))?;
        DigestHasher::restore_state(&raw).map_err(|e| Error::CorruptState(e.to_string()))
    }

    /// Records the running hash after more bytes.
    pub(super) fn set_hasher(&mut self, hasher: &DigestHasher) {
        self.hash_state = hex::encode(hasher.save_state());
    }

    pub(super) fn from_json(raw: &[u8]) -> Result<Self> {
        serde_json::from_slice(raw).map_err(|e| Error::CorruptState(e.to_string()))
    }

    pub(super) fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::CorruptState(e.to_string()))
    }
}

/// Upload sessions in the configured storage.
#[derive(Clone, Debug)]
pub struct UploadStore {
    backend: Backend,
    locks: Arc<Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>>,
}

#[derive(Clone, Debug)]
enum Backend {
    Dir(DirUploads),
    Object(ObjectUploads),
}

impl UploadStore {
    pub(super) fn dir(uploads: DirUploads) -> Self {
        Self::with(Backend::Dir(uploads))
    }

    pub(super) fn object(uploads: ObjectUploads) -> Self {
        Self::with(Backend::Object(uploads))
    }

    fn with(backend: Backend) -> Self {
        Self {
            backend,
            locks: Arc::default(),
        }
    }

    /// Starts an empty session for `repo`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn start(&self, repo: &RepoName, now_ms: i64) -> Result<(UploadId, UploadState)> {
        self.start_owned(repo, None, now_ms).await
    }

    /// Starts an empty session for `repo` that only `owner` may continue.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn start_owned(
        &self,
        repo: &RepoName,
        owner: Option<String>,
        now_ms: i64,
    ) -> Result<(UploadId, UploadState)> {
        match &self.backend {
            Backend::Dir(u) => u.start(repo, owner, now_ms).await,
            Backend::Object(u) => u.start(repo, owner, now_ms).await,
        }
    }

    /// The session's state.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`] for an unknown id.
    pub async fn state(&self, id: &UploadId) -> Result<UploadState> {
        match &self.backend {
            Backend::Dir(u) => u.state(id).await,
            Backend::Object(u) => u.state(id).await,
        }
    }

    /// Appends a chunk. `start`, when the client sent `Content-Range`, must equal the
    /// session's offset. If the body breaks off, the bytes that did arrive are kept, so
    /// the client can ask for the offset and resume.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`], [`Error::ChunkOutOfOrder`], [`Error::Body`], storage.
    pub async fn append<S>(&self, id: &UploadId, start: Option<u64>, body: S) -> Result<UploadState>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        self.append_as(id, None, start, body).await
    }

    /// [`Self::append`], for the session only if it is `whose`: otherwise
    /// [`Error::UploadNotFound`], as for an id that never existed. The state is read once,
    /// under the session's lock.
    ///
    /// # Errors
    /// As [`Self::append`].
    pub async fn append_as<S>(
        &self,
        id: &UploadId,
        whose: Option<SessionOf<'_>>,
        start: Option<u64>,
        body: S,
    ) -> Result<UploadState>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let lock = self.lock(id);
        let _held = lock.lock().await;
        let state = self.state_at(id, whose, start).await?;
        match &self.backend {
            Backend::Dir(u) => u.append(id, state, body).await,
            Backend::Object(u) => u.append(id, state, body).await,
        }
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
        self.finish_as(id, None, expected, start, body).await
    }

    /// [`Self::finish`], for the session only if it is `whose` (see [`Self::append_as`]).
    ///
    /// # Errors
    /// As [`Self::finish`].
    pub async fn finish_as<S>(
        &self,
        id: &UploadId,
        whose: Option<SessionOf<'_>>,
        expected: &Digest,
        start: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let lock = self.lock(id);
        let _held = lock.lock().await;
        let state = self.state_at(id, whose, start).await?;
        let result = match &self.backend {
            Backend::Dir(u) => u.finish(id, state, expected, body).await,
            Backend::Object(u) => u.finish(id, state, expected, body).await,
        };
        if matches!(result, Ok(_) | Err(Error::DigestMismatch { .. })) {
            self.forget(id);
        }
        result
    }

    /// Stores a whole blob sent in one request (monolithic upload), verified against
    /// `expected`, without creating a resumable session. Returns its size.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`], [`Error::Body`], storage failures.
    pub async fn put_whole<S>(&self, expected: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        match &self.backend {
            Backend::Dir(u) => u.put_whole(expected, body).await,
            Backend::Object(u) => u.put_whole(expected, body).await,
        }
    }

    /// Ends a session and deletes its bytes.
    ///
    /// # Errors
    /// [`Error::UploadNotFound`] for an unknown id, storage failures.
    pub async fn cancel(&self, id: &UploadId) -> Result<()> {
        let lock = self.lock(id);
        let _held = lock.lock().await;
        let state = self.state(id).await?;
        match &self.backend {
            Backend::Dir(u) => u.remove(id).await?,
            Backend::Object(u) => u.remove(id, &state).await?,
        }
        self.forget(id);
        Ok(())
    }

    /// Removes the sessions, and the monolithic uploads in progress, started before
    /// `cutoff_ms` (abandoned: garbage collection); on S3 their multipart uploads are aborted.
    /// With `dry_run`, only counts them. Returns how many there were.
    ///
    /// # Errors
    /// Storage failures while listing; a session that cannot be removed is logged and skipped.
    pub async fn remove_abandoned(&self, cutoff_ms: i64, dry_run: bool) -> Result<u64> {
        match &self.backend {
            Backend::Dir(u) => u.remove_abandoned(cutoff_ms, dry_run).await,
            Backend::Object(u) => u.remove_abandoned(cutoff_ms, dry_run).await,
        }
    }

    /// The session's state, if it is `whose` and a chunk starting at `start` continues it.
    async fn state_at(
        &self,
        id: &UploadId,
        whose: Option<SessionOf<'_>>,
        start: Option<u64>,
    ) -> Result<UploadState> {
        let state = self.state(id).await?;
        if whose.is_some_and(|w| !w.matches(&state)) {
            return Err(Error::UploadNotFound);
        }
        match start {
            Some(start) if start != state.offset => Err(Error::ChunkOutOfOrder {
                start,
                offset: state.offset,
            }),
            _ => Ok(state),
        }
    }

    /// The in-process lock of one session: two requests on the same session through this
    /// replica never interleave their bytes.
    fn lock(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(*id).or_default().clone()
    }

    fn forget(&self, id: &UploadId) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}
