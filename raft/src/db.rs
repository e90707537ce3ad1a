//! SQLite plumbing shared by the log store and the state machine: connection options,
//! embedded migrations, and the conversion of failures into openraft's storage errors.
//! No SQL about the schema here.

use std::path::Path;
use std::time::Duration;

use openraft::{ErrorSubject, ErrorVerb, StorageIOError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::types::StorageError;

/// How long a connection waits on a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema of `state.db`.
pub(crate) static STATE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/state");
/// Schema of `log.db`.
pub(crate) static LOG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/log");

/// Options of the one writer connection of a database: WAL, with the given durability.
pub(crate) fn writer_options(path: &Path, synchronous: SqliteSynchronous) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(false)
}

/// Options of read-only connections to a database already in WAL mode.
pub(crate) fn reader_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(false)
}

/// A path as the UTF-8 string SQLite statements (`VACUUM INTO`, `ATTACH`) take.
pub(crate) fn path_str(path: &Path) -> Result<&str, std::io::Error> {
    path.to_str().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("path is not UTF-8: {}", path.display()),
        )
    })
}

/// An openraft storage error about `subject`, keeping `source` as its cause.
pub(crate) fn sto_err<E>(subject: ErrorSubject<u64>, verb: ErrorVerb, source: &E) -> StorageError
where
    E: std::error::Error + 'static,
{
    StorageIOError::new(subject, verb, source).into()
}

/// fsync a directory so that renames and creations inside it are durable.
pub(crate) async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}
