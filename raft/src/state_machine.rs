//! The state machine: applies committed [`MetaCommand`]s to `state.db`, and builds and installs
//! snapshots of it.
//!
//! Apply is deterministic: no clock, randomness or I/O besides SQLite; timestamps come in the
//! commands. A batch of entries is applied in one transaction that also records
//! `last_applied` and the membership. Domain refusals are [`MetaResponse::Rejected`] values;
//! an `Err` from apply means storage is broken (openraft then stops the node).
//!
//! `state.db` runs in WAL mode with `synchronous=NORMAL` behind one writer connection; readers
//! use [`MetaReader`]'s read-only pool. After a power loss the database may lag behind the log:
//! openraft re-applies committed entries, and a snapshot newer than the database is restored at
//! open, so the log is only ever purged up to a durable snapshot.
//!
//! Snapshots live in `<dir>/snapshots/`: `snap-<id>.db` (a `VACUUM INTO` copy, fsynced) and
//! `current.json` (its [`SnapshotMeta`] and file name). Only the latest is kept. Installing
//! one copies it there, then replaces every table's contents from it inside one transaction
//! (ATTACH), so readers keep their pool and no file is swapped under them.

mod access;
pub(crate) mod cluster;
pub(crate) mod gc;
mod link_run;

use std::collections::BTreeSet;
use std::fmt;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_oci::{Digest, RepoName, Tag};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{Mutex, RwLock};

use crate::command::{AccessCommand, MetaCommand, MetaResponse, Rejection};
use crate::db::{self, sto_err};
use crate::error::MetaError;
use crate::reader::{CacheScope, MetaReader};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// File name of the state machine database inside a node's directory.
pub const STATE_DB_FILE: &str = "state.db";
/// Directory of snapshots inside a node's directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// The sidecar naming the current snapshot.
const SIDECAR_FILE: &str = "current.json";

const KEY_LAST_APPLIED: &str = "last_applied";
pub(crate) const KEY_MEMBERSHIP: &str = "membership";

/// The SQLite state machine. Cheap to clone: clones share the writer connection and are also
/// its snapshot builders.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

struct Inner {
    db_path: PathBuf,
    snapshot_dir: PathBuf,
    /// The only connection that writes `state.db`.
    writer: Mutex<SqliteConnection>,
    reader: MetaReader,
    /// Serializes changes to the snapshot directory (sidecar, which files exist).
    snapshot_lock: Mutex<()>,
    /// Held (shared) by every snapshot build, so that [`StateMachineStore::close`] can wait for
    /// builds openraft started in the background.
    building: RwLock<()>,
    /// Set by [`StateMachineStore::close`]: no apply, build or install starts afterwards.
    closed: AtomicBool,
}

impl fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("db_path", &self.inner.db_path)
            .finish_non_exhaustive()
    }
}

/// What `current.json` records about the current snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    meta: SnapshotMeta,
    /// File name inside the snapshot directory.
    file: String,
}

