//! Read queries on the local copy of the metadata (`state.db`), through a read-only pool.
//!
//! These reads see what this replica has applied, nothing more: a caller that must not miss a
//! write acknowledged elsewhere (before answering "not found", or listing) first passes
//! [`MetaNode::read_barrier`](crate::MetaNode::read_barrier). No writes here: every change goes
//! through a [`MetaCommand`](crate::MetaCommand).

mod access;
mod cache;
mod cluster;
mod gc;

pub use access::{RepositoryRecord, StoredGrant, StoredKey, TeamRecord};
pub(crate) use cache::{CacheScope, ReadCache};
pub use cluster::{ClusterCa, StoredUser};
pub use gc::{GcPlan, LinkedBlob};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use berth_oci::{Digest, RepoName, Tag};
use sqlx::sqlite::SqlitePool;

use crate::error::MetaError;

/// A manifest as stored, body included (for `GET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// Digest of `body`.
    pub digest: Digest,
    /// Media type the manifest was pushed with.
    pub media_type: String,
    /// The manifest bytes exactly as pushed.
    pub body: Bytes,
    /// The manifest's `subject`, if any.
    pub subject: Option<Digest>,
}

/// A manifest's description without its body (for `HEAD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// Digest of the manifest.
    pub digest: Digest,
    /// Media type the manifest was pushed with.
    pub media_type: String,
    /// Length of the body in bytes.
    pub size: u64,
    /// The manifest's `subject`, if any.
    pub subject: Option<Digest>,
}

/// A manifest whose `subject` is the one asked about (an entry of the referrers API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    /// Digest of the referring manifest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its artifact type, if any.
    pub artifact_type: Option<String>,
    /// Its annotations (empty when it has none).
    pub annotations: BTreeMap<String, String>,
}

/// Read-only access to the applied metadata. Cheap to clone (a pool handle). Tags,
/// manifests and blob links are served from a [`ReadCache`] the state machine keeps exact.
#[derive(Clone)]
pub struct MetaReader {
    pool: SqlitePool,
    cache: Arc<ReadCache>,
}

impl fmt::Debug for MetaReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaReader").finish_non_exhaustive()
    }
}

type ManifestRow = (String, String, Vec<u8>, Option<String>);
type ManifestInfoRow = (String, String, i64, Option<String>);
type ReferrerRow = (String, String, i64, Option<String>, Option<String>);

impl MetaReader {
    pub(crate) fn new(pool: SqlitePool) -> MetaReader {
        MetaReader {
            pool,
            cache: Arc::new(ReadCache::default()),
        }
    }

    /// Drops the cached reads an applied change may have altered (after its commit).
    pub(crate) fn invalidate(&self, scope: CacheScope<'_>) {
        self.cache.invalidate(scope);
    }

    /// The underlying pool, for tests that inspect tables no read method exposes.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool: later reads fail. Used at shutdown.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether `repo` exists (something was ever linked or pushed to it).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM repositories WHERE name = ?")
            .bind(repo.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The size of blob `digest` if it is linked to `repo`.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn blob_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        if let Some(size) = self.cache.link(repo, digest) {
            return Ok(Some(size));
        }
        let ticket = self.cache.ticket();
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT size FROM blob_links WHERE repo = ? AND digest = ?")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let size = row.map(|(size,)| to_u64(size)).transpose()?;
        if let Some(size) = size {
            self.cache.insert_link(ticket, repo, digest, size);
        }
        Ok(size)
    }

    /// Manifest `digest` of `repo`, body included.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails, [`MetaError::Corrupt`] if a stored digest does
    /// not parse.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Arc<StoredManifest>>, MetaError> {
        if let Some(found) = self.cache.manifest(repo, digest) {
            return Ok(Some(found));
        }
        let ticket = self.cache.ticket();
        let row: Option<ManifestRow> = sqlx::query_as(
            "SELECT digest, media_type, body, subject FROM manifests WHERE repo = ? AND digest = ?",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some((digest, media_type, body, subject)) = row else {
            return Ok(None);
        };
        let found = Arc::new(StoredManifest {
            digest: parse_digest(&digest)?,
            media_type,
            body: body.into(),
            subject: subject.as_deref().map(parse_digest).transpose()?,
        });
        self.cache.insert_manifest(ticket, repo, &found);
        Ok(Some(found))
    }

