//! The object-store backend: S3 (and S3-compatible services), Google Cloud Storage and Azure
//! Blob Storage through `object_store`, one code path for all (any store that also
//! implements `MultipartStore` works: the tests run it on `InMemory` too). On Azure a part
//! is a block, the multipart id is empty and aborting is a no-op (uncommitted blocks expire).
//!
//! Blobs are objects at `blobs/<alg>/<ab>/<hex>`. Nothing is ever written there before its
//! digest is verified: a monolithic upload streams into a multipart upload at the blob's key
//! and completes it only after the bytes hashed to the digest (an incomplete multipart upload
//! is invisible); a chunked upload, whose digest is known only at its end, completes into
//! `uploads/<id>/data` and is then copied to its key.
//!
//! A chunked session lives in the bucket, so any replica (or a restarted one) continues it:
//! `uploads/<id>/state.json` holds the offset, the running sha256 state, the multipart
//! upload's id and the ETags of its parts, and names the staged tail object. S3 refuses
//! parts under 5 MiB except the last, so bytes that do not fill a part wait in a tail object
//! (`uploads/<id>/tail-<uuid>`, a new name for each write) and are read back in front of the
//! next chunk. Parts are written before the state that lists them, so a crash at any point
//! leaves the last saved state valid: a retried chunk overwrites the orphan parts at the same
//! indexes, and `complete_multipart` checks every part's ETag, so bytes of a concurrent
//! writer can never slip into a blob unnoticed.
//!
//! Memory per upload is bounded by `(parts_in_flight + 1) * part_bytes` whatever the size.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_oci::{Algorithm, Digest, DigestHasher, RepoName};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, MultipartId, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::blob::{BlobEntry, BlobReader};
use super::error::{Error, Result};
use super::paths::Keys;
use super::upload::{UploadId, UploadState};

/// An object store that also offers the low-level multipart API (S3, GCS, Azure, InMemory).
/// `object_store`'s `AmazonS3`, `GoogleCloudStorage` and `MicrosoftAzure` all are.
pub trait ObjectBackend: ObjectStore + MultipartStore {}

impl<T: ObjectStore + MultipartStore> ObjectBackend for T {}

/// How uploads are cut into parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSettings {
    /// Bytes gathered before a part is sent. Default 8 MiB.
    pub part_bytes: usize,
    /// The smallest part the store accepts other than the last (S3: 5 MiB). A chunk that
    /// leaves fewer bytes is staged in a tail object until the next one.
    pub min_part_bytes: usize,
    /// Parts of one upload sent concurrently. Default 2.
    pub parts_in_flight: usize,
    /// The largest object copied inside the store (S3's CopyObject stops at 5 GiB); larger
    /// chunked uploads are copied to their blob key by streaming them through this process.
    pub max_copy_bytes: u64,
}

impl Default for ObjectSettings {
    fn default() -> Self {
        Self {
            part_bytes: 8 << 20,
            min_part_bytes: 5 << 20,
            parts_in_flight: 2,
            max_copy_bytes: 5 << 30,
        }
    }
}

type Store = Arc<dyn ObjectBackend>;

/// Verified blobs in an object store.
#[derive(Clone)]
pub(super) struct ObjectBlobs {
    store: Store,
    keys: Keys,
}

