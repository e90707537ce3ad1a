//! Backups of all metadata from a running cluster, and restoring a new cluster from one.
//!
//! Taking a backup is online, on any replica, with no read-only window:
//! [`MetaNode::prepare_backup`] passes the read barrier (so the copy includes every write
//! acknowledged before the request), then copies `state.db` with `VACUUM INTO` through a
//! read-only connection: one read transaction, so one consistent state at one log index while
//! the writer keeps applying. From that copy it counts every table's rows (whatever tables the
//! schema has), lists the referenced blobs and hashes the sections; [`PreparedBackup`] then
//! writes the file (`format.rs`) to a writer or as a byte stream for an HTTP body. The copies
//! live in the snapshot directory, on the same disk as the database (they need as much room
//! as it), and are removed once written or dropped, or at the next start with other leftovers.
//!
//! Restoring is offline, into an empty data directory (`restore.rs`).

mod error;
mod format;
mod restore;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use sha2::{Digest as _, Sha256};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub use error::BackupError;
pub use format::{
    BackupHeader, BackupLogId, BackupMember, Encryption, Passphrase, FORMAT_VERSION,
    MIN_PASSPHRASE_CHARS,
};
pub use restore::{restore, BlobList, RestoreOptions, RestoreProgress, Restored};

use crate::db;
use crate::error::MetaError;
use crate::node::MetaNode;
use crate::state_machine::{read_applied_state, unique};
use crate::types::{LogId, StoredMembership};

/// Bytes per chunk of a backup streamed as an HTTP body.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks queued between the writing thread and the HTTP body: bounds memory per backup.
const STREAM_QUEUE_CHUNKS: usize = 8;

/// A consistent copy of the metadata, ready to be written as a backup file.
#[derive(Debug)]
pub struct PreparedBackup {
    header: BackupHeader,
    files: TempFiles,
    log_n: u8,
}

/// The temporary files of one backup, removed when dropped.
#[derive(Debug)]
struct TempFiles {
    database: PathBuf,
    blobs: PathBuf,
}

impl TempFiles {
    fn new(dir: &Path) -> TempFiles {
        let stem = format!("backup-{}", unique());
        TempFiles {
            database: dir.join(format!("{stem}.db")),
            blobs: dir.join(format!("{stem}.blobs")),
        }
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in [&self.database, &self.blobs] {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a backup file");
                }
            }
        }
    }
}

/// What the copy itself says: read from it, not from the live database.
struct CopyFacts {
    last_applied: LogId,
    membership: StoredMembership,
    schema_version: i64,
    tables: BTreeMap<String, u64>,
    blob_count: u64,
    blob_list_bytes: u64,
}

