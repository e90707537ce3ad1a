//! Restoring a backup: a new one-replica cluster, built offline in an empty directory.
//!
//! Nothing at the target changes until the end: the backup is decrypted and checked into a
//! hidden working directory beside the target (same file system), the replica's files are
//! built there, and one rename puts them in place. A wrong passphrase, a damaged, truncated
//! or newer file fails before that, and the working directory is removed.
//!
//! The restored replica founds a new cluster: a new cluster id and cluster key, replica id 1.
//! Its state machine is the backup's database, installed as its current snapshot by the same
//! code that installs a snapshot received from a leader, with the membership {1}. Its log is
//! empty, purged and committed up to the backup's last log id, and its vote is in that log
//! id's term. openraft starts such a replica from the snapshot
//! (`StorageHelper::get_initial_state`) as a follower that is the only voter: it elects itself
//! in the next term, and its entries follow the backup's last index. Joining replicas
//! receive the snapshot, then the log.
//!
//! What a restore changes in the metadata, and why:
//! - join tokens are dropped: a token made for the old cluster must not admit replicas to the
//!   new one;
//! - the replica-id counter and the retired ids are reset: they numbered the old cluster's
//!   replicas, and the new cluster starts again at 1 (a retired old id would refuse a new
//!   replica that gets the same number);
//! - the membership becomes the new replica alone, at the address given or, when none is, at
//!   a placeholder that its first start replaces with its advertised URL
//!   ([`MetaNode::record_restored_address`]).
//!
//! Every other table (users, grants, keys, settings, repositories, ...) is kept row for row,
//! whatever tables the schema has; an older schema is migrated first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_oci::Digest;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, ChangeMembers, Membership};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::format::{open_backup, BackupHeader, Encryption};
use super::BackupError;
use crate::db;
use crate::error::MetaError;
use crate::identity::Identity;
use crate::log_store::LogStore;
use crate::node::MetaNode;
use crate::state_machine::cluster::{FIRST_REPLICA_ID, KEY_LAST_REPLICA_ID, RETIRED_PREFIX};
use crate::state_machine::{put_state, read_applied_state, unique, StateMachineStore};
use crate::types::{LogId, SnapshotMeta, StoredMembership, Vote};

/// The address recorded for a restored replica when the restore was given none; its first
/// start replaces it with the URL it advertises.
const UNSET_ADDRESS: &str = "berth-restore:address-not-set";
/// How long a restored replica waits to lead before recording its address.
const LEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Working files inside the working directory.
const BLOB_LIST_FILE: &str = "blobs.txt";
const DATABASE_FILE: &str = "backup.db";
const REPLICA_DIR: &str = "raft";

/// Where and how to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The replica's Raft directory to create (`<data-dir>/raft`). It must be missing or
    /// empty unless `replace` is set.
    pub dir: PathBuf,
    /// Replace a replica that is in `dir` (stopped: nothing checks that it is).
    pub replace: bool,
    /// The URL other replicas will reach the restored one at; `None`: recorded at its first
    /// start from its advertised URL.
    pub advertise: Option<String>,
}

/// How far a restore is, for a progress display.
#[derive(Debug, Clone)]
pub enum RestoreProgress {
    /// The header was read and checked.
    Header(Box<BackupHeader>),
    /// Bytes of the payload (blob list and database) decrypted and checked so far.
    Bytes {
        /// So far.
        done: u64,
        /// In all.
        total: u64,
    },
    /// The file is verified; the replica is being built.
    Installing,
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// The backup's header.
    pub header: BackupHeader,
    /// The new cluster's id.
    pub cluster_id: String,
    /// The restored replica's id (1).
    pub replica_id: u64,
    /// The address recorded for it, if one was given.
    pub address: Option<String>,
    /// Join tokens of the old cluster that were dropped.
    pub dropped_join_tokens: u64,
    /// The blobs the metadata references, to check against storage.
    pub blobs: BlobList,
}

/// The referenced blob digests of a restored backup, in a working file removed on drop.
#[derive(Debug)]
pub struct BlobList {
    work_dir: PathBuf,
    count: u64,
}

impl BlobList {
    /// How many digests the list holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The digests, read one at a time (memory does not grow with the list).
    ///
    /// # Errors
    /// The working file cannot be opened; each item fails on a read error or a malformed
    /// digest.
    pub fn digests(&self) -> io::Result<impl Iterator<Item = Result<Digest, BackupError>>> {
        let file = std::fs::File::open(self.work_dir.join(BLOB_LIST_FILE))?;
        Ok(io::BufReader::new(file).lines().map(|line| {
            let line = line?;
            Digest::parse(&line)
                .map_err(|e| BackupError::Damaged(format!("blob list entry {line:?}: {e}")))
        }))
    }
}

