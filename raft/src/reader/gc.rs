//! Reads for garbage collection and consistency checks: what a run would delete (dry runs),
//! the candidates left to sweep, which digests are linked, the last report.

use std::collections::BTreeMap;

use berth_oci::{Digest, RepoName};

use super::{parse_digest, to_u64, MetaReader};
use crate::error::MetaError;
use crate::state_machine::gc::{plan, KEY_GC_LAST_REPORT};

/// A digest some repositories link, with the size they were told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedBlob {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes as linked (the largest, should two links disagree).
    pub size: u64,
    /// The repositories linking it.
    pub repos: Vec<String>,
}

/// What a collect would delete from the metadata now (a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Manifests that would be deleted.
    pub manifests: Vec<(RepoName, Digest)>,
    /// How many blob links would be deleted.
    pub links: u64,
    /// Digests that would have no link left, with their sizes.
    pub candidates: Vec<(Digest, u64)>,
}

impl MetaReader {
    /// What `GcCommand::Collect { cutoff_ms, delete_untagged }` would delete if applied now.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails, [`MetaError::Corrupt`] for a bad stored value.
    pub async fn gc_plan(
        &self,
        cutoff_ms: i64,
        delete_untagged: bool,
    ) -> Result<GcPlan, MetaError> {
        let mut conn = self.pool.acquire().await?;
        let raw = plan(&mut conn, cutoff_ms, delete_untagged).await?;
        let mut doomed: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (_, digest, size) in &raw.links {
            let e = doomed.entry(digest).or_insert((0, *size));
            e.0 += 1;
        }
        let mut candidates = Vec::new();
        for (digest, (doomed_links, size)) in doomed {
            let (all,): (i64,) = sqlx::query_as("SELECT count(*) FROM blob_links WHERE digest = ?")
                .bind(digest)
                .fetch_one(&mut *conn)
                .await?;
            if all == doomed_links {
                candidates.push((parse_digest(digest)?, to_u64(size)?));
            }
        }
        let manifests = raw
            .manifests
            .iter()
            .map(|(repo, digest)| {
                let repo = RepoName::parse(repo)
                    .map_err(|e| MetaError::Corrupt(format!("stored repository name: {e}")))?;
                Ok((repo, parse_digest(digest)?))
            })
            .collect::<Result<_, MetaError>>()?;
        Ok(GcPlan {
            manifests,
            links: raw.links.len() as u64,
            candidates,
        })
    }

    /// Up to `limit` candidates that are not being deleted (`marked`, or tombstones), ordered
    /// by digest, after `after`; with their sizes.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails, [`MetaError::Corrupt`] for a bad stored value.
    pub async fn gc_candidates(
        &self,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>, MetaError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT digest, size FROM gc_candidates WHERE state <> 'deleting' \
             AND (?1 IS NULL OR digest > ?1) ORDER BY digest LIMIT ?2",
        )
        .bind(after.map(ToString::to_string))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(d, s)| Ok((parse_digest(&d)?, to_u64(s)?)))
            .collect()
    }

    /// Whether any repository links `digest`.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn digest_linked(&self, digest: &Digest) -> Result<bool, MetaError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM blob_links WHERE digest = ? LIMIT 1")
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// The candidate state of `digest` (`marked`, `deleting`, `deleted`), if it has one.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn gc_state(&self, digest: &Digest) -> Result<Option<String>, MetaError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT state FROM gc_candidates WHERE digest = ?")
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(s,)| s))
    }

    /// Up to `limit` linked digests after `after`, ordered by digest (for fsck).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails, [`MetaError::Corrupt`] for a bad stored value.
    pub async fn linked_blobs(
        &self,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<LinkedBlob>, MetaError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT digest, max(size), group_concat(repo, char(10)) FROM blob_links \
             WHERE ?1 IS NULL OR digest > ?1 GROUP BY digest ORDER BY digest LIMIT ?2",
        )
        .bind(after.map(ToString::to_string))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(d, s, repos)| {
                let mut repos: Vec<String> = repos.split('\n').map(str::to_owned).collect();
                repos.sort();
                Ok(LinkedBlob {
                    digest: parse_digest(&d)?,
                    size: to_u64(s)?,
                    repos,
                })
            })
            .collect()
    }

    /// The last finished garbage collection run's report (JSON), if any.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn gc_last_report(&self) -> Result<Option<String>, MetaError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = ?")
            .bind(KEY_GC_LAST_REPORT)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(v,)| v))
    }
}
