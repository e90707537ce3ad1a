//! Applying [`GcCommand`]s, and the gate [`MetaCommand::LinkBlob`](crate::MetaCommand) passes
//! while garbage collection runs.
//!
//! # Why this is safe without a read-only window
//!
//! Blob bytes live in shared storage, outside Raft; a blob's links live here. Garbage
//! collection deletes bytes from storage, and a push writes bytes to storage *then* links them
//! through Raft. The danger is a push that writes (or finds already stored) the bytes of a
//! digest that GC decided to delete, links it, and answers 201 while GC deletes the bytes.
//!
//! Every deletion from storage is bracketed by two commands in the Raft log:
//!
//! 1. `Claim` turns the digest's `gc_candidates` row to `deleting`, and only if no repository
//!    links it at that point of the log. While the row is `deleting`, `LinkBlob` of the digest
//!    is refused (`Rejected(BlobDeleting)`) and changes nothing: the registry waits and retries.
//! 2. GC deletes the bytes from storage, then `Release` turns the row into a `deleted`
//!    tombstone. `LinkBlob` of a tombstoned digest takes effect but answers `LinkedAfterGc`: the
//!    registry then checks that storage holds the blob before it acknowledges the push, and
//!    fails the push (the client retries it, writing the bytes again) when it does not.
//!
//! So a link that commits before the claim prevents the claim; one that would commit between
//! claim and release is refused; one that commits after the release is checked against storage
//! *after* every deletion of that run could have happened. A link can only be lost if its
//! proposal is delayed across a whole claim-delete-release and beyond the tombstone's life (an
//! hour, [`TOMBSTONE_MS`]), far beyond the write timeout.
//!
//! Only one run claims at a time: `Collect` takes a lease (`settings.gc_run`) that `Finish`
//! drops, and `Claim`/`Release` of another run are refused. Each `Claim` renews the lease. A
//! run that crashed leaves its lease to expire ([`GC_LEASE_MS`] after its last claim); the next
//! `Collect` turns its leftover `deleting` rows into tombstones (their bytes may or may not be
//! gone). A run that stalls for an hour *between* a claim and its storage deletes and then
//! resumes after another run took over is the one case this does not cover.
//!
//! Which manifests and links go is decided here, inside one apply, so that it is atomic with
//! respect to pushes: [`plan`] is the same query for a dry run (read-only) and for `Collect`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;

use crate::command::{GcCommand, MetaResponse, Rejection};

/// How long a run's lease holds without a `Finish` (a crashed run's lease expires).
pub(crate) const GC_LEASE_MS: i64 = 3_600_000;
/// How long a `deleted` tombstone makes `LinkBlob` ask for a storage check.
pub(crate) const TOMBSTONE_MS: i64 = 3_600_000;
/// `settings` key of the current run's lease.
const KEY_GC_RUN: &str = "gc_run";
/// `settings` key of the last finished run's report (JSON).
pub(crate) const KEY_GC_LAST_REPORT: &str = "gc_last_report";

#[derive(Serialize, Deserialize)]
struct Lease {
    run: String,
    at_ms: i64,
}

/// The manifests kept: every manifest when untagged ones are kept (`?2 = 0`); else the tagged,
/// the young (created at or after `?1`), the children of kept indexes and the referrers of kept
/// manifests, to a fixed point. Needs SQLite 3.34 (several recursive terms).
const KEPT_CTE: &str = "WITH RECURSIVE kept(repo, digest) AS ( \
     SELECT m.repo, m.digest FROM manifests m WHERE ?2 = 0 OR m.created_at_ms >= ?1 \
       OR EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest) \
     UNION SELECT r.repo, r.target_digest FROM manifest_refs r \
       JOIN kept k ON r.repo = k.repo AND r.manifest_digest = k.digest WHERE r.kind = 'manifest' \
     UNION SELECT m.repo, m.digest FROM manifests m \
       JOIN kept k ON m.repo = k.repo AND m.subject = k.digest ) ";

/// What a collect with these parameters deletes, as stored strings.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// `(repo, digest)` of manifests to delete.
    pub(crate) manifests: Vec<(String, String)>,
    /// `(repo, digest, size)` of blob links to delete.
    pub(crate) links: Vec<(String, String, i64)>,
}

