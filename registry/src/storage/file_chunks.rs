//! Streams a byte range of a file (a pull from the directory backend) in reused buffers.
//!
//! Each chunk is read with a positioned read on the blocking pool straight into a buffer
//! that goes out as the response's `Bytes`, so the bytes are copied once in user space; the
//! next chunk is read while the previous one is sent. Buffers come back to a small shared
//! pool when the connection has written them: a fresh allocation per chunk cost more than
//! the copy (page faults and zeroing), and freed buffers scattered over malloc's
//! per-thread arenas raised peak memory under many concurrent pulls.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::task::JoinHandle;

/// Bytes per chunk: large enough that the blocking-pool hop per chunk is small against
/// the copy, small enough that concurrent pulls hold little memory.
const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks being read ahead of the one the connection is sending.
const READ_AHEAD: usize = 2;

/// Idle buffers kept for reuse (8 MiB); more in use at once are allocated and freed.
const POOL_MAX: usize = 32;

static POOL: BufferPool = BufferPool::new();

/// Idle chunk buffers.
struct BufferPool(Mutex<Vec<Box<[u8]>>>);

impl BufferPool {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn take(&'static self) -> PooledChunk {
        let pooled = self.0.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        PooledChunk {
            buffer: Some(pooled.unwrap_or_else(|| vec![0; CHUNK_BYTES].into_boxed_slice())),
            len: CHUNK_BYTES,
            pool: self,
        }
    }

    fn give_back(&self, buffer: Box<[u8]>) {
        if let Ok(mut idle) = self.0.lock() {
            if idle.len() < POOL_MAX {
                idle.push(buffer);
            }
        }
    }
}

/// A buffer, owned by the `Bytes` handed to the connection; back to its pool on drop.
struct PooledChunk {
    buffer: Option<Box<[u8]>>,
    len: usize,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_deref().map_or(&[], |b| &b[..self.len])
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

/// The chunks of `len` bytes of a file from `offset`, in order.
pub(super) struct FileChunks {
    file: Arc<File>,
    next_offset: u64,
    unrequested: u64,
    reading: VecDeque<JoinHandle<io::Result<Bytes>>>,
}

impl FileChunks {
    pub(super) fn new(file: File, offset: u64, len: u64) -> Self {
        Self {
            file: Arc::new(file),
            next_offset: offset,
            unrequested: len,
            reading: VecDeque::with_capacity(READ_AHEAD),
        }
    }

    fn request_more(&mut self) {
        while self.reading.len() < READ_AHEAD && self.unrequested > 0 {
            let len = usize::try_from(self.unrequested).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
            let (file, offset) = (Arc::clone(&self.file), self.next_offset);
            self.reading.push_back(tokio::task::spawn_blocking(move || {
                read_chunk(&file, offset, len)
            }));
            self.next_offset += len as u64;
            self.unrequested -= len as u64;
        }
    }
}

fn read_chunk(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut chunk = POOL.take();
    chunk.len = len;
    if let Some(buffer) = chunk.buffer.as_deref_mut() {
        // A blob shorter than its recorded size (damaged storage) ends the body with an
        // error rather than with fewer bytes than the Content-Length promised.
        file.read_exact_at(&mut buffer[..len], offset)?;
    }
    Ok(Bytes::from_owner(chunk))
}

impl Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.request_more();
        let Some(front) = self.reading.front_mut() else {
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(front).poll(cx));
        self.reading.pop_front();
        let chunk = joined.unwrap_or_else(|e| Err(io::Error::other(e)));
        if chunk.is_ok() {
            self.request_more();
        } else {
            // Nothing after a failed chunk: the body ends with the error.
            self.unrequested = 0;
            self.reading.clear();
        }
        Poll::Ready(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::io::Write;

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        (file, bytes)
    }

    async fn collect(file: &tempfile::NamedTempFile, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let chunks: Vec<Bytes> = FileChunks::new(file.reopen().unwrap(), offset, len)
            .try_collect()
            .await?;
        assert!(chunks
            .iter()
            .all(|c| c.len() <= CHUNK_BYTES && !c.is_empty()));
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn streams_whole_files_and_ranges_across_chunk_boundaries() {
        let (file, bytes) = file_of(3 * CHUNK_BYTES + 17);
        assert_eq!(collect(&file, 0, bytes.len() as u64).await.unwrap(), bytes);
        let (start, end) = (CHUNK_BYTES - 5, 2 * CHUNK_BYTES + 9);
        assert_eq!(
            collect(&file, start as u64, (end - start) as u64)
                .await
                .unwrap(),
            &bytes[start..end]
        );
        assert!(collect(&file, 7, 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error_not_a_short_body() {
        let (file, bytes) = file_of(CHUNK_BYTES + 100);
        let err = collect(&file, 0, bytes.len() as u64 + 1).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn dropped_chunks_return_their_buffer_to_the_pool_up_to_its_bound() {
        static OWN: BufferPool = BufferPool::new();
        let first = Bytes::from_owner(OWN.take());
        let address = first.as_ptr();
        drop(first);
        assert_eq!(
            OWN.take().as_ref().as_ptr(),
            address,
            "the buffer is reused"
        );
        let many: Vec<PooledChunk> = (0..POOL_MAX + 5).map(|_| OWN.take()).collect();
        drop(many);
        assert_eq!(OWN.0.lock().unwrap().len(), POOL_MAX);
    }
}