impl std::fmt::Debug for ObjectBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlobs")
            .field("store", &self.store.to_string())
            .field("keys", &self.keys)
            .finish()
    }
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl ObjectBlobs {
    pub(super) fn new(store: Store, keys: Keys) -> Self {
        Self { store, keys }
    }

    pub(super) async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.stat_key(&self.keys.blob(digest)).await
    }

    async fn stat_key(&self, key: &Key) -> Result<Option<u64>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn open(&self, digest: &Digest, offset: u64, len: u64) -> Result<BlobReader> {
        let key = self.keys.blob(digest);
        if len == 0 {
            // A zero-length range cannot be asked for; the blob must still exist.
            return match self.stat_key(&key).await? {
                Some(_) => Ok(BlobReader::object(0, futures::stream::empty().boxed())),
                None => Err(Error::BlobNotFound(digest.clone())),
            };
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(offset..offset + len)),
            ..GetOptions::default()
        };
        match self.store.get_opts(&key, opts).await {
            Ok(got) => Ok(BlobReader::object(len, got.into_stream())),
            Err(e) if not_found(&e) => Err(Error::BlobNotFound(digest.clone())),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn delete(&self, digest: &Digest) -> Result<()> {
        match self.store.delete(&self.keys.blob(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Bulk deletes (S3 `DeleteObjects`, up to 1,000 keys a request).
    pub(super) async fn delete_many(&self, digests: &[Digest]) -> Result<()> {
        let keys: Vec<object_store::Result<Key>> =
            digests.iter().map(|d| Ok(self.keys.blob(d))).collect();
        let results: Vec<object_store::Result<Key>> = self
            .store
            .delete_stream(futures::stream::iter(keys).boxed())
            .collect()
            .await;
        for result in results {
            match result {
                Ok(_) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub(super) fn list(&self) -> BoxStream<'static, Result<BlobEntry>> {
        self.store
            .list(Some(&self.keys.blobs()))
            .map_err(Error::from)
            .try_filter_map(|meta| async move {
                let parts: Vec<_> = meta.location.parts().collect();
                let entry = match parts.as_slice() {
                    [.., alg, _, hex] => {
                        Digest::parse(&format!("{}:{}", alg.as_ref(), hex.as_ref())).ok()
                    }
                    _ => None,
                };
                Ok(entry.map(|digest| BlobEntry {
                    digest,
                    size: meta.size,
                    modified_ms: Some(meta.last_modified.timestamp_millis()),
                }))
            })
            .boxed()
    }

    /// Writes small verified bytes as a blob in one request.
    async fn put(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.keys.blob(digest), PutPayload::from(bytes))
            .await?;
        Ok(())
    }
}

/// Where a chunked session's bytes are in the object store (inside its `state.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ObjectParts {
    /// The multipart upload at `uploads/<id>/data`, created when the first part is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart_id: Option<MultipartId>,
    /// ETags of the parts sent, in order.
    #[serde(default)]
    parts: Vec<String>,
    /// Bytes in those parts; the tail holds the rest up to the offset.
    #[serde(default)]
    parts_bytes: u64,
    /// The object holding bytes `parts_bytes..offset`, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Uuid>,
    /// Every byte is in the parts and the session is being closed: `complete_multipart`
    /// may have run, so a retried close only completes (if needed) and copies.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    completing: bool,
}

/// A monolithic upload streaming into a multipart upload at its blob key
/// (`uploads/<id>/whole.json`, deleted when it ends), so garbage collection can abort it.
#[derive(Debug, Serialize, Deserialize)]
struct WholeUpload {
    started_at_ms: i64,
    digest: Digest,
    multipart_id: MultipartId,
}

/// Upload sessions in an object store.
#[derive(Clone)]
pub(super) struct ObjectUploads {
    store: Store,
    keys: Keys,
    settings: ObjectSettings,
    blobs: ObjectBlobs,
}

impl std::fmt::Debug for ObjectUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectUploads")
            .field("blobs", &self.blobs)
            .field("settings", &self.settings)
            .finish()
    }
}

/// What streaming a body into parts left behind.
struct Streamed {
    /// Bytes received but not in a part (fewer than `part_bytes`).
    pending: BytesMut,
    /// The running hash over every byte up to the new offset.
    hasher: DigestHasher,
    /// The body broke off; the bytes before the break were kept.
    body_error: Option<std::io::Error>,
}

impl ObjectUploads {
    pub(super) fn new(blobs: ObjectBlobs, settings: ObjectSettings) -> Self {
        Self {
            store: blobs.store.clone(),
            keys: blobs.keys.clone(),
            settings,
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
        let mut state = UploadState::new(repo.clone(), owner, now_ms);
        state.object = Some(ObjectParts::default());
        self.save_state(&id, &state).await?;
        Ok((id, state))
    }

    pub(super) async fn state(&self, id: &UploadId) -> Result<UploadState> {
        let got = match self.store.get(&self.keys.upload_state(id)).await {
            Ok(got) => got,
            Err(e) if not_found(&e) => return Err(Error::UploadNotFound),
            Err(e) => return Err(e.into()),
        };
        let state = UploadState::from_json(&got.bytes().await?)?;
        if state.object.is_none() {
            return Err(Error::CorruptState("no object parts in the state".into()));
        }
        Ok(state)
    }

    async fn save_state(&self, id: &UploadId, state: &UploadState) -> Result<()> {
        self.store
            .put(
                &self.keys.upload_state(id),
                PutPayload::from(state.to_json()?),
            )
            .await?;
        Ok(())
    }

    /// Appends `body` at the state's offset (the caller holds the session's lock and checked
    /// the chunk's start): full parts go up as they fill, the rest becomes a part if it is
    /// large enough or else the new tail, then the state is saved.
    pub(super) async fn append<S>(
        &self,
        id: &UploadId,
        mut state: UploadState,
        body: S,
    ) -> Result<UploadState>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        if parts_of(&state)?.completing {
            // A close began: every byte is counted, nothing more can be appended.
            return Err(Error::ChunkOutOfOrder {
                start: state.offset,
                offset: state.offset,
            });
        }
        let before = state.clone();
        let streamed = self.stream_parts(id, &mut state, body).await?;
        if state.offset != before.offset {
            self.keep_rest(id, &mut state, streamed.pending).await?;
            state.set_hasher(&streamed.hasher);
            self.save_state(id, &state).await?;
            self.drop_old_tail(id, &before, &state).await;
        }
        match streamed.body_error {
            Some(e) => Err(Error::Body(e)),
            None => Ok(state),
        }
    }

    /// Appends the last chunk, verifies the digest, stores the blob at its key and ends the
    /// session (the caller holds the session's lock).
    pub(super) async fn finish<S>(
        &self,
        id: &UploadId,
        mut state: UploadState,
        expected: &Digest,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        if parts_of(&state)?.completing {
            return self.finish_completing(id, state, expected, body).await;
        }
        let before = state.clone();
        let streamed = self.stream_parts(id, &mut state, body).await?;
        if let Some(e) = streamed.body_error {
            // Keep what arrived, as an append would, so the client can resume.
            if state.offset != before.offset {
                self.keep_rest(id, &mut state, streamed.pending).await?;
                state.set_hasher(&streamed.hasher);
                self.save_state(id, &state).await?;
                self.drop_old_tail(id, &before, &state).await;
            }
            return Err(Error::Body(e));
        }
        let size = state.offset;
        let running = streamed.hasher.clone().finish();
        if expected.algorithm() == Algorithm::Sha256 && &running != expected {
            return self.mismatch(id, &state, expected, running).await;
        }
        let parts = parts_of(&state)?.clone();
        if parts.multipart_id.is_none() {
            // Every byte is in memory (fewer than one part): verify and put it in place.
            let bytes = streamed.pending.freeze();
            let actual = if expected.algorithm() == Algorithm::Sha256 {
                running
            } else {
                let mut h = DigestHasher::new(expected.algorithm());
                h.update(&bytes);
                h.finish()
            };
            if &actual != expected {
                return self.mismatch(id, &state, expected, actual).await;
            }
            self.blobs.put(expected, bytes).await?;
            self.remove_after_commit(id, &state).await;
            return Ok(size);
        }
        if expected.algorithm() == Algorithm::Sha256 && self.blobs.stat(expected).await?.is_some() {
            // Verified, and storage has these bytes already: nothing to complete.
            self.remove(id, &state).await?;
            return Ok(size);
        }
        // Send the rest as the last part, and record that completion may begin.
        let mut sender = self.sender(id, &mut state).await?;
        if !streamed.pending.is_empty() {
            sender.send(streamed.pending.freeze()).await?;
        }
        let etags = sender.finish().await?;
        let p = parts_mut(&mut state)?;
        p.parts_bytes += etags.sent_bytes;
        p.parts.extend(etags.etags);
        p.tail = None;
        p.completing = true;
        state.set_hasher(&streamed.hasher);
        self.save_state(id, &state).await?;
        self.drop_old_tail(id, &before, &state).await;
        self.complete_and_copy(id, &state, expected).await
    }

    /// Closes a session whose parts are all sent: completes the multipart upload if an
    /// earlier attempt did not get that far, verifies, copies to the blob key.
    async fn finish_completing<S>(
        &self,
        id: &UploadId,
        state: UploadState,
        expected: &Digest,
        mut body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        while let Some(frame) = body.next().await {
            if !frame.map_err(Error::Body)?.is_empty() {
                // Every byte was already counted: more cannot be appended.
                return Err(Error::ChunkOutOfOrder {
                    start: state.offset,
                    offset: state.offset,
                });
            }
        }
        if expected.algorithm() == Algorithm::Sha256 {
            let running = state.hasher()?.finish();
            if &running != expected {
                return self.mismatch(id, &state, expected, running).await;
            }
        }
        self.complete_and_copy(id, &state, expected).await
    }

    async fn complete_and_copy(
        &self,
        id: &UploadId,
        state: &UploadState,
        expected: &Digest,
    ) -> Result<u64> {
        let parts = parts_of(state)?;
        let data = self.keys.upload_data(id);
        let multipart_id = parts
            .multipart_id
            .clone()
            .ok_or_else(|| Error::CorruptState("completing without a multipart upload".into()))?;
        let size = match self.blobs.stat_key(&data).await? {
            Some(size) => size,
            None => {
                let ids = parts
                    .parts
                    .iter()
                    .map(|etag| PartId {
                        content_id: etag.clone(),
                    })
                    .collect();
                self.store
                    .complete_multipart(&data, &multipart_id, ids)
                    .await?;
                self.blobs.stat_key(&data).await?.unwrap_or(0)
            }
        };
        if size != state.offset {
            return Err(Error::Inconsistent(format!(
                "completed upload holds {size} bytes, its state counts {}",
                state.offset
            )));
        }
        if expected.algorithm() != Algorithm::Sha256 {
            let actual = self.hash_object(&data, expected.algorithm()).await?;
            if &actual != expected {
                return self.mismatch(id, state, expected, actual).await;
            }
        }
        // The sha256 case was verified before any part of this close was sent.
        if self.blobs.stat(expected).await?.is_none() {
            let target = self.keys.blob(expected);
            if size <= self.settings.max_copy_bytes {
                self.store.copy(&data, &target).await?;
            } else {
                self.copy_streamed(&data, &target).await?;
            }
        }
        self.remove_after_commit(id, state).await;
        Ok(size)
    }

    /// Copies an object too large for the store's own copy through this process, as a
    /// multipart upload that becomes visible only when complete.
    async fn copy_streamed(&self, from: &Key, to: &Key) -> Result<()> {
        let multipart_id = self.store.create_multipart(to).await?;
        let result = async {
            let mut sender = PartSender::new(
                self.store.clone(),
                to.clone(),
                multipart_id.clone(),
                0,
                self.settings.parts_in_flight,
            );
            let mut chunker = Chunker::new(self.settings.part_bytes);
            let mut source = self.store.get(from).await?.into_stream();
            while let Some(bytes) = source.next().await {
                for part in chunker.push(bytes?) {
                    sender.send(part).await?;
                }
            }
            let rest = chunker.rest();
            if !rest.is_empty() {
                sender.send(rest.freeze()).await?;
            }
            let sent = sender.finish().await?;
            let ids = sent
                .etags
                .into_iter()
                .map(|content_id| PartId { content_id })
                .collect();
            self.store
                .complete_multipart(to, &multipart_id, ids)
                .await?;
            Ok::<_, Error>(())
        }
        .await;
        if result.is_err() {
            self.abort_quietly(to, &multipart_id).await;
        }
        result
    }

    async fn hash_object(&self, key: &Key, algorithm: Algorithm) -> Result<Digest> {
        let mut hasher = DigestHasher::new(algorithm);
        let mut stream = self.store.get(key).await?.into_stream();
        while let Some(bytes) = stream.next().await {
            hasher.update(&bytes?);
        }
        Ok(hasher.finish())
    }

    /// Ends a session whose bytes are not the expected digest.
    async fn mismatch<T>(
        &self,
        id: &UploadId,
        state: &UploadState,
        expected: &Digest,
        actual: Digest,
    ) -> Result<T> {
        self.remove(id, state).await?;
        Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        })
    }

    pub(super) async fn put_whole<S>(&self, expected: &Digest, mut body: S) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let exists = self.blobs.stat(expected).await?.is_some();
        let mut hasher = DigestHasher::new(expected.algorithm());
        let mut chunker = Chunker::new(self.settings.part_bytes);
        let mut size = 0u64;
        let mut upload: Option<(UploadId, MultipartId, PartSender)> = None;
        let result = async {
            while let Some(frame) = body.next().await {
                let frame = frame.map_err(Error::Body)?;
                hasher.update(&frame);
                size += frame.len() as u64;
                if exists {
                    continue; // only verify: storage has these bytes
                }
                for part in chunker.push(frame) {
                    if upload.is_none() {
                        upload = Some(self.start_whole(expected).await?);
                    }
                    if let Some((_, _, sender)) = upload.as_mut() {
                        sender.send(part).await?;
                    }
                }
            }
            let actual = hasher.finish();
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            if exists {
                return Ok(None);
            }
            let rest = chunker.rest().freeze();
            match upload.take() {
                None => {
                    self.blobs.put(expected, rest).await?;
                    Ok(None)
                }
                Some((whole_id, multipart_id, mut sender)) => {
                    if !rest.is_empty() {
                        sender.send(rest).await?;
                    }
                    let sent = sender.finish().await;
                    // From here on failures must still abort the multipart upload.
                    Ok(Some((whole_id, multipart_id, sent)))
                }
            }
        }
        .await;
        let target = self.keys.blob(expected);
        match result {
            Ok(None) => Ok(size),
            Ok(Some((whole_id, multipart_id, sent))) => {
                let completed = match sent {
                    Ok(sent) => {
                        let ids = sent
                            .etags
                            .into_iter()
                            .map(|content_id| PartId { content_id })
                            .collect();
                        self.store
                            .complete_multipart(&target, &multipart_id, ids)
                            .await
                            .map(|_| ())
                            .map_err(Error::from)
                    }
                    Err(e) => Err(e),
                };
                let completed = match completed {
                    Err(e) if self.blobs.stat(expected).await.ok().flatten() == Some(size) => {
                        // Another push of these bytes completed at the blob's key first
                        // (on Azure that drops this upload's blocks, so it cannot complete);
                        // the blob there was verified before it became visible.
                        tracing::debug!(digest = %expected, error = %e, "a concurrent push stored the blob first");
                        Ok(())
                    }
                    other => other,
                };
                if completed.is_err() {
                    self.abort_quietly(&target, &multipart_id).await;
                }
                self.delete_quietly(&self.keys.whole_state(&whole_id)).await;
                completed.map(|()| size)
            }
            Err(e) => {
                if let Some((whole_id, multipart_id, _)) = upload {
                    self.abort_quietly(&target, &multipart_id).await;
                    self.delete_quietly(&self.keys.whole_state(&whole_id)).await;
                }
                Err(e)
            }
        }
    }

    /// Opens a multipart upload at the blob's key for a monolithic upload, and records it.
    async fn start_whole(&self, digest: &Digest) -> Result<(UploadId, MultipartId, PartSender)> {
        let target = self.keys.blob(digest);
        let multipart_id = self.store.create_multipart(&target).await?;
        let whole_id = UploadId::random();
        let record = WholeUpload {
            started_at_ms: now_ms(),
            digest: digest.clone(),
            multipart_id: multipart_id.clone(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| Error::CorruptState(e.to_string()))?;
        if let Err(e) = self
            .store
            .put(&self.keys.whole_state(&whole_id), PutPayload::from(json))
            .await
        {
            self.abort_quietly(&target, &multipart_id).await;
            return Err(e.into());
        }
        let sender = PartSender::new(
            self.store.clone(),
            target,
            multipart_id.clone(),
            0,
            self.settings.parts_in_flight,
        );
        Ok((whole_id, multipart_id, sender))
    }

    /// Streams `body` after the staged tail: full parts are sent as they fill (the state's
    /// parts, offset and multipart id are updated; the caller saves it), the remainder is
    /// returned.
    async fn stream_parts<S>(
        &self,
        id: &UploadId,
        state: &mut UploadState,
        mut body: S,
    ) -> Result<Streamed>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let mut hasher = state.hasher()?;
        let mut chunker = Chunker::new(self.settings.part_bytes);
        let mut sender: Option<PartSender> = None;
        let mut tail_loaded = false;
        let mut received = 0u64;
        let mut body_error = None;
        while let Some(frame) = body.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            };
            if frame.is_empty() {
                continue;
            }
            if !tail_loaded {
                // Read the staged bytes only once there is something to put after them.
                if let Some(tail) = self.read_tail(id, state).await? {
                    chunker.push_prefix(tail);
                }
                tail_loaded = true;
            }
            hasher.update(&frame);
            received += frame.len() as u64;
            for part in chunker.push(frame) {
                if sender.is_none() {
                    sender = Some(self.sender(id, state).await?);
                }
                if let Some(sender) = sender.as_mut() {
                    sender.send(part).await?;
                }
            }
        }
        if let Some(sender) = sender {
            let sent = sender.finish().await?;
            let p = parts_mut(state)?;
            p.parts_bytes += sent.sent_bytes;
            p.parts.extend(sent.etags);
            p.tail = None;
        }
        if !tail_loaded {
            // Nothing arrived: what is pending is the staged tail (a close needs it).
            if let Some(tail) = self.read_tail(id, state).await? {
                chunker.push_prefix(tail);
            }
        }
        state.offset += received;
        let pending = chunker.rest();
        Ok(Streamed {
            pending,
            hasher,
            body_error,
        })
    }

    /// After a chunk: sends the remainder as a part if the store accepts a part that small,
    /// otherwise writes it as the new tail object.
    async fn keep_rest(
        &self,
        id: &UploadId,
        state: &mut UploadState,
        rest: BytesMut,
    ) -> Result<()> {
        if rest.len() >= self.settings.min_part_bytes {
            let mut sender = self.sender(id, state).await?;
            sender.send(rest.freeze()).await?;
            let sent = sender.finish().await?;
            let p = parts_mut(state)?;
            p.parts_bytes += sent.sent_bytes;
            p.parts.extend(sent.etags);
            p.tail = None;
        } else if !rest.is_empty() {
            let tail = Uuid::new_v4();
            self.store
                .put(
                    &self.keys.upload_tail(id, &tail),
                    PutPayload::from(rest.freeze()),
                )
                .await?;
            parts_mut(state)?.tail = Some(tail);
        } else {
            parts_mut(state)?.tail = None;
        }
        Ok(())
    }

    /// The staged bytes `parts_bytes..offset`, checked against the state.
    async fn read_tail(&self, id: &UploadId, state: &UploadState) -> Result<Option<Bytes>> {
        let parts = parts_of(state)?;
        let want = state.offset - parts.parts_bytes;
        let Some(tail) = parts.tail else {
            if want != 0 {
                return Err(Error::CorruptState(format!(
                    "{want} staged bytes but no tail object"
                )));
            }
            return Ok(None);
        };
        let bytes = self
            .store
            .get(&self.keys.upload_tail(id, &tail))
            .await?
            .bytes()
            .await?;
        if bytes.len() as u64 != want {
            return Err(Error::Inconsistent(format!(
                "tail object holds {} bytes, the state counts {want}",
                bytes.len()
            )));
        }
        Ok(Some(bytes))
    }

    /// A sender for the next parts of the session's multipart upload, creating the upload
    /// (and saving its id in the state at once, so it can always be found and aborted).
    async fn sender(&self, id: &UploadId, state: &mut UploadState) -> Result<PartSender> {
        let data = self.keys.upload_data(id);
        let parts = parts_of(state)?;
        let multipart_id = match &parts.multipart_id {
            Some(m) => m.clone(),
            None => {
                let m = self.store.create_multipart(&data).await?;
                // Save only the id: the rest of `state` may run ahead of what is stored.
                let mut saved = self.state(id).await?;
                parts_mut(&mut saved)?.multipart_id = Some(m.clone());
                self.save_state(id, &saved).await?;
                parts_mut(state)?.multipart_id = Some(m.clone());
                m
            }
        };
        let first = parts_of(state)?.parts.len();
        Ok(PartSender::new(
            self.store.clone(),
            data,
            multipart_id,
            first,
            self.settings.parts_in_flight,
        ))
    }

    async fn drop_old_tail(&self, id: &UploadId, before: &UploadState, after: &UploadState) {
        let old = before.object.as_ref().and_then(|p| p.tail);
        let new = after.object.as_ref().and_then(|p| p.tail);
        if let Some(old) = old {
            if Some(old) != new {
                self.delete_quietly(&self.keys.upload_tail(id, &old)).await;
            }
        }
    }

    /// Ends a session: aborts its multipart upload and deletes its objects, the state last.
    pub(super) async fn remove(&self, id: &UploadId, state: &UploadState) -> Result<()> {
        if let Some(parts) = &state.object {
            if let (Some(m), false) = (&parts.multipart_id, parts.completing) {
                self.abort_quietly(&self.keys.upload_data(id), m).await;
            }
        }
        let state_key = self.keys.upload_state(id);
        let others: Vec<Key> = self
            .store
            .list(Some(&self.keys.upload_dir(id)))
            .map_ok(|meta| meta.location)
            .try_filter(|key| std::future::ready(key != &state_key))
            .try_collect()
            .await?;
        if !others.is_empty() {
            let keys = futures::stream::iter(others.into_iter().map(Ok)).boxed();
            self.store
                .delete_stream(keys)
                .try_for_each(|_| std::future::ready(Ok(())))
                .await
                .or_else(|e| if not_found(&e) { Ok(()) } else { Err(e) })?;
        }
        match self.store.delete(&state_key).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the uploads under `uploads/` started before `cutoff_ms` (counted only, with
    /// `dry_run`): a session by its state (its multipart upload aborted), a monolithic upload
    /// by its `whole.json` (its multipart upload at the blob's key aborted), anything else by
    /// its objects' newest modification time.
    pub(super) async fn remove_abandoned(&self, cutoff_ms: i64, dry_run: bool) -> Result<u64> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.keys.uploads()))
            .await?;
        let mut removed = 0;
        for prefix in listed.common_prefixes {
            let Some(Ok(id)) = prefix.filename().map(str::parse::<UploadId>) else {
                continue;
            };
            match self.remove_if_abandoned(&id, cutoff_ms, dry_run).await {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(upload = %id, error = %e, "could not remove an abandoned upload");
                }
            }
        }
        Ok(removed)
    }

    async fn remove_if_abandoned(
        &self,
        id: &UploadId,
        cutoff_ms: i64,
        dry_run: bool,
    ) -> Result<bool> {
        match self.state(id).await {
            Ok(state) => {
                if state.started_at_ms >= cutoff_ms {
                    return Ok(false);
                }
                if !dry_run {
                    self.remove(id, &state).await?;
                }
                return Ok(true);
            }
            Err(Error::UploadNotFound) => {}
            Err(e) => return Err(e),
        }
        let whole_key = self.keys.whole_state(id);
        match self.store.get(&whole_key).await {
            Ok(got) => {
                let whole: WholeUpload = serde_json::from_slice(&got.bytes().await?)
                    .map_err(|e| Error::CorruptState(e.to_string()))?;
                if whole.started_at_ms >= cutoff_ms {
                    return Ok(false);
                }
                if !dry_run {
                    self.abort_quietly(&self.keys.blob(&whole.digest), &whole.multipart_id)
                        .await;
                    self.delete_quietly(&whole_key).await;
                }
                return Ok(true);
            }
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.keys.upload_dir(id)))
            .try_collect()
            .await?;
        let newest = objects
            .iter()
            .map(|m| m.last_modified.timestamp_millis())
            .max();
        match newest {
            Some(t) if t < cutoff_ms => {
                if !dry_run {
                    for meta in &objects {
                        self.delete_quietly(&meta.location).await;
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ends a session whose blob is stored: a failure to clean up only leaves garbage.
    async fn remove_after_commit(&self, id: &UploadId, state: &UploadState) {
        if let Err(e) = self.remove(id, state).await {
            tracing::warn!(upload = %id, error = %e, "blob stored, but the upload's objects could not all be removed");
        }
    }

    async fn abort_quietly(&self, key: &Key, multipart_id: &MultipartId) {
        if let Err(e) = self.store.abort_multipart(key, multipart_id).await {
            tracing::warn!(key = %key, error = %e, "could not abort a multipart upload");
        }
    }

    async fn delete_quietly(&self, key: &Key) {
        match self.store.delete(key).await {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => tracing::warn!(key = %key, error = %e, "could not delete an upload object"),
        }
    }
}

fn parts_of(state: &UploadState) -> Result<&ObjectParts> {
    state
        .object
        .as_ref()
        .ok_or_else(|| Error::CorruptState("no object parts in the state".into()))
}

fn parts_mut(state: &mut UploadState) -> Result<&mut ObjectParts> {
    state
        .object
        .as_mut()
        .ok_or_else(|| Error::CorruptState("no object parts in the state".into()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Cuts a byte stream into parts of exactly `part_bytes`, each in its own allocation (so a
/// part sent and dropped frees its memory), keeping the remainder.
struct Chunker {
    part_bytes: usize,
    buf: BytesMut,
}

impl Chunker {
    fn new(part_bytes: usize) -> Self {
        Self {
            part_bytes,
            buf: BytesMut::new(),
        }
    }

    /// Bytes that come before everything pushed (the staged tail; shorter than a part).
    fn push_prefix(&mut self, bytes: Bytes) {
        let mut buf = BytesMut::with_capacity(self.part_bytes.max(bytes.len()));
        buf.extend_from_slice(&bytes);
        buf.extend_from_slice(&self.buf);
        self.buf = buf;
    }

    /// Adds bytes; returns the parts they completed.
    fn push(&mut self, mut bytes: Bytes) -> Vec<Bytes> {
        let mut full = Vec::new();
        while !bytes.is_empty() {
            if self.buf.capacity() == 0 {
                self.buf.reserve(self.part_bytes);
            }
            let room = self.part_bytes.saturating_sub(self.buf.len());
            let take = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes.split_to(take));
            if self.buf.len() >= self.part_bytes {
                let part = std::mem::take(&mut self.buf);
                full.push(part.freeze());
            }
        }
        full
    }

    /// What did not fill a part.
    fn rest(self) -> BytesMut {
        self.buf
    }
}

/// What a [`PartSender`] sent.
struct Sent {
    etags: Vec<String>,
    sent_bytes: u64,
}

/// Sends the parts of one multipart upload, a bounded number at a time, from index `first`.
struct PartSender {
    store: Store,
    key: Key,
    multipart_id: MultipartId,
    first: usize,
    next: usize,
    limit: usize,
    etags: Vec<Option<String>>,
    sent_bytes: u64,
    in_flight: JoinSet<Result<(usize, String)>>,
}

impl PartSender {
    fn new(store: Store, key: Key, multipart_id: MultipartId, first: usize, limit: usize) -> Self {
        Self {
            store,
            key,
            multipart_id,
            first,
            next: first,
            limit: limit.max(1),
            etags: Vec::new(),
            sent_bytes: 0,
            in_flight: JoinSet::new(),
        }
    }

    async fn send(&mut self, part: Bytes) -> Result<()> {
        while self.in_flight.len() >= self.limit {
            self.reap().await?;
        }
        let idx = self.next;
        self.next += 1;
        self.sent_bytes += part.len() as u64;
        self.etags.push(None);
        let store = self.store.clone();
        let key = self.key.clone();
        let multipart_id = self.multipart_id.clone();
        self.in_flight.spawn(async move {
            let part = store
                .put_part(&key, &multipart_id, idx, PutPayload::from(part))
                .await?;
            Ok((idx, part.content_id))
        });
        Ok(())
    }

    async fn reap(&mut self) -> Result<()> {
        if let Some(joined) = self.in_flight.join_next().await {
            let (idx, etag) =
                joined.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))??;
            self.etags[idx - self.first] = Some(etag);
        }
        Ok(())
    }

    /// Waits for every part; on an error the others are cancelled (dropping the set).
    async fn finish(mut self) -> Result<Sent> {
        while !self.in_flight.is_empty() {
            self.reap().await?;
        }
        let etags = self
            .etags
            .into_iter()
            .map(|e| e.ok_or_else(|| Error::Inconsistent("a part was not acknowledged".into())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Sent {
            etags,
            sent_bytes: self.sent_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Chunker;
    use bytes::Bytes;

    #[test]
    fn the_chunker_cuts_exact_parts_and_keeps_the_rest() {
        let mut c = Chunker::new(4);
        assert!(c.push(Bytes::from_static(b"ab")).is_empty());
        let parts = c.push(Bytes::from_static(b"cdefghij"));
        assert_eq!(
            parts,
            vec![Bytes::from_static(b"abcd"), Bytes::from_static(b"efgh")]
        );
        c.push_prefix(Bytes::from_static(b"0"));
        assert_eq!(&c.rest()[..], b"0ij");
    }
}