/// Computes what `Collect { cutoff_ms, delete_untagged }` would delete, without changing
/// anything (also used by dry runs, on a read-only connection).
pub(crate) async fn plan(
    conn: &mut SqliteConnection,
    cutoff_ms: i64,
    delete_untagged: bool,
) -> Result<Plan, sqlx::Error> {
    let manifests: Vec<(String, String)> = sqlx::query_as(&format!(
        "{KEPT_CTE} SELECT m.repo, m.digest FROM manifests m WHERE NOT EXISTS \
         (SELECT 1 FROM kept k WHERE k.repo = m.repo AND k.digest = m.digest) \
         ORDER BY m.repo, m.digest"
    ))
    .bind(cutoff_ms)
    .bind(i64::from(delete_untagged))
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    let links: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "{KEPT_CTE} SELECT l.repo, l.digest, l.size FROM blob_links l \
         WHERE l.created_at_ms < ?1 AND NOT EXISTS ( \
           SELECT 1 FROM manifest_refs r JOIN kept k \
             ON k.repo = r.repo AND k.digest = r.manifest_digest \
           WHERE r.repo = l.repo AND r.target_digest = l.digest AND r.kind = 'blob') \
         ORDER BY l.repo, l.digest"
    ))
    .bind(cutoff_ms)
    .bind(i64::from(delete_untagged))
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Plan { manifests, links })
}

/// What `LinkBlob` of a digest must do given its candidate row.
pub(crate) enum LinkGate {
    /// No row, or a `marked` one (now removed): link normally.
    Link,
    /// `deleting`: refuse.
    Refuse,
    /// A tombstone: link, and tell the proposer to check storage.
    Verify,
}

/// Looks at (and for `marked`, clears) the digest's candidate row before a link.
pub(crate) async fn link_gate(
    conn: &mut SqliteConnection,
    digest: &str,
) -> Result<LinkGate, sqlx::Error> {
    let state: Option<(String,)> =
        sqlx::query_as("SELECT state FROM gc_candidates WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match state.as_ref().map(|(s,)| s.as_str()) {
        Some("deleting") => LinkGate::Refuse,
        Some("deleted") => LinkGate::Verify,
        Some(_) => {
            sqlx::query("DELETE FROM gc_candidates WHERE digest = ?")
                .bind(digest)
                .execute(&mut *conn)
                .await?;
            LinkGate::Link
        }
        None => LinkGate::Link,
    })
}

pub(super) async fn apply(
    conn: &mut SqliteConnection,
    cmd: &GcCommand,
) -> Result<MetaResponse, sqlx::Error> {
    match cmd {
        GcCommand::Collect {
            run,
            cutoff_ms,
            delete_untagged,
            at_ms,
        } => collect(conn, run, *cutoff_ms, *delete_untagged, *at_ms).await,
        GcCommand::Claim { run, blobs, at_ms } => {
            if !is_current(conn, run).await? {
                return Ok(MetaResponse::Rejected(Rejection::GcSuperseded));
            }
            // A run that keeps claiming keeps its lease: only a run silent for an hour expires.
            put_lease(conn, run, *at_ms).await?;
            let mut claimed = Vec::new();
            for (digest, size) in blobs {
                let key = digest.to_string();
                let linked: Option<(i64,)> =
                    sqlx::query_as("SELECT 1 FROM blob_links WHERE digest = ? LIMIT 1")
                        .bind(&key)
                        .fetch_optional(&mut *conn)
                        .await?;
                if linked.is_some() {
                    continue;
                }
                let done = sqlx::query(
                    "INSERT INTO gc_candidates (digest, state, size, marked_at_ms) \
                     VALUES (?, 'deleting', ?, ?) ON CONFLICT (digest) DO UPDATE \
                     SET state = 'deleting', size = excluded.size, marked_at_ms = excluded.marked_at_ms \
                     WHERE state <> 'deleting'",
                )
                .bind(&key)
                .bind(super::size_i64(*size)?)
                .bind(at_ms)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() > 0 {
                    claimed.push(digest.clone());
                }
            }
            Ok(MetaResponse::GcClaimed(claimed))
        }
        GcCommand::Release {
            run,
            digests,
            at_ms,
        } => {
            if !is_current(conn, run).await? {
                return Ok(MetaResponse::Rejected(Rejection::GcSuperseded));
            }
            for digest in digests {
                sqlx::query(
                    "UPDATE gc_candidates SET state = 'deleted', marked_at_ms = ? \
                     WHERE digest = ? AND state = 'deleting'",
                )
                .bind(at_ms)
                .bind(digest.to_string())
                .execute(&mut *conn)
                .await?;
            }
            Ok(MetaResponse::Ok)
        }
        GcCommand::Finish { run, report } => {
            if !is_current(conn, run).await? {
                return Ok(MetaResponse::Rejected(Rejection::GcSuperseded));
            }
            sqlx::query("DELETE FROM settings WHERE key = ?")
                .bind(KEY_GC_RUN)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(KEY_GC_LAST_REPORT)
            .bind(report)
            .execute(&mut *conn)
            .await?;
            Ok(MetaResponse::Ok)
        }
    }
}

