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
    /// A membership change (join, add, remove) was refused.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// Why a membership change was refused. Travels between replicas in RPC answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum MembershipError {
    /// The join token is unknown or expired.
    #[error(
        "the join token is not valid (unknown or expired); make a new one with `berth join-token`"
    )]
    InvalidJoinToken,
    /// No replica with this id is in the membership.
    #[error("replica {0} is not a member of the cluster")]
    NotMember(u64),
    /// The replica was removed from the cluster; it may join again only with an empty data
    /// directory (and so a new id).
    #[error("replica {0} was removed from the cluster; empty its data directory to join again")]
    Retired(u64),
    /// Removing the last voter would leave no cluster.
    #[error("replica {0} is the last voter of the cluster and cannot be removed")]
    LastVoter(u64),
    /// The replica asked is not the leader and no leader is known.
    #[error("no leader is known; retry when the cluster has elected one")]
    NoLeader,
    /// Another membership change is in progress, or the leader changed during this one.
    #[error("the membership is changing already; retry shortly")]
    Busy,
    /// The new replica did not catch up with the leader in time.
    #[error("the new replica did not catch up with the leader within {0} s")]
    CatchUpTimeout(u64),
    /// openraft or the network failed otherwise.
    #[error("membership change failed: {0}")]
    Failed(String),
}

/// Result with [`MetaError`] as the default error.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;