impl Drop for BlobList {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

/// Restores the backup read from `input` as a new one-replica cluster in `options.dir`.
/// Blocking reads of `input` happen on a blocking thread; `progress` is called from it.
///
/// # Errors
/// A [`BackupError`] that says what is wrong with the file or the target; nothing was
/// changed at the target then.
pub async fn restore(
    input: impl Read + Send + 'static,
    encryption: Encryption,
    options: RestoreOptions,
    progress: impl Fn(RestoreProgress) + Send + Sync + 'static,
) -> Result<Restored, BackupError> {
    let target = options.dir.clone();
    if has_entries(&target)? && !options.replace {
        return Err(BackupError::NotEmpty(target));
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BackupError::Io(io::Error::other("the target has no directory name")))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent_created = !parent.exists();
    tokio::fs::create_dir_all(&parent).await?;
    let work = parent.join(format!(".{name}.restore-{}", unique()));
    tokio::fs::create_dir(&work).await?;

    let built = build(input, encryption, &options, &work, &parent, &name, progress).await;
    match built {
        Ok(restored) => Ok(restored),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&work).await;
            if parent_created {
                // Only if still empty: never remove anything else.
                let _ = tokio::fs::remove_dir(&parent).await;
            }
            Err(e)
        }
    }
}

async fn build(
    input: impl Read + Send + 'static,
    encryption: Encryption,
    options: &RestoreOptions,
    work: &Path,
    parent: &Path,
    name: &str,
    progress: impl Fn(RestoreProgress) + Send + Sync + 'static,
) -> Result<Restored, BackupError> {
    let progress = Arc::new(progress);
    let header = {
        let (work, progress) = (work.to_path_buf(), Arc::clone(&progress));
        tokio::task::spawn_blocking(move || decrypt_into(input, &encryption, &work, &*progress))
            .await
            .map_err(|e| BackupError::Io(io::Error::other(e)))??
    };
    progress(RestoreProgress::Installing);

    let database = work.join(DATABASE_FILE);
    let address = options
        .advertise
        .clone()
        .unwrap_or_else(|| UNSET_ADDRESS.to_owned());
    let (last, membership, dropped_join_tokens) = prepare_database(&database, &address).await?;

    let replica_dir = work.join(REPLICA_DIR);
    tokio::fs::create_dir(&replica_dir).await?;
    let identity = Identity::new_cluster(FIRST_REPLICA_ID);
    identity.save(&replica_dir).await?;
    build_log(&replica_dir, last).await?;
    build_state_machine(&replica_dir, &database, last, membership).await?;
    tokio::fs::remove_file(&database).await?;

    // The one visible change: the built replica takes the target's place.
    let target = &options.dir;
    let replaced = if target.exists() {
        let aside = parent.join(format!(".{name}.replaced-{}", unique()));
        tokio::fs::rename(target, &aside).await?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = tokio::fs::rename(&replica_dir, target).await {
        if let Some(aside) = &replaced {
            // Put the old replica back: the restore changes nothing after all.
            if let Err(back) = tokio::fs::rename(aside, target).await {
                tracing::error!(
                    path = %aside.display(), error = %back,
                    "cannot move the replaced replica back; it is still there"
                );
            }
        }
        return Err(e.into());
    }
    db::sync_dir(parent).await?;
    if let Some(aside) = replaced {
        if let Err(e) = tokio::fs::remove_dir_all(&aside).await {
            tracing::warn!(path = %aside.display(), error = %e, "cannot remove the replaced replica");
        }
    }
    tracing::info!(
        cluster_id = %identity.cluster_id,
        index = last.index,
        "restored a backup as a new one-replica cluster"
    );
    Ok(Restored {
        blobs: BlobList {
            work_dir: work.to_path_buf(),
            count: header.blob_count,
        },
        header,
        cluster_id: identity.cluster_id,
        replica_id: identity.replica_id,
        address: options.advertise.clone(),
        dropped_join_tokens,
    })
}

/// Decrypts and verifies the backup into `work` (blob list and database files).
fn decrypt_into(
    input: impl Read + Send + 'static,
    encryption: &Encryption,
    work: &Path,
    progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<BackupHeader, BackupError> {
    let mut reader = open_backup(input, encryption)?;
    progress(RestoreProgress::Header(Box::new(reader.header().clone())));
    let total = reader.header().payload_bytes();
    let mut done = 0;
    let mut report = |n: u64| {
        done += n;
        progress(RestoreProgress::Bytes { done, total });
    };
    let mut blobs = io::BufWriter::new(std::fs::File::create(work.join(BLOB_LIST_FILE))?);
    reader.copy_blob_list(&mut blobs, &mut report)?;
    blobs.flush()?;
    let mut database = io::BufWriter::new(std::fs::File::create(work.join(DATABASE_FILE))?);
    reader.copy_database(&mut database, &mut report)?;
    database.flush()?;
    reader.finish()
}

/// Brings the backup's database to this Berth's schema, checks it, and makes it the new
/// cluster's: join tokens dropped, replica numbering reset, membership {1: address}.
/// Answers its last log id, the new membership and how many join tokens were dropped.
async fn prepare_database(
    path: &Path,
    address: &str,
) -> Result<(LogId, StoredMembership, u64), BackupError> {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await?;
    let prepared = prepare_connection(&mut conn, address).await;
    conn.close().await?;
    prepared
}

async fn prepare_connection(
    conn: &mut SqliteConnection,
    address: &str,
) -> Result<(LogId, StoredMembership, u64), BackupError> {
    let (check,): (String,) = sqlx::query_as("PRAGMA quick_check")
        .fetch_one(&mut *conn)
        .await?;
    if check != "ok" {
        return Err(BackupError::Damaged(format!(
            "the database fails SQLite's check: {check}"
        )));
    }
    match db::STATE_MIGRATOR.run_direct(&mut *conn).await {
        Ok(()) => {}
        Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
            return Err(BackupError::NewerSchema(version))
        }
        Err(e) => return Err(MetaError::Migrate(e).into()),
    }
    let (last, _) = read_applied_state(conn).await?;
    let last = last.ok_or_else(|| {
        BackupError::Damaged("the database records no applied log entry".to_owned())
    })?;
    let membership = StoredMembership::new(
        Some(last),
        Membership::new(
            vec![BTreeSet::from([FIRST_REPLICA_ID])],
            BTreeMap::from([(FIRST_REPLICA_ID, BasicNode::new(address))]),
        ),
    );
    let mut tx = conn.begin().await?;
    let dropped = sqlx::query("DELETE FROM join_tokens")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM settings WHERE key = ? OR substr(key, 1, length(?)) = ?")
        .bind(KEY_LAST_REPLICA_ID)
        .bind(RETIRED_PREFIX)
        .bind(RETIRED_PREFIX)
        .execute(&mut *tx)
        .await?;
    put_state(&mut tx, crate::state_machine::KEY_MEMBERSHIP, &membership).await?;
    tx.commit().await?;
    sqlx::query("PRAGMA journal_mode = DELETE")
        .execute(&mut *conn)
        .await?;
    Ok((last, membership, dropped))
}

/// An empty log, purged and committed up to `last`, with a vote in `last`'s term.
async fn build_log(dir: &Path, last: LogId) -> Result<(), BackupError> {
    let raft_err = |e: openraft::StorageError<u64>| MetaError::Raft(e.to_string());
    let mut log = LogStore::open(dir).await?;
    let written = async {
        log.save_vote(&Vote::new(last.leader_id.term, FIRST_REPLICA_ID))
            .await
            .map_err(raft_err)?;
        log.save_committed(Some(last)).await.map_err(raft_err)?;
        log.purge(last).await.map_err(raft_err)?;
        Ok::<_, MetaError>(())
    }
    .await;
    log.close().await?;
    written?;
    Ok(())
}

/// `state.db` and the current snapshot, from the prepared database.
async fn build_state_machine(
    dir: &Path,
    database: &Path,
    last: LogId,
    membership: StoredMembership,
) -> Result<(), BackupError> {
    let mut state_machine = StateMachineStore::open(dir).await?;
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: membership,
        snapshot_id: format!(
            "restored-{}-{}-{}-{}",
            last.leader_id.term,
            last.leader_id.node_id,
            last.index,
            unique()
        ),
    };
    let installed = match tokio::fs::File::open(database).await {
        Ok(file) => state_machine
            .install_snapshot(&meta, Box::new(file))
            .await
            .map_err(|e| BackupError::Meta(MetaError::Raft(e.to_string()))),
        Err(e) => Err(e.into()),
    };
    state_machine.close_connections().await?;
    installed?;
    for file in [crate::STATE_DB_FILE, crate::LOG_DB_FILE] {
        tokio::fs::File::open(dir.join(file))
            .await?
            .sync_all()
            .await?;
    }
    db::sync_dir(dir).await?;
    Ok(())
}

