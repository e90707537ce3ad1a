//! The Raft log of one replica, in its own SQLite file (`log.db`).
//!
//! `log.db` holds the entries (serde_json), the vote, the committed log id and the last purged
//! log id. It runs in WAL mode with `synchronous=FULL` behind one writer connection; an append
//! batch is one transaction and openraft hears that the batch is flushed only after that
//! transaction committed, so no write is acknowledged before its log entry is on disk. The
//! committed log id, a restart hint only, rides along with the next append.
//! Readers (replication streams) use a separate read-only pool. Nothing here knows what a
//! command means.

use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::sync::Mutex;

use crate::db::{self, sto_err};
use crate::error::MetaError;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// File name of the log database inside a node's directory.
pub const LOG_DB_FILE: &str = "log.db";

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "purged";

/// The SQLite Raft log store. Cheap to clone: clones share the writer and the read pool, and
/// a clone is also the store's [`RaftLogReader`].
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only connection that writes `log.db`; its lock serializes all log and vote I/O, as
    /// openraft requires.
    writer: Mutex<SqliteConnection>,
    /// Read-only connections for entry and state reads.
    readers: SqlitePool,
    /// The committed log id openraft last reported, not yet written: it is written with the
    /// next append, in that append's transaction. openraft needs it only as a hint to apply
    /// sooner after a restart, so a synced write of its own for each commit (one more fsync
    /// per write) buys nothing.
    unsaved_committed: std::sync::Mutex<Option<Option<LogId>>>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) `log.db` in `dir` and brings its schema up to date.
    ///
    /// # Errors
    /// The directory cannot be created, or SQLite fails to open or migrate the database.
    pub async fn open(dir: impl AsRef<Path>) -> Result<LogStore, MetaError> {
        let dir = dir.as_ref();
        tokio::fs::create_dir_all(dir).await?;
        let path = dir.join(LOG_DB_FILE);
        let mut writer = db::writer_options(&path, SqliteSynchronous::Full)
            .connect()
            .await?;
        db::LOG_MIGRATOR.run_direct(&mut writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(db::reader_options(&path))
            .await?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
                unsaved_committed: std::sync::Mutex::new(None),
            }),
        })
    }

    /// Closes the connections, for offline tools that hold the only handle (so that the
    /// files can be moved afterwards).
    ///
    /// # Errors
    /// [`MetaError::Config`] when another handle still exists; SQLite errors on close.
    pub(crate) async fn close(self) -> Result<(), MetaError> {
        self.inner.readers.close().await;
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|_| MetaError::Config("the log store is still in use".to_owned()))?;
        inner.writer.into_inner().close().await?;
        Ok(())
    }

    async fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, MetaLogError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM log_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.inner.readers)
            .await?;
        match row {
            Some((json,)) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), MetaLogError> {
        let json = serde_json::to_string(value)?;
        let mut conn = self.inner.writer.lock().await;
        sqlx::query("INSERT OR REPLACE INTO log_meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(json)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn append_batch<I>(&self, entries: I) -> Result<(), MetaLogError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let mut conn = self.inner.writer.lock().await;
        let mut tx = conn.begin().await?;
        let committed = self.take_unsaved_committed();
        if let Some(committed) = &committed {
            sqlx::query("INSERT OR REPLACE INTO log_meta (key, value) VALUES (?, ?)")
                .bind(KEY_COMMITTED)
                .bind(serde_json::to_string(committed)?)
                .execute(&mut *tx)
                .await?;
        }
        for entry in entries {
            let json = serde_json::to_string(&entry)?;
            sqlx::query("INSERT OR REPLACE INTO log (idx, entry) VALUES (?, ?)")
                .bind(to_i64(entry.get_log_id().index))
                .bind(json)
                .execute(&mut *tx)
                .await?;
        }
        if let Err(e) = tx.commit().await {
            if let Some(committed) = committed {
                self.keep_unsaved_committed(committed);
            }
            return Err(e.into());
        }
        Ok(())
    }

    fn take_unsaved_committed(&self) -> Option<Option<LogId>> {
        self.unsaved().take()
    }

    /// Puts back a committed id whose write failed, unless a newer one arrived meanwhile.
    fn keep_unsaved_committed(&self, committed: Option<LogId>) {
        self.unsaved().get_or_insert(committed);
    }

    fn unsaved(&self) -> std::sync::MutexGuard<'_, Option<Option<LogId>>> {
        self.inner
            .unsaved_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Internal failure of a log operation, turned into openraft's `StorageError` at the trait edge.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetaLogError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Log indexes are `u64` in openraft and `INTEGER` (i64) in SQLite; real indexes never reach
/// 2^63, and range ends beyond it are clamped.
fn to_i64(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

/// `[start, end)` in SQLite integers for a range of log indexes.
fn index_range(range: &impl RangeBounds<u64>) -> (i64, i64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (to_i64(start), to_i64(end))
}

fn logs_err(verb: ErrorVerb, e: &MetaLogError) -> StorageError {
    sto_err(ErrorSubject::Logs, verb, e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = index_range(&range);
        let read = async {
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT entry FROM log WHERE idx >= ? AND idx < ? ORDER BY idx")
                    .bind(start)
                    .bind(end)
                    .fetch_all(&self.inner.readers)
                    .await?;
            rows.iter()
                .map(|(json,)| serde_json::from_str::<Entry>(json).map_err(MetaLogError::from))
                .collect::<Result<Vec<_>, _>>()
        };
        read.await.map_err(|e| logs_err(ErrorVerb::Read, &e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = async {
            let purged: Option<LogId> = self.read_meta(KEY_PURGED).await?;
            let last: Option<(String,)> =
                sqlx::query_as("SELECT entry FROM log ORDER BY idx DESC LIMIT 1")
                    .fetch_optional(&self.inner.readers)
                    .await?;
            let last = match last {
                Some((json,)) => Some(*serde_json::from_str::<Entry>(&json)?.get_log_id()),
                None => purged,
            };
            Ok::<_, MetaLogError>(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        };
        read.await.map_err(|e| logs_err(ErrorVerb::Read, &e))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)
            .await
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
            .await
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Read, &e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self.unsaved() = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(committed) = *self.unsaved() {
            return Ok(committed);
        }
        let committed: Option<Option<LogId>> = self
            .read_meta(KEY_COMMITTED)
            .await
            .map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Read, &e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The transaction commits with synchronous=FULL before the callback runs: openraft
        // counts this replica's copy of the entries only once they are durable.
        match self.append_batch(entries).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(logs_err(ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut conn = self.inner.writer.lock().await;
        sqlx::query("DELETE FROM log WHERE idx >= ?")
            .bind(to_i64(log_id.index))
            .execute(&mut *conn)
            .await
            .map_err(|e| logs_err(ErrorVerb::Delete, &MetaLogError::from(e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purge = async {
            let json = serde_json::to_string(&log_id)?;
            let mut conn = self.inner.writer.lock().await;
            let mut tx = conn.begin().await?;
            sqlx::query("INSERT OR REPLACE INTO log_meta (key, value) VALUES (?, ?)")
                .bind(KEY_PURGED)
                .bind(json)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM log WHERE idx <= ?")
                .bind(to_i64(log_id.index))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, MetaLogError>(())
        };
        purge.await.map_err(|e| logs_err(ErrorVerb::Delete, &e))
    }
}
