//! Consistency check of blob storage against the metadata: every linked digest must be in
//! storage with the size it was linked with, and (deep) bytes that hash to the digest.
//!
//! Read-only: it reports, it repairs nothing. Linked digests are read a page at a time and
//! checked with bounded concurrency; a deep check streams each blob through the hasher, so
//! memory does not depend on blob sizes.

use berth_oci::{Digest, DigestHasher};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{Registry, Result};

/// Linked digests read per page.
const PAGE: u32 = 512;
/// Blobs checked at once.
const CONCURRENCY: usize = 8;

/// One linked blob that storage does not hold as linked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckProblem {
    /// The digest the metadata links.
    pub digest: String,
    /// The repositories linking it.
    pub repos: Vec<String>,
    /// The size it was linked with.
    pub expected_size: u64,
    /// The size storage has, if it has the blob.
    pub actual_size: Option<u64>,
    /// What the bytes hash to (deep checks of a blob whose digest is wrong).
    pub actual_digest: Option<String>,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    /// Linked digests checked.
    pub checked: u64,
    /// Linked blobs storage does not have.
    pub missing: Vec<FsckProblem>,
    /// Blobs whose size differs from the linked size.
    pub size_mismatch: Vec<FsckProblem>,
    /// Blobs whose bytes do not hash to their digest (deep checks only).
    pub corrupt: Vec<FsckProblem>,
    /// Whether digests were recomputed.
    pub deep: bool,
    /// How long it took.
    pub duration_ms: u64,
}

impl FsckReport {
    /// Whether anything is wrong.
    pub fn has_problems(&self) -> bool {
        !(self.missing.is_empty() && self.size_mismatch.is_empty() && self.corrupt.is_empty())
    }
}

enum Finding {
    Fine,
    Missing,
    Size(u64),
    Corrupt(Digest),
}

impl Registry {
    /// Checks every linked blob against storage (see the module documentation).
    ///
    /// # Errors
    /// Metadata failures, or storage failures other than a missing blob.
    #[tracing::instrument(skip(self))]
    pub async fn fsck(&self, deep: bool) -> Result<FsckReport> {
        let started = std::time::Instant::now();
        self.meta.read_barrier().await?;
        let reader = self.meta.reader().clone();
        let mut report = FsckReport {
            deep,
            ..FsckReport::default()
        };
        let mut after: Option<Digest> = None;
        loop {
            let page = reader.linked_blobs(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            let checks: Vec<(Digest, u64)> =
                page.iter().map(|b| (b.digest.clone(), b.size)).collect();
            let findings: Vec<Finding> = futures::stream::iter(checks)
                .map(|(digest, size)| {
                    let this = self.clone();
                    async move { this.check_blob(&digest, size, deep).await }
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            for (blob, finding) in page.into_iter().zip(findings) {
                report.checked += 1;
                let problem = |actual_size, actual_digest| FsckProblem {
                    digest: blob.digest.to_string(),
                    repos: blob.repos.clone(),
                    expected_size: blob.size,
                    actual_size,
                    actual_digest,
                };
                match finding {
                    Finding::Fine => {}
                    Finding::Missing => report.missing.push(problem(None, None)),
                    Finding::Size(n) => report.size_mismatch.push(problem(Some(n), None)),
                    Finding::Corrupt(d) => report
                        .corrupt
                        .push(problem(Some(blob.size), Some(d.to_string()))),
                }
            }
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if report.has_problems() {
            tracing::warn!(
                missing = report.missing.len(),
                size_mismatch = report.size_mismatch.len(),
                corrupt = report.corrupt.len(),
                "fsck found blobs that storage does not hold as linked"
            );
        }
        Ok(report)
    }

    async fn check_blob(&self, digest: &Digest, size: u64, deep: bool) -> Result<Finding> {
        let Some(stored) = self.blobs.stat(digest).await? else {
            return Ok(Finding::Missing);
        };
        if stored != size {
            return Ok(Finding::Size(stored));
        }
        if !deep {
            return Ok(Finding::Fine);
        }
        let reader = match self.blobs.open(digest, 0, stored).await {
            Ok(r) => r,
            Err(crate::storage::Error::BlobNotFound(_)) => return Ok(Finding::Missing),
            Err(e) => return Err(e.into()),
        };
        let mut hasher = DigestHasher::new(digest.algorithm());
        let mut bytes = std::pin::pin!(reader.into_stream());
        while let Some(chunk) = bytes.next().await {
            hasher.update(&chunk.map_err(super::Error::Body)?);
        }
        let actual = hasher.finish();
        Ok(if &actual == digest {
            Finding::Fine
        } else {
            Finding::Corrupt(actual)
        })
    }
}
