//! Verified blobs: stat, ranged reads, durable commit of a finished upload, delete.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use berth_oci::Digest;
use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::error::{Error, Result};
use super::paths::Layout;

/// Read buffer for streaming a blob out: large enough that a pull is not bound by
/// per-chunk overhead, small enough that memory does not depend on the blob's size.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Content-addressed blobs under the storage root.
#[derive(Clone, Debug)]
pub struct BlobStore {
    layout: Layout,
}

/// An open blob (or a byte range of one), ready to stream.
#[derive(Debug)]
pub struct BlobReader {
    file: tokio::fs::File,
    len: u64,
}

impl BlobReader {
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
        ReaderStream::with_capacity(self.file.take(self.len), READ_CHUNK_BYTES)
    }
}

impl BlobStore {
    /// Blobs under `layout`.
    pub fn new(layout: Layout) -> Self {
        Self { layout }
    }

    /// The size of a stored blob, or `None` when storage does not have it.
    ///
    /// # Errors
    /// I/O failures other than "not found".
    pub async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.layout.blob(digest)).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `len` bytes of a blob starting at `offset`; the caller checked the range
    /// against the blob's size.
    ///
    /// # Errors
    /// [`Error::BlobNotFound`] when the blob is gone, or I/O failures.
    pub async fn open(&self, digest: &Digest, offset: u64, len: u64) -> Result<BlobReader> {
        let mut file = match tokio::fs::File::open(self.layout.blob(digest)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::BlobNotFound(digest.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await?;
        }
        Ok(BlobReader { file, len })
    }

    /// Moves a fully written and synced file into place as `digest`, durably: the rename
    /// and the directory entry are synced before this returns. If the blob already exists
    /// the file is simply removed (same digest, same bytes).
    ///
    /// # Errors
    /// I/O failures; the source file is left in place on failure.
    pub async fn commit_file(&self, source: PathBuf, digest: &Digest) -> Result<()> {
        let target = self.layout.blob(digest);
        tokio::task::spawn_blocking(move || commit_blocking(&source, &target))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    /// Removes a blob from storage; a blob already gone is not an error.
    ///
    /// # Errors
    /// I/O failures other than "not found".
    pub async fn delete(&self, digest: &Digest) -> Result<()> {
        match tokio::fs::remove_file(self.layout.blob(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn commit_blocking(source: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        std::fs::remove_file(source)?;
        return Ok(());
    }
    let parent = target
        .parent()
        .ok_or_else(|| Error::Io(std::io::Error::other("blob path has no parent")))?;
    let created = ensure_dir(parent)?;
    std::fs::rename(source, target)?;
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
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
