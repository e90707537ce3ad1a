//! Errors of the storage layer, in storage words (no HTTP).

use berth_oci::Digest;

/// A storage failure or refusal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The blob is not in storage.
    #[error("blob {0} not found in storage")]
    BlobNotFound(Digest),
    /// No upload session with that id (never started, finished, cancelled or expired).
    #[error("upload session not found")]
    UploadNotFound,
    /// A chunk did not start where the session's bytes end.
    #[error("chunk starts at {start}, upload is at {offset}")]
    ChunkOutOfOrder {
        /// Where the client said the chunk starts.
        start: u64,
        /// The number of bytes the session holds.
        offset: u64,
    },
    /// The bytes received do not hash to the digest the client named.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the client claimed.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The request body stream failed (client went away, bad framing).
    #[error("reading the request body: {0}")]
    Body(#[source] std::io::Error),
    /// The upload's saved state cannot be read back.
    #[error("upload state is corrupt: {0}")]
    CorruptState(String),
    /// The file system failed.
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The object store (S3, GCS, Azure) failed or refused a request, or could not be
    /// configured (missing account, unreadable credentials).
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Storage answered, but not as storage must (a probe read back other bytes, an object
    /// is not the size its state records).
    #[error("storage is inconsistent: {0}")]
    Inconsistent(String),
}

/// Result with the storage [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