async fn lease(conn: &mut SqliteConnection) -> Result<Option<Lease>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = ?")
        .bind(KEY_GC_RUN)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|(v,)| serde_json::from_str(&v).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

async fn put_lease(conn: &mut SqliteConnection, run: &str, at_ms: i64) -> Result<(), sqlx::Error> {
    let lease = serde_json::to_string(&Lease {
        run: run.to_owned(),
        at_ms,
    })
    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(KEY_GC_RUN)
    .bind(lease)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn is_current(conn: &mut SqliteConnection, run: &str) -> Result<bool, sqlx::Error> {
    Ok(lease(conn).await?.is_some_and(|l| l.run == run))
}

async fn collect(
    conn: &mut SqliteConnection,
    run: &str,
    cutoff_ms: i64,
    delete_untagged: bool,
    at_ms: i64,
) -> Result<MetaResponse, sqlx::Error> {
    if let Some(held) = lease(conn).await? {
        if held.run != run && held.at_ms + GC_LEASE_MS > at_ms {
            return Ok(MetaResponse::Rejected(Rejection::GcBusy));
        }
    }
    put_lease(conn, run, at_ms).await?;
    // A crashed run's claims: their bytes may be gone, so linkers must check.
    sqlx::query(
        "UPDATE gc_candidates SET state = 'deleted', marked_at_ms = ? WHERE state = 'deleting'",
    )
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM gc_candidates WHERE state = 'deleted' AND marked_at_ms < ?")
        .bind(at_ms - TOMBSTONE_MS)
        .execute(&mut *conn)
        .await?;

    let plan = plan(conn, cutoff_ms, delete_untagged).await?;
    for (repo, digest) in &plan.manifests {
        for sql in [
            "DELETE FROM manifests WHERE repo = ? AND digest = ?",
            "DELETE FROM tags WHERE repo = ? AND digest = ?",
            "DELETE FROM manifest_refs WHERE repo = ? AND manifest_digest = ?",
        ] {
            sqlx::query(sql)
                .bind(repo)
                .bind(digest)
                .execute(&mut *conn)
                .await?;
        }
    }
    let mut sizes: BTreeMap<&str, i64> = BTreeMap::new();
    for (repo, digest, size) in &plan.links {
        sqlx::query("DELETE FROM blob_links WHERE repo = ? AND digest = ?")
            .bind(repo)
            .bind(digest)
            .execute(&mut *conn)
            .await?;
        sizes.insert(digest, *size);
    }
    let mut candidates = 0u64;
    for (digest, size) in sizes {
        // A tombstone stays one (DO NOTHING): a late linker of it must still check storage;
        // the run's candidate sweep takes tombstones as well as marked rows.
        let linked: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM blob_links WHERE digest = ? LIMIT 1")
                .bind(digest)
                .fetch_optional(&mut *conn)
                .await?;
        if linked.is_some() {
            continue;
        }
        sqlx::query(
            "INSERT INTO gc_candidates (digest, state, size, marked_at_ms) VALUES (?, 'marked', ?, ?) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(size)
        .bind(at_ms)
        .execute(&mut *conn)
        .await?;
        candidates += 1;
    }
    Ok(MetaResponse::GcCollected {
        manifests_deleted: plan.manifests.len() as u64,
        links_deleted: plan.links.len() as u64,
        candidates,
    })
}
