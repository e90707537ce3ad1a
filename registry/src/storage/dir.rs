//! The directory backend (local disk or an NFS mount shared by every replica), with direct
//! file I/O rather than object_store's `LocalFileSystem`: an upload appends to one file
//! (`file_append`), a pull reads it back in pooled chunks (`file_chunks`), and every commit
//! is write, fsync, rename, fsync the directory.
//!
//! `uploads/<id>.data` holds a session's bytes and `uploads/<id>.json` its state. The data
//! file is synced before the state that counts its bytes is written, so a state never claims
//! bytes that a crash could lose; bytes past the recorded offset (a request that died half
//! way) are cut off by the next append. The data file is made by the first append, and the
//! request that finishes a session records no state: the session ends with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_oci::{Algorithm, Digest, DigestHasher, RepoName};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use super::blob::BlobEntry;
use super::error::{Error, Result};
use super::file_append::{append_synced, hash_file, read_small, write_stream, BodyStart};
use super::paths::Layout;
use super::upload::{UploadId, UploadState};

/// Verified blobs in a directory.
#[derive(Clone, Debug)]
pub(super) struct DirBlobs {
    layout: Layout,
}

impl DirBlobs {
    pub(super) fn new(layout: Layout) -> Self {
        Self { layout }
    }

    pub(super) fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(super) async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.layout.blob(digest)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a blob's file for positioned reads.
    pub(super) async fn open(&self, digest: &Digest) -> Result<std::fs::File> {
        let path = self.layout.blob(digest);
        let opened = tokio::task::spawn_blocking(move || std::fs::File::open(path))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        match opened {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a fully written and synced file into place as `digest`, durably: the rename
    /// and the directory entry are synced before this returns. If the blob already exists
    /// the file is simply removed (same digest, same bytes).
    pub(super) async fn commit_file(&self, source: PathBuf, digest: &Digest) -> Result<()> {
        let target = self.layout.blob(digest);
        tokio::task::spawn_blocking(move || commit_blocking(&source, &target))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    pub(super) async fn delete(&self, digest: &Digest) -> Result<()> {
        match tokio::fs::remove_file(self.layout.blob(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Walks `blobs/<alg>/<ab>/<hex>` on a blocking thread; names that are not digests
    /// (a stray file) are skipped.
    pub(super) fn list(&self) -> BoxStream<'static, Result<BlobEntry>> {
        let root = self.layout.blobs();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BlobEntry>>(256);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = walk_blobs(&root, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

fn walk_blobs(root: &Path, tx: &tokio::sync::mpsc::Sender<Result<BlobEntry>>) -> Result<()> {
    let algorithms = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for alg in algorithms {
        let alg = alg?;
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        if !alg.file_type()?.is_dir() {
            continue;
        }
        for fan in std::fs::read_dir(alg.path())? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(fan.path())? {
                let file = file?;
                let name = file.file_name().to_string_lossy().into_owned();
                let Ok(digest) = Digest::parse(&format!("{alg_name}:{name}")) else {
                    tracing::debug!(path = %file.path().display(), "not a blob; skipped");
                    continue;
                };
                let meta = match file.metadata() {
                    Ok(meta) => meta,
                    // Deleted while we walked.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                let modified_ms = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .and_then(|d| i64::try_from(d.as_millis()).ok());
                let entry = BlobEntry {
                    digest,
                    size: meta.len(),
                    modified_ms,
                };
                if tx.blocking_send(Ok(entry)).is_err() {
                    return Ok(()); // the reader went away
                }
            }
        }
    }
    Ok(())
}

fn commit_blocking(source: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        std::fs::remove_file(source)?;
        return Ok(());
    }
    let parent = target
        .parent()
        .ok_or_else(|| Error::Io(std::io::Error::other("blob path has no parent")))?;
    // The fan-out directories exist from the start; only a damaged tree lacks one.
    let created = match std::fs::rename(source, target) {
        Ok(()) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !parent.is_dir() => {
            std::fs::create_dir_all(parent)?;
            std::fs::rename(source, target)?;
            true
        }
        Err(e) => return Err(e.into()),
    };
    sync_dir(parent)?;
    if created {
        // The new fan-out directory itself must be durable in its parent.
        if let Some(grand) = parent.parent() {
            sync_dir(grand)?;
        }
    }
    Ok(())
}

/// Creates `dir` (and parents); returns whether it had to be created.
fn ensure_dir(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    Ok(true)
}

/// fsync a directory so that entries created or renamed in it survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Spare state files kept at most by one process.
const MAX_SPARE_STATES: usize = 256;

/// Upload sessions in a directory.
#[derive(Clone, Debug)]
pub(super) struct DirUploads {
    layout: Layout,
    blobs: DirBlobs,
    spares: Arc<SpareStates>,
}

impl DirUploads {
    pub(super) fn new(blobs: DirBlobs) -> Self {
        let layout = blobs.layout().clone();
        Self {
            spares: Arc::new(SpareStates::found_in(&layout.spare_states())),
            layout,
            blobs,
        }
    }

    pub(super) async fn start(
        &self,
        repo: &RepoName,
        owner: Option<String>,
        now_ms: i64,
    ) -> Result<(UploadId, UploadState)> {
        let id = UploadId::random();
        let state = UploadState::new(repo.clone(), owner, now_ms);
        let path = self.layout.upload_state(&id);
        let json = state.to_json()?;
        let spares = Arc::clone(&self.spares);
        // Written in place, not through a temporary name: nobody knows the id until this
        // request answers, and a state cut short by a crash belongs to a session no client
        // was told about.
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = match spares.take_as(&path)? {
                Some(reused) => reused,
                None => std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?,
            };
            file.write_all(&json)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        Ok((id, state))
    }

    pub(super) async fn state(&self, id: &UploadId) -> Result<UploadState> {
        let raw = match tokio::fs::read(self.layout.upload_state(id)).await {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::UploadNotFound)
            }
            Err(e) => return Err(e.into()),
        };
        UploadState::from_json(&raw)
    }

    /// Appends `body` at the state's offset (the caller holds the session's lock and checked
    /// the chunk's start).
    pub(super) async fn append<S>(
        &self,
        id: &UploadId,
        mut state: UploadState,
        body: S,
    ) -> Result<UploadState>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let hasher = state.hasher()?;
        let data = self.layout.upload_data(id);
        let (hasher, offset, body_error) = write_stream(data, state.offset, hasher, body).await?;
        if offset != state.offset {
            state.offset = offset;
            state.set_hasher(&hasher);
            self.save_state(id, &state).await?;
        }
        match body_error {
            Some(e) => Err(Error::Body(e)),
            None => Ok(state),
        }
    }

    /// Appends the last chunk, verifies, commits and ends the session (the caller holds
    /// the session's lock).
    pub(super) async fn finish<S>(
        &self,
        id: &UploadId,
        state: UploadState,
        expected: &Digest,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let data = self.layout.upload_data(id);
        let hasher = state.hasher()?;
        let body = match read_small(body).await {
            BodyStart::Whole(bytes) if expected.algorithm() == Algorithm::Sha256 => {
                return self.finish_small(id, state, hasher, expected, bytes).await;
            }
            other => other.into_stream(),
        };
        let (hasher, offset, body_error) =
            write_stream(data.clone(), state.offset, hasher, body).await?;
        let mut state = state;
        if let Some(e) = body_error {
            // Keep what arrived, so that the client can resume from there.
            if offset != state.offset {
                state.offset = offset;
                state.set_hasher(&hasher);
                self.save_state(id, &state).await?;
            }
            return Err(Error::Body(e));
        }
        state.offset = offset;
        state.set_hasher(&hasher);
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

    /// [`Self::finish`] for a last chunk already in memory, in one trip to the blocking
    /// pool: append, sync, verify, commit, end the session. A small push is mostly file
    /// system calls; each hand-off between threads cost about as much as one of them.
    async fn finish_small(
        &self,
        id: &UploadId,
        state: UploadState,
        mut hasher: DigestHasher,
        expected: &Digest,
        bytes: Bytes,
    ) -> Result<u64> {
        let data = self.layout.upload_data(id);
        let state_path = self.layout.upload_state(id);
        let target = self.blobs.layout().blob(expected);
        let spares = Arc::clone(&self.spares);
        let wanted = expected.clone();
        let offset = state.offset;
        let size = offset + bytes.len() as u64;
        let outcome = tokio::task::spawn_blocking(move || -> Result<Option<Digest>> {
            hasher.update(&bytes);
            let actual = hasher.finish();
            if actual != wanted {
                return Ok(Some(actual));
            }
            if target.exists() {
                // Stored already (same digest, same bytes): nothing to write.
                if offset > 0 {
                    std::fs::remove_file(&data)?;
                }
            } else {
                append_synced(&data, offset, &bytes)?;
                commit_blocking(&data, &target)?;
            }
            spares.keep_or_remove(&state_path)?;
            Ok(None)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        match outcome {
            None => Ok(size),
            Some(actual) => {
                self.remove(id).await?;
                Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                })
            }
        }
    }

    pub(super) async fn put_whole<S>(&self, expected: &Digest, body: S) -> Result<u64>
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

    /// Writes the state next to the data, atomically (temporary file, then rename).
    async fn save_state(&self, id: &UploadId, state: &UploadState) -> Result<()> {
        let path = self.layout.upload_state(id);
        let temp = path.with_extension("json.tmp");
        tokio::fs::write(&temp, state.to_json()?).await?;
        tokio::fs::rename(&temp, &path).await?;
        Ok(())
    }

    /// Sessions (`uploads/<id>.json` and `.data`, by their state's start, else the file's
    /// time), monolithic uploads in progress (`uploads/<id>.whole`, by modification time) and
    /// sessions of earlier versions (`uploads/<id>/`) older than `cutoff_ms` are removed
    /// (counted only, with `dry_run`). Leftovers of a crash (a data file without its state, a
    /// temporary state) are removed too, uncounted.
    pub(super) async fn remove_abandoned(&self, cutoff_ms: i64, dry_run: bool) -> Result<u64> {
        let mut entries = match tokio::fs::read_dir(self.layout.uploads()).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((id, kind)) = UploadFile::parse(&name) else {
                continue;
            };
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| {
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
                });
            let started_ms = match kind {
                UploadFile::State => self
                    .state(&id)
                    .await
                    .map_or(modified_ms, |state| state.started_at_ms),
                UploadFile::LegacyDir => {
                    let state = tokio::fs::read(entry.path().join("state.json")).await;
                    state
                        .ok()
                        .and_then(|raw| UploadState::from_json(&raw).ok())
                        .map_or(modified_ms, |state| state.started_at_ms)
                }
                UploadFile::Data if self.layout.upload_state(&id).exists() => continue,
                UploadFile::Whole | UploadFile::Data | UploadFile::TempState => modified_ms,
            };
            if started_ms >= cutoff_ms {
                continue;
            }
            let counted = !matches!(kind, UploadFile::Data | UploadFile::TempState);
            if dry_run {
                removed += u64::from(counted);
                continue;
            }
            let done = match kind {
                UploadFile::State => self.remove(&id).await,
                UploadFile::LegacyDir => tokio::fs::remove_dir_all(entry.path())
                    .await
                    .map_err(Error::from),
                UploadFile::Whole | UploadFile::Data | UploadFile::TempState => {
                    tokio::fs::remove_file(entry.path())
                        .await
                        .map_err(Error::from)
                }
            };
            match done {
                Ok(()) => removed += u64::from(counted),
                Err(e) => {
                    tracing::warn!(upload = %id, error = %e, "could not remove an abandoned upload");
                }
            }
        }
        Ok(removed)
    }

    /// Deletes the session's files (the state first: without it the session is gone); a
    /// session already gone is not an error.
    pub(super) async fn remove(&self, id: &UploadId) -> Result<()> {
        let state = self.layout.upload_state(id);
        let data = self.layout.upload_data(id);
        let spares = Arc::clone(&self.spares);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            spares.keep_or_remove(&state)?;
            match std::fs::remove_file(&data) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        Ok(())
    }
}

/// State files of ended sessions, renamed into `uploads/spare/` instead of deleted and
/// renamed back for a new session instead of created.
///
/// Why: without a journal, ext4 skips every inode deleted in the last seconds when it
/// allocates one, so at a thousand pushes a second one state file created and deleted per
/// push made allocation the largest cost of a small push (perf: 40% of the CPU in
/// `find_inode_bit`/`recently_deleted`). A rename allocates nothing. Replicas sharing the
/// directory may race for a spare: rename is atomic, the loser takes another or creates.
#[derive(Debug)]
struct SpareStates {
    dir: PathBuf,
    files: Mutex<Vec<PathBuf>>,
}

impl SpareStates {
    /// The pool, with the spares a previous run left in `dir`.
    fn found_in(dir: &Path) -> SpareStates {
        let files = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .take(MAX_SPARE_STATES)
                    .collect()
            })
            .unwrap_or_default();
        SpareStates {
            dir: dir.to_path_buf(),
            files: Mutex::new(files),
        }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renames a spare to `path` and opens it emptied, if one is left.
    fn take_as(&self, path: &Path) -> std::io::Result<Option<std::fs::File>> {
        loop {
            let Some(spare) = self.files().pop() else {
                return Ok(None);
            };
            match std::fs::rename(&spare, path) {
                Ok(()) => {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(path)?;
                    return Ok(Some(file));
                }
                // Taken by another replica, or swept: try the next.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the state file at `path`: kept as a spare while the pool has room, else removed.
    /// A state already gone is not an error.
    fn keep_or_remove(&self, path: &Path) -> std::io::Result<()> {
        let kept = {
            let files = self.files();
            files.len() < MAX_SPARE_STATES
        };
        let outcome = if kept {
            let spare = self.dir.join(format!("{}.json", UploadId::random()));
            std::fs::rename(path, &spare).map(|()| self.files().push(spare))
        } else {
            std::fs::remove_file(path)
        };
        match outcome {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// What a name in `uploads/` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UploadFile {
    /// `<id>.json`: a session's state.
    State,
    /// `<id>.data`: a session's bytes.
    Data,
    /// `<id>.json.tmp`: a state being replaced.
    TempState,
    /// `<id>.whole`: a monolithic upload in progress.
    Whole,
    /// `<id>`: a session directory of an earlier version.
    LegacyDir,
}

impl UploadFile {
    fn parse(name: &str) -> Option<(UploadId, UploadFile)> {
        let (stem, kind) = [
            (".json.tmp", UploadFile::TempState),
            (".json", UploadFile::State),
            (".data", UploadFile::Data),
            (".whole", UploadFile::Whole),
        ]
        .into_iter()
        .find_map(|(suffix, kind)| name.strip_suffix(suffix).map(|stem| (stem, kind)))
        .unwrap_or((name, UploadFile::LegacyDir));
        Some((stem.parse().ok()?, kind))
    }
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::debug!(path = %path.display(), error = %e, "could not remove a temporary upload file");
    }
}

/// Makes the blob and upload directories exist and be durable, then proves the root
/// writable, readable and deletable with a synced probe file (called once at start).
pub(super) fn prepare(layout: &Layout) -> Result<()> {
    std::fs::create_dir_all(layout.uploads())?;
    std::fs::create_dir_all(layout.spare_states())?;
    std::fs::create_dir_all(layout.blobs())?;
    sync_dir(layout.root())?;
    // The 256 sha256 fan-out directories up front: made on first use, each would cost a
    // push a mkdir and a second directory fsync.
    let sha256 = layout.blobs().join(Algorithm::Sha256.as_str());
    let mut made = false;
    for fan in 0..=255u8 {
        made |= ensure_dir(&sha256.join(format!("{fan:02x}")))?;
    }
    if made {
        sync_dir(&sha256)?;
        sync_dir(&layout.blobs())?;
    }
    let probe = layout
        .root()
        .join(format!(".berth-probe-{}", UploadId::random()));
    std::fs::write(&probe, b"berth storage probe")?;
    std::fs::File::open(&probe)?.sync_all()?;
    let read = std::fs::read(&probe)?;
    std::fs::remove_file(&probe)?;
    if read != b"berth storage probe" {
        return Err(Error::Inconsistent(
            "a probe file read back other bytes than were written".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::UploadFile;
    use crate::storage::Storage;

    #[tokio::test]
    async fn state_files_of_ended_sessions_are_reused_and_the_sessions_stay_ended() {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::directory(root.path()).unwrap();
        let spare_dir = root.path().join("uploads/spare");
        let spares = || std::fs::read_dir(&spare_dir).unwrap().count();
        let repo = berth_oci::RepoName::parse("team/app").unwrap();
        let other = berth_oci::RepoName::parse("team/other").unwrap();

        let (ended, _) = storage.uploads().start(&repo, 1).await.unwrap();
        storage.uploads().cancel(&ended).await.unwrap();
        assert_eq!(spares(), 1, "the state file was kept");

        let (fresh, _) = storage.uploads().start(&other, 2).await.unwrap();
        assert_eq!(spares(), 0, "and reused");
        let state = storage.uploads().state(&fresh).await.unwrap();
        assert_eq!(state.repo, other, "with the new session's state only");
        assert_eq!(state.offset, 0);
        assert!(storage.uploads().state(&ended).await.is_err());

        // A pool emptied behind its back (another replica took the spare) falls back to a
        // new file.
        storage.uploads().cancel(&fresh).await.unwrap();
        for spare in std::fs::read_dir(&spare_dir).unwrap() {
            std::fs::remove_file(spare.unwrap().path()).unwrap();
        }
        let (third, _) = storage.uploads().start(&repo, 3).await.unwrap();
        assert_eq!(storage.uploads().state(&third).await.unwrap().repo, repo);
    }

    #[tokio::test]
    async fn a_small_last_chunk_replaces_bytes_a_dead_request_left_past_the_offset() {
        use berth_oci::Digest;
        use bytes::Bytes;
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::directory(root.path()).unwrap();
        let repo = berth_oci::RepoName::parse("team/app").unwrap();
        let chunk = |b: &'static [u8]| futures::stream::iter([Ok(Bytes::from_static(b))]);

        let (id, _) = storage.uploads().start(&repo, 1).await.unwrap();
        storage
            .uploads()
            .append(&id, None, chunk(b"abc"))
            .await
            .unwrap();
        // A PATCH that wrote past the offset, then died before its state was saved.
        let data = root.path().join(format!("uploads/{id}.data"));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&data)
            .unwrap();
        std::io::Write::write_all(&mut file, b"XXXXXXXXX").unwrap();

        let digest = Digest::sha256_of(b"abcdef");
        let size = storage
            .uploads()
            .finish(&id, &digest, Some(3), chunk(b"def"))
            .await
            .unwrap();
        assert_eq!(size, 6);
        let stored = root.path().join(format!(
            "blobs/sha256/{}/{}",
            &digest.hex()[..2],
            digest.hex()
        ));
        assert_eq!(std::fs::read(stored).unwrap(), b"abcdef");
        assert!(!data.exists());

        // An empty blob through a session is an empty file.
        let (id, _) = storage.uploads().start(&repo, 2).await.unwrap();
        let empty = Digest::sha256_of(b"");
        let size = storage
            .uploads()
            .finish(&id, &empty, None, chunk(b""))
            .await
            .unwrap();
        assert_eq!(size, 0);
        assert_eq!(storage.blobs().stat(&empty).await.unwrap(), Some(0));
    }

    #[tokio::test]
    async fn a_session_is_continued_only_for_its_repository_and_owner() {
        use crate::storage::{Error, SessionOf};
        use berth_oci::Digest;
        use bytes::Bytes;
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::directory(root.path()).unwrap();
        let repo = berth_oci::RepoName::parse("team/app").unwrap();
        let other = berth_oci::RepoName::parse("team/other").unwrap();
        let chunk = || futures::stream::iter([Ok(Bytes::from_static(b"abc"))]);
        let (id, _) = storage
            .uploads()
            .start_owned(&repo, Some("ann".into()), 1)
            .await
            .unwrap();
        let digest = Digest::sha256_of(b"abc");
        for whose in [
            SessionOf {
                repo: &other,
                owner: Some("ann"),
            },
            SessionOf {
                repo: &repo,
                owner: Some("bob"),
            },
            SessionOf {
                repo: &repo,
                owner: None,
            },
        ] {
            let appended = storage
                .uploads()
                .append_as(&id, Some(whose), None, chunk())
                .await;
            assert!(matches!(appended, Err(Error::UploadNotFound)), "{whose:?}");
            let finished = storage
                .uploads()
                .finish_as(&id, Some(whose), &digest, None, chunk())
                .await;
            assert!(matches!(finished, Err(Error::UploadNotFound)), "{whose:?}");
        }
        assert_eq!(storage.uploads().state(&id).await.unwrap().offset, 0);
        let ann = SessionOf {
            repo: &repo,
            owner: Some("ann"),
        };
        storage
            .uploads()
            .finish_as(&id, Some(ann), &digest, None, chunk())
            .await
            .unwrap();
        assert_eq!(storage.blobs().stat(&digest).await.unwrap(), Some(3));
    }

    #[tokio::test]
    async fn sessions_of_earlier_versions_and_crash_leftovers_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::directory(root.path()).unwrap();
        let uploads = root.path().join("uploads");
        let legacy = uploads.join("0a3c2f55-6f5e-4f8e-9b1a-3c1f2e4d5a6b");
        std::fs::create_dir_all(&legacy).unwrap();
        std::fs::write(legacy.join("data"), b"bytes").unwrap();
        let orphan = uploads.join("1b3c2f55-6f5e-4f8e-9b1a-3c1f2e4d5a6b.data");
        std::fs::write(&orphan, b"bytes").unwrap();
        let stranger = uploads.join("README");
        std::fs::write(&stranger, b"not ours").unwrap();

        let future_cutoff = i64::MAX;
        let swept = storage.uploads().remove_abandoned(future_cutoff, false);
        assert_eq!(swept.await.unwrap(), 1, "the legacy session counts");
        assert!(!legacy.exists());
        assert!(!orphan.exists());
        assert!(stranger.exists(), "names that are not uploads stay");
    }

    #[test]
    fn names_in_uploads_are_told_apart() {
        let id = "0a3c2f55-6f5e-4f8e-9b1a-3c1f2e4d5a6b";
        let kind = |name: String| UploadFile::parse(&name).map(|(_, kind)| kind);
        assert_eq!(kind(format!("{id}.json")), Some(UploadFile::State));
        assert_eq!(kind(format!("{id}.json.tmp")), Some(UploadFile::TempState));
        assert_eq!(kind(format!("{id}.data")), Some(UploadFile::Data));
        assert_eq!(kind(format!("{id}.whole")), Some(UploadFile::Whole));
        assert_eq!(kind(id.to_owned()), Some(UploadFile::LegacyDir));
        assert_eq!(kind(format!("{id}.other")), None);
        assert_eq!(kind("notes.txt".to_owned()), None);
    }
}
