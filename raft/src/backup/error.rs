//! Why a backup could not be written or read, or a restore could not be done.

use std::path::PathBuf;

use crate::error::MetaError;

/// Why a backup or a restore failed. A failed restore has changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The passphrase is empty, or too short for a new backup.
    #[error("the passphrase must have at least {0} characters")]
    WeakPassphrase(usize),
    /// The file is encrypted and no passphrase was given.
    #[error("this backup is encrypted: give its passphrase (--passphrase-file)")]
    NeedsPassphrase,
    /// A passphrase was given for a file written without encryption.
    #[error(
        "this backup is not encrypted; restore it only if you expected that, with --no-encryption"
    )]
    NotEncrypted,
    /// The passphrase does not decrypt the file.
    #[error(
        "wrong passphrase: it does not decrypt this backup (or the file's encryption header is \
         damaged)"
    )]
    WrongPassphrase,
    /// The input is not a Berth backup at all.
    #[error("not a Berth backup: {0}")]
    NotABackup(String),
    /// The file was written by a newer Berth in a format this one does not read.
    #[error(
        "the backup has format version {found}, newer than this Berth reads (up to {supported}); \
         restore it with a newer Berth"
    )]
    NewerFormat {
        /// The file's version.
        found: u32,
        /// The newest version this Berth reads.
        supported: u32,
    },
    /// The metadata inside was written by a newer Berth whose schema this one does not know.
    #[error(
        "the backup's metadata schema (migration {0}) is newer than this Berth knows; restore it \
         with a newer Berth"
    )]
    NewerSchema(i64),
    /// The file ends before its content does.
    #[error("the backup is truncated: it ends before its content does")]
    Truncated,
    /// Authentication or a checksum failed: the file was altered or damaged.
    #[error("the backup is damaged or was altered: {0}")]
    Damaged(String),
    /// The restore target holds a replica already.
    #[error(
        "{} is not empty: restore into an empty directory, or replace what is there with \
         --replace (stop its replica first)",
        .0.display()
    )]
    NotEmpty(PathBuf),
    /// Reading or writing files failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        BackupError::Meta(MetaError::Storage(e))
    }
}