/// Whether `dir` exists and holds anything.
fn has_entries(dir: &Path) -> io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl MetaNode {
    /// On a restored replica's first start, when the restore was given no address: waits
    /// until it leads (it is the only voter), then records the URL it advertises in the
    /// membership, before any replica can join. Answers whether it did.
    ///
    /// # Errors
    /// [`MetaError::Raft`] when it does not lead in time or the change fails.
    pub async fn record_restored_address(&self) -> Result<bool, MetaError> {
        let id = self.identity().replica_id;
        let raft = self.raft();
        let recorded = raft
            .with_raft_state(move |st| {
                st.membership_state
                    .effective()
                    .membership()
                    .get_node(&id)
                    .map(|n| n.addr.clone())
            })
            .await
            .map_err(|e| MetaError::Raft(e.to_string()))?;
        if recorded.as_deref() != Some(UNSET_ADDRESS) {
            return Ok(false);
        }
        raft.wait(Some(LEAD_TIMEOUT))
            .metrics(
                |m| m.current_leader == Some(id),
                "the restored replica to lead",
            )
            .await
            .map_err(|e| MetaError::Raft(e.to_string()))?;
        let address = self.advertise_url().to_owned();
        raft.change_membership(
            ChangeMembers::SetNodes(BTreeMap::from([(id, BasicNode::new(&address))])),
            false,
        )
        .await
        .map_err(|e| MetaError::Raft(format!("recording the restored replica's address: {e}")))?;
        tracing::info!(id, %address, "recorded the restored replica's address");
        Ok(true)
    }
}