impl StateMachineStore {
    /// Opens (or creates) `state.db` and `snapshots/` in `dir`, brings the schema up to date,
    /// and restores the current snapshot if it is newer than the database (a power loss can
    /// cost `synchronous=NORMAL` its last transactions).
    ///
    /// # Errors
    /// A directory or file cannot be created or read, SQLite fails, or the current snapshot is
    /// missing or unreadable.
    pub async fn open(dir: impl AsRef<Path>) -> Result<StateMachineStore, MetaError> {
        let dir = dir.as_ref();
        let db_path = dir.join(STATE_DB_FILE);
        let snapshot_dir = dir.join(SNAPSHOT_DIR);
        tokio::fs::create_dir_all(&snapshot_dir).await?;

        let mut writer = db::writer_options(&db_path, SqliteSynchronous::Normal)
            .connect()
            .await?;
        db::STATE_MIGRATOR.run_direct(&mut writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(db::reader_options(&db_path))
            .await?;

        let store = StateMachineStore {
            inner: Arc::new(Inner {
                db_path,
                snapshot_dir,
                writer: Mutex::new(writer),
                reader: MetaReader::new(pool),
                snapshot_lock: Mutex::new(()),
                building: RwLock::new(()),
                closed: AtomicBool::new(false),
            }),
        };
        store.recover().await?;
        Ok(store)
    }

    /// The read side of this state machine.
    pub fn reader(&self) -> &MetaReader {
        &self.inner.reader
    }

    /// Path of `state.db`.
    pub(crate) fn db_path(&self) -> &Path {
        &self.inner.db_path
    }

    /// The snapshot directory (also where backups keep their temporary copies).
    pub(crate) fn snapshot_dir(&self) -> &Path {
        &self.inner.snapshot_dir
    }

    /// Closes the store and its connections, for offline tools that hold the only handle
    /// (so that its files can be moved afterwards).
    ///
    /// # Errors
    /// [`MetaError::Config`] when another handle still exists; SQLite errors on close.
    pub(crate) async fn close_connections(self) -> Result<(), MetaError> {
        self.close().await;
        self.inner.reader.close().await;
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|_| MetaError::Config("the state machine is still in use".to_owned()))?;
        inner.writer.into_inner().close().await?;
        Ok(())
    }