impl MetaNode {
    /// Takes a consistent copy of all metadata for a backup: after the read barrier, so it
    /// includes every write acknowledged before the call, and without stopping writes.
    ///
    /// # Errors
    /// [`MetaError::Unavailable`] when the read barrier cannot be passed (no leader or
    /// quorum); storage errors when the copy cannot be made.
    pub async fn prepare_backup(&self) -> Result<PreparedBackup, MetaError> {
        self.read_barrier().await?;
        let state_machine = self.state_machine();
        let files = TempFiles::new(state_machine.snapshot_dir());
        let facts = copy_state(state_machine.db_path(), &files).await?;
        let (database, blobs) = (files.database.clone(), files.blobs.clone());
        let (payload_sha256, database_bytes) =
            tokio::task::spawn_blocking(move || hash_sections(&blobs, &database))
                .await
                .map_err(|e| MetaError::Io(io::Error::other(e)))??;

        let now = SystemTime::now();
        let created_at_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let membership = facts.membership.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let identity = self.identity();
        let header = BackupHeader {
            format_version: FORMAT_VERSION,
            created_at_ms,
            created_at: humantime::format_rfc3339_millis(now).to_string(),
            berth_version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster_id: identity.cluster_id.clone(),
            replica_id: identity.replica_id,
            last_applied: BackupLogId {
                term: facts.last_applied.leader_id.term,
                node_id: facts.last_applied.leader_id.node_id,
                index: facts.last_applied.index,
            },
            membership: membership
                .nodes()
                .map(|(id, node)| BackupMember {
                    id: *id,
                    address: node.addr.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            schema_version: facts.schema_version,
            tables: facts.tables,
            blob_count: facts.blob_count,
            blob_list_bytes: facts.blob_list_bytes,
            database_bytes,
            payload_sha256,
        };
        tracing::info!(
            index = header.last_applied.index,
            rows = header.rows(),
            blobs = header.blob_count,
            bytes = header.payload_bytes(),
            "prepared a backup"
        );
        Ok(PreparedBackup {
            header,
            files,
            log_n: format::SCRYPT_LOG_N,
        })
    }
}

impl PreparedBackup {
    /// What the backup will say about itself.
    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// A cheaper scrypt work factor, for tests only.
    #[cfg(test)]
    pub(crate) fn with_work_factor(mut self, log_n: u8) -> PreparedBackup {
        self.log_n = log_n;
        self
    }

    /// Runs `sql` on the copy and updates the header to match, for tests of what a restore
    /// refuses.
    #[cfg(test)]
    pub(crate) async fn alter_database(mut self, sql: &str) -> PreparedBackup {
        let mut copy = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.files.database)
            .connect()
            .await
            .expect("open the copy");
        sqlx::query(sql)
            .execute(&mut copy)
            .await
            .expect("alter the copy");
        copy.close().await.expect("close the copy");
        let (sum, bytes) =
            hash_sections(&self.files.blobs, &self.files.database).expect("hash the copy");
        self.header.payload_sha256 = sum;
        self.header.database_bytes = bytes;
        self
    }

    /// Writes the backup file to `out` (blocking I/O: call it off the async runtime) and
    /// answers `out`, unflushed. The copies are removed afterwards, written or not.
    ///
    /// # Errors
    /// Reading the copies or writing `out` failed.
    pub fn write_to<W: Write>(self, out: W, encryption: &Encryption) -> io::Result<W> {
        let blobs = io::BufReader::new(std::fs::File::open(&self.files.blobs)?);
        let database = std::fs::File::open(&self.files.database)?;
        format::write_backup(out, encryption, self.log_n, &self.header, blobs, database)
    }

    /// The backup file as a stream of chunks, written by a blocking thread with a bounded
    /// queue in between: memory does not grow with the metadata. If the stream is dropped
    /// early (the client went away), the writer stops and the copies are removed; if writing
    /// fails, the stream ends with the error (so an HTTP body is cut off, not completed).
    pub fn into_stream(
        self,
        encryption: Encryption,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let (tx, mut rx) = mpsc::channel(STREAM_QUEUE_CHUNKS);
        let errors = tx.clone();
        tokio::task::spawn_blocking(move || {
            let written = self
                .write_to(ChannelWriter::new(tx), &encryption)
                .and_then(|mut w| w.flush());
            match written {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    tracing::warn!("the backup's reader went away before the end");
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing a backup failed");
                    let _ = errors.blocking_send(Err(e));
                }
            }
        });
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}

/// A `Write` that sends its bytes, in chunks, into a bounded channel (from a blocking thread).
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(STREAM_CHUNK_BYTES),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(STREAM_CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "backup stream closed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Copies the live database into `files.database` in one read transaction, then reads from
/// the copy what the header says and writes the blob list.
async fn copy_state(db_path: &Path, files: &TempFiles) -> Result<CopyFacts, MetaError> {
    let mut source = db::reader_options(db_path).connect().await?;
    let vacuumed = sqlx::query("VACUUM INTO ?")
        .bind(db::path_str(&files.database)?)
        .persistent(false)
        .execute(&mut source)
        .await;
    source.close().await?;
    vacuumed?;

    let mut copy = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&files.database)
        .connect()
        .await?;
    let facts = read_copy(&mut copy, &files.blobs).await;
    copy.close().await?;
    facts
}

async fn read_copy(copy: &mut SqliteConnection, blobs: &Path) -> Result<CopyFacts, MetaError> {
    // A self-contained file: no WAL beside it.
    sqlx::query("PRAGMA journal_mode = DELETE")
        .execute(&mut *copy)
        .await?;
    let (last_applied, membership) = read_applied_state(copy).await?;
    let last_applied = last_applied
        .ok_or_else(|| MetaError::Corrupt("the metadata records no applied entry".to_owned()))?;
    let mut tables = BTreeMap::new();
    for table in table_names(copy).await? {
        let (rows,): (i64,) = sqlx::query_as(&format!(
            "SELECT count(*) FROM \"{}\"",
            table.replace('"', "\"\"")
        ))
        .persistent(false)
        .fetch_one(&mut *copy)
        .await?;
        tables.insert(table, u64::try_from(rows).unwrap_or(0));
    }
    let (schema_version,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&mut *copy)
            .await?;

    // Every blob a repository may see or a manifest needs, sorted, without duplicates.
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(blobs).await?);
    let (mut blob_count, mut blob_list_bytes) = (0u64, 0u64);
    {
        let mut rows = sqlx::query_as::<_, (String,)>(
            "SELECT digest FROM blob_links \
             UNION SELECT target_digest FROM manifest_refs WHERE kind = 'blob' ORDER BY 1",
        )
        .fetch(&mut *copy);
        while let Some((digest,)) = rows.try_next().await? {
            let line = format!("{digest}\n");
            out.write_all(line.as_bytes()).await?;
            blob_count += 1;
            blob_list_bytes += line.len() as u64;
        }
    }
    out.flush().await?;
    Ok(CopyFacts {
        last_applied,
        membership,
        schema_version,
        tables,
        blob_count,
        blob_list_bytes,
    })
}

/// The tables of a state database, every one but SQLite's and the migration bookkeeping.
pub(crate) async fn table_names(conn: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite!_%' ESCAPE '!' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(name,)| name).collect())
}

/// SHA-256 of the blob list then the database, and the database's length.
fn hash_sections(blobs: &Path, database: &Path) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; STREAM_CHUNK_BYTES];
    let mut database_bytes = 0;
    for (i, path) in [blobs, database].into_iter().enumerate() {
        let mut file = std::fs::File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if i == 1 {
                database_bytes += n as u64;
            }
        }
    }
    Ok((hex::encode(hasher.finalize()), database_bytes))
}
