//! Verified blobs: stat, ranged streamed reads, delete, listing (for garbage collection),
//! on either backend. The backend is an enum rather than a trait object: uploads take
//! generic body streams, and a match costs nothing on the hot path.

use berth_oci::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, TryStreamExt};

use super::dir::DirBlobs;
use super::error::Result;
use super::file_chunks::FileChunks;
use super::object::ObjectBlobs;

/// Content-addressed blobs in the configured storage.
#[derive(Clone, Debug)]
pub struct BlobStore {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Dir(DirBlobs),
    Object(ObjectBlobs),
}

/// A blob found by [`BlobStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Its digest, from its key.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When storage last wrote it (ms since the epoch), if storage says.
    pub modified_ms: Option<i64>,
}

/// An open blob (or a byte range of one), ready to stream.
pub struct BlobReader {
    len: u64,
    source: Source,
}

enum Source {
    File(FileChunks),
    Object(BoxStream<'static, object_store::Result<Bytes>>),
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::File(_) => "file",
            Source::Object(_) => "object",
        };
        f.debug_struct("BlobReader")
            .field("len", &self.len)
            .field("source", &kind)
            .finish()
    }
}

impl BlobReader {
    pub(super) fn object(
        len: u64,
        stream: BoxStream<'static, object_store::Result<Bytes>>,
    ) -> Self {
        Self {
            len,
            source: Source::Object(stream),
        }
    }

    /// How many bytes the stream will yield.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, in bounded chunks.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        match self.source {
            Source::File(chunks) => futures::future::Either::Left(chunks),
            Source::Object(stream) => {
                futures::future::Either::Right(stream.map_err(std::io::Error::other))
            }
        }
    }
}

impl BlobStore {
    pub(super) fn dir(blobs: DirBlobs) -> Self {
        Self {
            backend: Backend::Dir(blobs),
        }
    }

    pub(super) fn object(blobs: ObjectBlobs) -> Self {
        Self {
            backend: Backend::Object(blobs),
        }
    }

    /// The size of a stored blob, or `None` when storage does not have it.
    ///
    /// # Errors
    /// Storage failures other than "not found".
    pub async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match &self.backend {
            Backend::Dir(b) => b.stat(digest).await,
            Backend::Object(b) => b.stat(digest).await,
        }
    }

    /// Opens `len` bytes of a blob starting at `offset`; the caller checked the range
    /// against the blob's size.
    ///
    /// # Errors
    /// [`super::Error::BlobNotFound`] when the blob is gone, or storage failures.
    pub async fn open(&self, digest: &Digest, offset: u64, len: u64) -> Result<BlobReader> {
        match &self.backend {
            Backend::Dir(b) => Ok(BlobReader {
                len,
                source: Source::File(FileChunks::new(b.open(digest).await?, offset, len)),
            }),
            Backend::Object(b) => b.open(digest, offset, len).await,
        }
    }

    /// Removes a blob from storage; a blob already gone is not an error.
    ///
    /// # Errors
    /// Storage failures other than "not found".
    pub async fn delete(&self, digest: &Digest) -> Result<()> {
        match &self.backend {
            Backend::Dir(b) => b.delete(digest).await,
            Backend::Object(b) => b.delete(digest).await,
        }
    }

    /// Removes many blobs (garbage collection): on S3 through bulk deletes, on a directory
    /// `concurrency` files at a time. Blobs already gone are not an error.
    ///
    /// # Errors
    /// The first storage failure other than "not found" (the other deletes are still tried).
    pub async fn delete_many(&self, digests: &[Digest], concurrency: usize) -> Result<()> {
        use futures::StreamExt;
        match &self.backend {
            Backend::Dir(b) => {
                let results: Vec<Result<()>> = futures::stream::iter(digests.to_vec())
                    .map(|d| {
                        let b = b.clone();
                        async move { b.delete(&d).await }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .collect()
                    .await;
                results.into_iter().collect()
            }
            Backend::Object(b) => b.delete_many(digests).await,
        }
    }

    /// Every blob in storage, in no particular order, streamed (for garbage collection and
    /// consistency checks; storage may hold millions).
    pub fn list(&self) -> BoxStream<'static, Result<BlobEntry>> {
        match &self.backend {
            Backend::Dir(b) => b.list(),
            Backend::Object(b) => b.list(),
        }
    }
}
