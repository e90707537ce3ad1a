//! The one error type of the metadata store.
//!
//! Domain refusals (a tag that does not exist, a manifest with missing references) are not
//! errors here: they are [`MetaResponse::Rejected`](crate::MetaResponse::Rejected) values.
//! `MetaError` means the store could not answer at all. No HTTP types here: the registry
//! decides what each variant becomes (`Unavailable` is a 503).

/// Why the metadata store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No leader is known, no quorum answers, or the write/read barrier timed out
    /// (`write_timeout_ms`). Retrying later may succeed.
    #[error("metadata store unavailable: no leader or quorum within the timeout")]
    Unavailable,
    /// The local SQLite database failed.
    #[error("metadata storage: {0}")]
    Storage(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("metadata schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file of the store (snapshot, sidecar) could not be read or written.
    #[error("metadata store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// openraft refused or failed in a way that retrying does not fix.
    #[error("raft: {0}")]
    Raft(String),
    /// A stored value could not be decoded (a digest, a JSON column): the database is damaged
    /// or was written by an incompatible version.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The node configuration is invalid (for example election timeouts out of order).
    #[error("invalid raft configuration: {0}")]
    Config(String),
}

/// Result with [`MetaError`] as the default error.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;