    /// Stops this store: waits for an apply, install or snapshot build in progress (openraft
    /// runs builds in tasks its shutdown does not wait for), after which those operations
    /// fail. Reads through [`reader`](Self::reader) are not affected.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let _building = self.inner.building.write().await;
        let _snapshots = self.inner.snapshot_lock.lock().await;
        let _writer = self.inner.writer.lock().await;
    }

    fn ensure_open(&self) -> Result<(), MetaError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(MetaError::Unavailable)
        } else {
            Ok(())
        }
    }

    /// Removes leftovers of interrupted snapshot work and restores the current snapshot when
    /// the database is behind it.
    async fn recover(&self) -> Result<(), MetaError> {
        let _guard = self.inner.snapshot_lock.lock().await;
        let sidecar = self.read_sidecar().await?;
        let keep = sidecar.as_ref().map(|s| s.file.as_str());
        let mut entries = tokio::fs::read_dir(&self.inner.snapshot_dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name != SIDECAR_FILE && Some(name.as_ref()) != keep {
                tracing::debug!(file = %name, "removing stale snapshot file");
                remove_if_exists(&entry.path()).await?;
            }
        }
        if let Some(sidecar) = sidecar {
            let (applied, _) = {
                let mut conn = self.inner.writer.lock().await;
                read_applied_state(&mut conn).await?
            };
            if sidecar.meta.last_log_id > applied {
                tracing::warn!(
                    snapshot = %sidecar.meta,
                    "state database is behind the current snapshot; restoring the snapshot"
                );
                let path = self.inner.snapshot_dir.join(&sidecar.file);
                self.restore_from(&path, &sidecar.meta).await?;
            }
        }
        Ok(())
    }

    async fn read_sidecar(&self) -> Result<Option<Sidecar>, MetaError> {
        match tokio::fs::read(self.inner.snapshot_dir.join(SIDECAR_FILE)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| MetaError::Corrupt(format!("snapshot sidecar: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Durably replaces the sidecar (write, fsync, rename, fsync the directory).
    async fn write_sidecar(&self, sidecar: &Sidecar) -> Result<(), MetaError> {
        let json =
            serde_json::to_vec_pretty(sidecar).map_err(|e| MetaError::Corrupt(e.to_string()))?;
        let tmp = self.inner.snapshot_dir.join(format!("{SIDECAR_FILE}.tmp"));
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&json).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, self.inner.snapshot_dir.join(SIDECAR_FILE)).await?;
        db::sync_dir(&self.inner.snapshot_dir).await?;
        Ok(())
    }

    /// Deletes every `snap-*.db` but `keep`. In-progress files (`building-*`) are left alone.
    async fn remove_old_snapshots(&self, keep: &str) -> Result<(), MetaError> {
        let mut entries = tokio::fs::read_dir(&self.inner.snapshot_dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snap-") && name != keep {
                remove_if_exists(&entry.path()).await?;
            }
        }
        Ok(())
    }

    /// Replaces the contents of every table of `state.db` with those of the snapshot file at
    /// `path`, in one transaction, and records `meta`'s last log id and membership.
    async fn restore_from(&self, path: &Path, meta: &SnapshotMeta) -> Result<(), MetaError> {
        let mut conn = self.inner.writer.lock().await;
        sqlx::query("ATTACH DATABASE ? AS snap")
            .bind(db::path_str(path)?)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        let copied = copy_all_tables(&mut conn, meta).await;
        self.inner.reader.invalidate(CacheScope::Everything);
        let detached = sqlx::query("DETACH DATABASE snap")
            .persistent(false)
            .execute(&mut *conn)
            .await;
        copied?;
        detached?;
        Ok(())
    }

    async fn build(&self) -> Result<Snapshot, MetaError> {
        let _building = self.inner.building.read().await;
        self.ensure_open()?;
        let building = self
            .inner
            .snapshot_dir
            .join(format!("building-{}.db", unique()));
        let built = self.build_at(&building).await;
        if built.is_err() {
            // Best effort: a leftover is also removed at the next open.
            let _ = remove_if_exists(&building).await;
        }
        built
    }

    /// Builds a snapshot through the temporary file `building`, then names it current.
    async fn build_at(&self, building: &Path) -> Result<Snapshot, MetaError> {
        let dir = &self.inner.snapshot_dir;

        // A separate connection: VACUUM INTO reads one consistent snapshot of the WAL database
        // while the writer keeps applying.
        let mut source = db::reader_options(&self.inner.db_path).connect().await?;
        sqlx::query("VACUUM INTO ?")
            .bind(db::path_str(building)?)
            .persistent(false)
            .execute(&mut source)
            .await?;
        source.close().await?;

        // The copy's own raft_state says exactly which log id and membership it contains.
        let mut copy = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(building)
            .connect()
            .await?;
        sqlx::query("PRAGMA journal_mode = DELETE")
            .execute(&mut copy)
            .await?;
        let (last_log_id, last_membership) = read_applied_state(&mut copy).await?;
        copy.close().await?;
        // SQLite does not fsync the output of VACUUM INTO.
        tokio::fs::File::open(building).await?.sync_all().await?;

        let snapshot_id = match last_log_id {
            Some(l) => format!(
                "{}-{}-{}-{}",
                l.leader_id.term,
                l.leader_id.node_id,
                l.index,
                unique()
            ),
            None => format!("0-0-0-{}", unique()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let file = snapshot_file_name(&meta.snapshot_id);
        let path = dir.join(&file);

        let _guard = self.inner.snapshot_lock.lock().await;
        tokio::fs::rename(building, &path).await?;
        db::sync_dir(dir).await?;
        let handle = tokio::fs::File::open(&path).await?;
        let current = self.read_sidecar().await?;
        if current.is_none_or(|c| c.meta.last_log_id <= meta.last_log_id) {
            self.write_sidecar(&Sidecar {
                meta: meta.clone(),
                file: file.clone(),
            })
            .await?;
            self.remove_old_snapshots(&file).await?;
        } else {
            // A newer snapshot was installed meanwhile; the handle stays readable.
            tokio::fs::remove_file(&path).await?;
        }
        tracing::info!(snapshot = %meta, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(handle),
        })
    }

    async fn install(
        &self,
        meta: &SnapshotMeta,
        mut data: Box<tokio::fs::File>,
    ) -> Result<(), MetaError> {
        let dir = &self.inner.snapshot_dir;
        let file = snapshot_file_name(&meta.snapshot_id);
        let path = dir.join(&file);
        let _guard = self.inner.snapshot_lock.lock().await;
        self.ensure_open()?;

        // Copy the received bytes next to the others first, durably, and name it current
        // before touching state.db: from then on a crash at any point recovers from it.
        let tmp = dir.join(format!("building-{}.db", unique()));
        let mut out = tokio::fs::File::create(&tmp).await?;
        data.seek(SeekFrom::Start(0)).await?;
        tokio::io::copy(&mut *data, &mut out).await?;
        out.sync_all().await?;
        drop(out);
        tokio::fs::rename(&tmp, &path).await?;
        db::sync_dir(dir).await?;
        self.write_sidecar(&Sidecar {
            meta: meta.clone(),
            file: file.clone(),
        })
        .await?;
        self.remove_old_snapshots(&file).await?;

        self.restore_from(&path, meta).await?;
        tracing::info!(snapshot = %meta, "installed snapshot");
        Ok(())
    }

    async fn current(&self) -> Result<Option<Snapshot>, MetaError> {
        let _guard = self.inner.snapshot_lock.lock().await;
        let Some(sidecar) = self.read_sidecar().await? else {
            return Ok(None);
        };
        let handle = tokio::fs::File::open(self.inner.snapshot_dir.join(&sidecar.file)).await?;
        Ok(Some(Snapshot {
            meta: sidecar.meta,
            snapshot: Box::new(handle),
        }))
    }

    async fn apply_entries<I>(&self, entries: I) -> Result<Vec<MetaResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry>,
    {
        let write_err = |e: &sqlx::Error| sto_err(ErrorSubject::StateMachine, ErrorVerb::Write, e);
        let mut conn = self.inner.writer.lock().await;
        self.ensure_open()
            .map_err(|e| sto_err(ErrorSubject::StateMachine, ErrorVerb::Write, &e))?;
        let mut tx = conn.begin().await.map_err(|e| write_err(&e))?;
        let mut responses = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        let mut changed = Changed::default();
        for entry in entries {
            let response = match &entry.payload {
                EntryPayload::Normal(cmd) => {
                    changed.add(cmd);
                    apply_command(&mut tx, cmd)
                        .await
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    MetaResponse::Ok
                }
                EntryPayload::Blank => MetaResponse::Ok,
            };
            last_applied = Some(entry.log_id);
            responses.push(response);
        }
        if let Some(log_id) = last_applied {
            put_state(&mut tx, KEY_LAST_APPLIED, &log_id)
                .await
                .map_err(|e| write_err(&e))?;
        }
        if let Some(m) = membership {
            put_state(&mut tx, KEY_MEMBERSHIP, &m)
                .await
                .map_err(|e| write_err(&e))?;
        }
        let committed = tx.commit().await.map_err(|e| write_err(&e));
        // Even after a failed commit: what the cache holds may no longer be what SQLite has.
        changed.invalidate(&self.inner.reader);
        committed?;
        Ok(responses)
    }
}

/// The repositories a batch of commands changed, for the read cache.
#[derive(Default)]
struct Changed {
    everything: bool,
    repos: Vec<RepoName>,
}

impl Changed {
    fn add(&mut self, cmd: &MetaCommand) {
        if let MetaCommand::Batch(cmds) = cmd {
            cmds.iter().for_each(|cmd| self.add(cmd));
            return;
        }
        match cache_scope(cmd) {
            CacheScope::Nothing => {}
            CacheScope::Repository(repo) => {
                if !self.everything && !self.repos.contains(repo) {
                    self.repos.push(repo.clone());
                }
            }
            CacheScope::Everything => self.everything = true,
        }
    }

    fn invalidate(&self, reader: &MetaReader) {
        if self.everything {
            reader.invalidate(CacheScope::Everything);
        } else {
            for repo in &self.repos {
                reader.invalidate(CacheScope::Repository(repo));
            }
        }
    }
}

/// What applying `cmd` can change among the reads [`MetaReader`] caches (tags, manifests,
/// blob links). Exhaustive on purpose: a new command must say.
fn cache_scope(cmd: &MetaCommand) -> CacheScope<'_> {
    match cmd {
        MetaCommand::LinkBlob { repo, .. }
        | MetaCommand::UnlinkBlob { repo, .. }
        | MetaCommand::PutManifest { repo, .. }
        | MetaCommand::DeleteManifest { repo, .. }
        | MetaCommand::DeleteTag { repo, .. } => CacheScope::Repository(repo),
        MetaCommand::Cluster(_) => CacheScope::Nothing,
        MetaCommand::Access(access) => match access {
            AccessCommand::DeleteRepository { .. } => CacheScope::Everything,
            AccessCommand::CreateUser { .. }
            | AccessCommand::DeleteUser { .. }
            | AccessCommand::SetPassword { .. }
            | AccessCommand::CreateOrg { .. }
            | AccessCommand::DeleteOrg { .. }
            | AccessCommand::CreateTeam { .. }
            | AccessCommand::DeleteTeam { .. }
            | AccessCommand::AddMember { .. }
            | AccessCommand::RemoveMember { .. }
            | AccessCommand::SetGrant { .. }
            | AccessCommand::RemoveGrant { .. }
            | AccessCommand::CreateRepository { .. }
            | AccessCommand::SetVisibility { .. }
            | AccessCommand::AddSigningKey { .. } => CacheScope::Nothing,
        },
        // Changed::add looks inside a batch; this answer is only for safety.
        MetaCommand::Gc(_) | MetaCommand::Batch(_) => CacheScope::Everything,
    }
}

async fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A process-unique suffix for file names and snapshot ids (not used by apply).
pub(crate) fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The file name of a snapshot; ids from other replicas are reduced to a safe alphabet.
fn snapshot_file_name(snapshot_id: &str) -> String {
    let safe: String = snapshot_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("snap-{safe}.db")
}

pub(crate) async fn read_applied_state(
    conn: &mut SqliteConnection,
) -> Result<(Option<LogId>, StoredMembership), MetaError> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, value FROM raft_state")
        .fetch_all(&mut *conn)
        .await?;
    let mut last_applied = None;
    let mut membership = StoredMembership::default();
    for (key, value) in rows {
        let corrupt = |e: serde_json::Error| MetaError::Corrupt(format!("raft_state {key}: {e}"));
        match key.as_str() {
            KEY_LAST_APPLIED => last_applied = Some(serde_json::from_str(&value).map_err(corrupt)?),
            KEY_MEMBERSHIP => membership = serde_json::from_str(&value).map_err(corrupt)?,
            _ => {}
        }
    }
    Ok((last_applied, membership))
}

pub(crate) async fn put_state<T: Serialize>(
    conn: &mut SqliteConnection,
    key: &str,
    value: &T,
) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT OR REPLACE INTO raft_state (key, value) VALUES (?, ?)")
        .bind(key)
        .bind(json)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inside one transaction: every table of `main` takes the contents of the same table in the
