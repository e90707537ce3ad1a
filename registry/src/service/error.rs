//! Errors of the registry's services, in domain words. `crate::api::error` maps each
//! variant to the spec's error code and status, exhaustively.

use berth_oci::{Digest, RepoName};
use berth_raft::{MembershipError, MetaError};

use crate::storage;

/// Why a registry operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository does not exist.
    #[error("repository {0} is not known")]
    NameUnknown(RepoName),
    /// The blob is not linked to the repository (or storage lost it).
    #[error("blob {0} is not known to this repository")]
    BlobUnknown(Digest),
    /// No such upload session in this repository.
    #[error("upload session is not known")]
    UploadUnknown,
    /// A chunk did not continue the upload where it stands.
    #[error("chunk starts at {start} but the upload holds {offset} bytes")]
    ChunkOutOfOrder {
        /// Where the chunk said it starts.
        start: u64,
        /// Bytes the session holds.
        offset: u64,
    },
    /// A chunk's `Content-Range` and `Content-Length` disagree.
    #[error("chunk range and length disagree")]
    ChunkLengthMismatch,
    /// The bytes do not hash to the digest the client named.
    #[error("the content does not match digest {expected}")]
    DigestMismatch {
        /// The digest the client named.
        expected: Digest,
    },
    /// No manifest with that tag or digest.
    #[error("manifest {0} is not known")]
    ManifestUnknown(String),
    /// The manifest document is malformed.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// The manifest names a media type we do not store.
    #[error("manifest media type {0} is not supported")]
    ManifestUnsupported(String),
    /// The manifest is larger than the limit.
    #[error("manifest larger than {limit} bytes")]
    ManifestTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The manifest references blobs or manifests the repository does not have.
    #[error("manifest references unknown content")]
    ManifestBlobUnknown(Vec<Digest>),
    /// The requested byte range lies outside the blob.
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// The request body broke off.
    #[error("request body: {0}")]
    Body(#[source] std::io::Error),
    /// No leader or no quorum: try again shortly.
    #[error("the metadata cluster is unavailable")]
    Unavailable,
    /// The request needs credentials and has none, or wrong ones.
    #[error("authentication required")]
    Unauthenticated,
    /// Too many failed logins from this account or address: wait.
    #[error("too many failed logins; retry in {retry_after_secs} s")]
    TooManyAttempts {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// A name or the resource is unknown to the admin API.
    #[error("{0} not found")]
    NotFound(String),
    /// The resource exists already, or the name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The credentials are good but do not allow this.
    #[error("access denied")]
    Denied,
    /// A membership change was refused.
    #[error(transparent)]
    Membership(MembershipError),
    /// An admin request's body or parameters are malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Blob storage failed.
    #[error("storage: {0}")]
    Storage(#[source] storage::Error),
    /// The metadata store failed.
    #[error("metadata: {0}")]
    Meta(#[source] MetaError),
}

impl From<storage::Error> for Error {
    fn from(e: storage::Error) -> Self {
        use storage::Error as S;
        match e {
            S::BlobNotFound(d) => Self::BlobUnknown(d),
            S::UploadNotFound => Self::UploadUnknown,
            S::ChunkOutOfOrder { start, offset } => Self::ChunkOutOfOrder { start, offset },
            S::DigestMismatch { expected, .. } => Self::DigestMismatch { expected },
            S::Body(e) => Self::Body(e),
            other @ (S::CorruptState(_) | S::Io(_) | S::ObjectStore(_) | S::Inconsistent(_)) => {
                Self::Storage(other)
            }
        }
    }
}

impl From<MetaError> for Error {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Unavailable => Self::Unavailable,
            MetaError::Membership(e) => Self::Membership(e),
            other => Self::Meta(other),
        }
    }
}