    /// Manifest `digest` of `repo` without its body (for `HEAD`).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails, [`MetaError::Corrupt`] if a stored value does
    /// not decode.
    pub async fn manifest_info(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestInfo>, MetaError> {
        let row: Option<ManifestInfoRow> = sqlx::query_as(
            "SELECT digest, media_type, size, subject FROM manifests WHERE repo = ? AND digest = ?",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(digest, media_type, size, subject)| {
            Ok(ManifestInfo {
                digest: parse_digest(&digest)?,
                media_type,
                size: to_u64(size)?,
                subject: subject.as_deref().map(parse_digest).transpose()?,
            })
        })
        .transpose()
    }

    /// The digest `tag` points at in `repo`.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails, [`MetaError::Corrupt`] if the stored digest does
    /// not parse.
    pub async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<Digest>, MetaError> {
        if let Some(digest) = self.cache.tag(repo, tag) {
            return Ok(Some(digest));
        }
        let ticket = self.cache.ticket();
        let row: Option<(String,)> =
            sqlx::query_as("SELECT digest FROM tags WHERE repo = ? AND tag = ?")
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let digest = row.map(|(d,)| parse_digest(&d)).transpose()?;
        if let Some(digest) = &digest {
            self.cache.insert_tag(ticket, repo, tag, digest);
        }
        Ok(digest)
    }

    /// Up to `limit` tags of `repo` in lexical (byte) order, starting after `after`
    /// (OCI end-8b pagination: `n` and `last`).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn tags(
        &self,
        repo: &RepoName,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetaError> {
        // One row holding a JSON array: sqlx hands rows over from its worker thread one at a
        // time, and a thousand hand-offs cost more than the query. Tags are never empty, so
        // `> ''` starts at the first, and the bound keeps the range scan on the index.
        let (json,): (String,) = sqlx::query_as(
            "SELECT json_group_array(tag) FROM \
             (SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3)",
        )
        .bind(repo.as_str())
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        sorted_names(&json)
    }

    /// Up to `limit` repository names in lexical (byte) order, starting after `after`
    /// (the `_catalog` listing).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn repositories(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetaError> {
        let (json,): (String,) = sqlx::query_as(
            "SELECT json_group_array(name) FROM \
             (SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2)",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        sorted_names(&json)
    }

    /// Manifests of `repo` whose subject is `subject`, ordered by digest, optionally only those
    /// of `artifact_type` (OCI end-12a/12b).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails, [`MetaError::Corrupt`] if a stored value does
    /// not decode.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>, MetaError> {
        let rows: Vec<ReferrerRow> = sqlx::query_as(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests \
             WHERE repo = ?1 AND subject = ?2 AND (?3 IS NULL OR artifact_type = ?3) \
             ORDER BY digest",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(digest, media_type, size, artifact_type, annotations)| {
                Ok(Referrer {
                    digest: parse_digest(&digest)?,
                    media_type,
                    size: to_u64(size)?,
                    artifact_type,
                    annotations: match annotations {
                        Some(json) => serde_json::from_str(&json).map_err(|e| {
                            MetaError::Corrupt(format!("annotations of {digest}: {e}"))
                        })?,
                        None => BTreeMap::new(),
                    },
                })
            })
            .collect()
    }
}

/// A JSON array of names, as `json_group_array` builds it, in byte order (SQLite's BINARY
/// collation). SQLite does not promise that an aggregate sees its subquery's order, so sort
/// here: on names already in order that is one linear pass, where `ORDER BY` inside the
/// aggregate made SQLite sort them all again in a temporary b-tree.
fn sorted_names(json: &str) -> Result<Vec<String>, MetaError> {
    let mut names: Vec<String> =
        serde_json::from_str(json).map_err(|e| MetaError::Corrupt(format!("name list: {e}")))?;
    names.sort();
    Ok(names)
}

fn parse_digest(s: &str) -> Result<Digest, MetaError> {
    Digest::parse(s).map_err(|e| MetaError::Corrupt(format!("stored digest: {e}")))
}

fn to_u64(v: i64) -> Result<u64, MetaError> {
    u64::try_from(v).map_err(|_| MetaError::Corrupt(format!("negative size {v}")))
}