/// attached `snap` database; then `raft_state` is set from `meta`.
async fn copy_all_tables(
    conn: &mut SqliteConnection,
    meta: &SnapshotMeta,
) -> Result<(), MetaError> {
    let mut tx = conn.begin().await?;
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite!_%' ESCAPE '!' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table,) in &tables {
        let columns: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info(?, 'main') ORDER BY cid")
                .bind(table)
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
        let columns = columns
            .iter()
            .map(|(c,)| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let table = quote_ident(table);
        sqlx::query(&format!("DELETE FROM main.{table}"))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO main.{table} ({columns}) SELECT {columns} FROM snap.{table}"
        ))
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    }
    // The snapshot's own raft_state should say the same; meta is what openraft relies on.
    sqlx::query("DELETE FROM raft_state")
        .execute(&mut *tx)
        .await?;
    if let Some(log_id) = &meta.last_log_id {
        put_state(&mut tx, KEY_LAST_APPLIED, log_id).await?;
    }
    put_state(&mut tx, KEY_MEMBERSHIP, &meta.last_membership).await?;
    tx.commit().await?;
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies one command inside the batch transaction. Refusals are checked before any write, so
/// a rejected command changes nothing.
///
/// # Errors
/// Only SQLite failures; domain refusals are `Ok(MetaResponse::Rejected(..))`.
pub(crate) async fn apply_command(
    conn: &mut SqliteConnection,
    cmd: &MetaCommand,
) -> Result<MetaResponse, sqlx::Error> {
    match cmd {
        MetaCommand::LinkBlob {
            repo,
            digest,
            size,
            at_ms,
        } => {
            let gate = gc::link_gate(conn, &digest.to_string()).await?;
            if matches!(gate, gc::LinkGate::Refuse) {
                return Ok(MetaResponse::Rejected(Rejection::BlobDeleting));
            }
            ensure_repository(conn, repo, *at_ms).await?;
            sqlx::query(
                "INSERT INTO blob_links (repo, digest, size, created_at_ms) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (repo, digest) DO NOTHING",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .bind(size_i64(*size)?)
            .bind(at_ms)
            .execute(&mut *conn)
            .await?;
            Ok(match gate {
                gc::LinkGate::Verify => MetaResponse::LinkedAfterGc,
                gc::LinkGate::Link | gc::LinkGate::Refuse => MetaResponse::Ok,
            })
        }
        MetaCommand::UnlinkBlob { repo, digest } => {
            let done = sqlx::query("DELETE FROM blob_links WHERE repo = ? AND digest = ?")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .execute(&mut *conn)
                .await?;
            Ok(if done.rows_affected() == 0 {
                MetaResponse::Rejected(Rejection::BlobUnknown)
            } else {
                MetaResponse::Ok
            })
        }
        MetaCommand::PutManifest {
            repo,
            digest,
            media_type,
            artifact_type,
            body,
            subject,
            annotations,
            blobs,
            children,
            tag,
            at_ms,
        } => {
            let blobs: BTreeSet<&Digest> = blobs.iter().collect();
            let children: BTreeSet<&Digest> = children.iter().collect();
            let mut missing_blobs = Vec::new();
            for blob in &blobs {
                if !row_exists(
                    conn,
                    "SELECT 1 FROM blob_links WHERE repo = ? AND digest = ?",
                    repo,
                    blob,
                )
                .await?
                {
                    missing_blobs.push((*blob).clone());
                }
            }
            let mut missing_manifests = Vec::new();
            for child in &children {
                if !row_exists(
                    conn,
                    "SELECT 1 FROM manifests WHERE repo = ? AND digest = ?",
                    repo,
                    child,
                )
                .await?
                {
                    missing_manifests.push((*child).clone());
                }
            }
            if !missing_blobs.is_empty() || !missing_manifests.is_empty() {
                return Ok(MetaResponse::Rejected(Rejection::MissingReferences {
                    blobs: missing_blobs,
                    manifests: missing_manifests,
                }));
            }

            ensure_repository(conn, repo, *at_ms).await?;
            let annotations = if annotations.is_empty() {
                None
            } else {
                Some(
                    serde_json::to_string(annotations)
                        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
                )
            };
            sqlx::query(
                "INSERT INTO manifests (repo, digest, media_type, artifact_type, size, body, subject, \
                 annotations, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (repo, digest) DO NOTHING",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .bind(media_type)
            .bind(artifact_type.as_deref())
            .bind(size_i64(body.len() as u64)?)
            .bind(body.as_bytes())
            .bind(subject.as_ref().map(ToString::to_string))
            .bind(annotations)
            .bind(at_ms)
            .execute(&mut *conn)
            .await?;
            for (kind, targets) in [("blob", &blobs), ("manifest", &children)] {
                for target in targets {
                    sqlx::query(
                        "INSERT OR IGNORE INTO manifest_refs (repo, manifest_digest, target_digest, kind) \
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(repo.as_str())
                    .bind(digest.to_string())
                    .bind(target.to_string())
                    .bind(kind)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            if let Some(tag) = tag {
                set_tag(conn, repo, tag, digest, *at_ms).await?;
            }
            Ok(MetaResponse::Ok)
        }
        MetaCommand::DeleteManifest { repo, digest } => {
            let done = sqlx::query("DELETE FROM manifests WHERE repo = ? AND digest = ?")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(MetaResponse::Rejected(Rejection::ManifestUnknown));
            }
            sqlx::query("DELETE FROM tags WHERE repo = ? AND digest = ?")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM manifest_refs WHERE repo = ? AND manifest_digest = ?")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .execute(&mut *conn)
                .await?;
            Ok(MetaResponse::Ok)
        }
        MetaCommand::Cluster(cmd) => cluster::apply(conn, cmd).await,
        MetaCommand::Access(cmd) => access::apply(conn, cmd).await,
        MetaCommand::Gc(cmd) => gc::apply(conn, cmd).await,
        MetaCommand::Batch(cmds) => {
            let mut answers = Vec::with_capacity(cmds.len());
            let mut rest = &cmds[..];
            while !rest.is_empty() {
                let links = rest
                    .iter()
                    .take(link_run::MAX_RUN)
                    .take_while(|cmd| matches!(cmd, MetaCommand::LinkBlob { .. }))
                    .count();
                let (now, later) = rest.split_at(links.max(1));
                let together = if links > 1 {
                    link_run::apply(conn, now).await?
                } else {
                    None
                };
                match together {
                    Some(done) => answers.extend(done),
                    None => {
                        for cmd in now {
                            answers.push(Box::pin(apply_command(conn, cmd)).await?);
                        }
                    }
                }
                rest = later;
            }
            Ok(MetaResponse::Batch(answers))
        }
        MetaCommand::DeleteTag { repo, tag } => {
            let done = sqlx::query("DELETE FROM tags WHERE repo = ? AND tag = ?")
                .bind(repo.as_str())
                .bind(tag.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(if done.rows_affected() == 0 {
                MetaResponse::Rejected(Rejection::TagUnknown)
            } else {
                MetaResponse::Ok
            })
        }
    }
}

async fn ensure_repository(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO repositories (name, created_at_ms) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
        .bind(repo.as_str())
        .bind(at_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn set_tag(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    tag: &Tag,
    digest: &Digest,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tags (repo, tag, digest, updated_at_ms) VALUES (?, ?, ?, ?) \
         ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(repo.as_str())
    .bind(tag.as_str())
    .bind(digest.to_string())
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn row_exists(
    conn: &mut SqliteConnection,
    sql: &'static str,
    repo: &RepoName,
    digest: &Digest,
) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as(sql)
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

/// Sizes are `u64` in commands and `INTEGER` (i64) in SQLite.
fn size_i64(size: u64) -> Result<i64, sqlx::Error> {
    i64::try_from(size).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn snapshot_err(meta: Option<&SnapshotMeta>, verb: ErrorVerb, e: &MetaError) -> StorageError {
    sto_err(
        ErrorSubject::Snapshot(meta.map(SnapshotMeta::signature)),
        verb,
        e,
    )
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        self.build()
            .await
            .map_err(|e| snapshot_err(None, ErrorVerb::Write, &e))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let mut conn = self.inner.writer.lock().await;
        read_applied_state(&mut conn)
            .await
            .map_err(|e| sto_err(ErrorSubject::StateMachine, ErrorVerb::Read, &e))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetaResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // An anonymous file in the snapshot directory: created, then unlinked at once, so an
        // interrupted transfer leaves nothing behind. install_snapshot copies it out.
        let receive = async {
            let path = self
                .inner
                .snapshot_dir
                .join(format!("receiving-{}.db", unique()));
            let file = tokio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .await?;
            tokio::fs::remove_file(&path).await?;
            Ok::<_, MetaError>(Box::new(file))
        };
        receive
            .await
            .map_err(|e| snapshot_err(None, ErrorVerb::Write, &e))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot)
            .await
            .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, &e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.current()
            .await
            .map_err(|e| snapshot_err(None, ErrorVerb::Read, &e))
    }
}
