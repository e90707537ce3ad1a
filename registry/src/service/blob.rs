//! Pulling and deleting blobs. A blob is visible to a repository only through the
//! repository's link to it in the metadata; storage alone never makes it visible.

use berth_oci::{Digest, RepoName};
use berth_raft::{MetaCommand, MetaResponse, Rejection};

use super::{Error, Registry, Result};
use crate::storage::BlobReader;

/// How long a push waits for garbage collection to finish deleting the digest it links.
const GC_LINK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A blob as a repository sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobStat {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Which bytes of a blob a client asked for (`Range: bytes=...`), already parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobRange {
    /// `start-end`, both inclusive; `end` None means to the end.
    From {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: Option<u64>,
    },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl BlobRange {
    /// The `(offset, len)` this range selects in a blob of `size` bytes, or `None` when
    /// unsatisfiable (RFC 9110 §14.1.2).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            Self::From { start, end } => {
                if start >= size {
                    return None;
                }
                let last = end.map_or(size - 1, |e| e.min(size - 1));
                (last >= start).then(|| (start, last - start + 1))
            }
            Self::Suffix(0) => None,
            Self::Suffix(n) => {
                let len = n.min(size);
                (len > 0).then(|| (size - len, len))
            }
        }
    }
}

impl Registry {
    /// The blob's size if `repo` may see it. The link is checked first; a linked blob that
    /// storage lost is unknown too (the digest we serve must be of bytes we have).
    ///
    /// # Errors
    /// [`Error::BlobUnknown`], metadata or storage failures.
    #[tracing::instrument(skip(self), fields(%repo, %digest))]
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobStat> {
        let mut linked = self.meta.reader().blob_link(repo, digest).await?;
        if linked.is_none() {
            // Before answering "unknown", see everything the leader has committed.
            self.meta.read_barrier().await?;
            linked = self.meta.reader().blob_link(repo, digest).await?;
        }
        if linked.is_none() {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        let size = match self.seen.size(digest) {
            Some(size) => size,
            None => {
                let size = self
                    .blobs
                    .stat(digest)
                    .await?
                    .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
                self.seen.saw(digest, size);
                size
            }
        };
        Ok(BlobStat {
            digest: digest.clone(),
            size,
        })
    }

    /// Opens a blob, or the requested part of it, for streaming.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`], [`Error::RangeNotSatisfiable`], failures.
    pub async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<BlobRange>,
    ) -> Result<(BlobStat, Option<(u64, u64)>, BlobReader)> {
        let stat = self.stat_blob(repo, digest).await?;
        let (offset, len, partial) = match range {
            None => (0, stat.size, None),
            Some(range) => {
                let (offset, len) = range
                    .resolve(stat.size)
                    .ok_or(Error::RangeNotSatisfiable { size: stat.size })?;
                (offset, len, Some((offset, len)))
            }
        };
        let reader = self.blobs.open(digest, offset, len).await?;
        Ok((stat, partial, reader))
    }

    /// Removes the blob from `repo` (its link). The bytes stay in storage until garbage
    /// collection finds nothing references them.
    ///
    /// # Errors
    /// [`Error::BlobUnknown`] when not linked, failures.
    #[tracing::instrument(skip(self), fields(%repo, %digest))]
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let cmd = MetaCommand::UnlinkBlob {
            repo: repo.clone(),
            digest: digest.clone(),
        };
        match self.meta.propose(cmd).await? {
            MetaResponse::Ok => Ok(()),
            MetaResponse::Rejected(Rejection::BlobUnknown) => {
                Err(Error::BlobUnknown(digest.clone()))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Makes a stored, verified blob visible in `repo`.
    ///
    /// Garbage collection may be deleting the same digest from storage (see
    /// `berth_raft`'s `state_machine/gc.rs`): while it does, the link is refused and retried
    /// here for up to [`GC_LINK_WAIT`]; a link that commits after GC deleted that digest is
    /// acknowledged only if storage still holds the blob. Otherwise the bytes written before
    /// the link may be gone: the push fails with 503 and the client sends them again.
    ///
    /// # Errors
    /// [`Error::Unavailable`] as said, metadata failures.
    pub(super) async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + GC_LINK_WAIT;
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            let cmd = MetaCommand::LinkBlob {
                repo: repo.clone(),
                digest: digest.clone(),
                size,
                at_ms: super::now_ms(),
            };
            match self.meta.propose(cmd).await? {
                MetaResponse::Ok => return Ok(()),
                MetaResponse::LinkedAfterGc => {
                    return match self.blobs.stat(digest).await? {
                        Some(stored) if stored == size => Ok(()),
                        _ => {
                            tracing::warn!(%repo, %digest, "garbage collection deleted the blob while it was pushed; the client must send it again");
                            Err(Error::Unavailable)
                        }
                    };
                }
                MetaResponse::Rejected(Rejection::BlobDeleting)
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(500));
                }
                MetaResponse::Rejected(Rejection::BlobDeleting) => return Err(Error::Unavailable),
                other => return Err(unexpected(&other)),
            }
        }
    }
}

/// An answer the state machine should never give for this command: a bug, reported as an
/// internal error rather than a wrong status.
pub(super) fn unexpected(response: &MetaResponse) -> Error {
    Error::Meta(berth_raft::MetaError::Raft(format!(
        "unexpected answer: {response:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::BlobRange;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        let cases = [
            (
                BlobRange::From {
                    start: 0,
                    end: Some(9),
                },
                100,
                Some((0, 10)),
            ),
            (
                BlobRange::From {
                    start: 90,
                    end: None,
                },
                100,
                Some((90, 10)),
            ),
            (
                BlobRange::From {
                    start: 90,
                    end: Some(500),
                },
                100,
                Some((90, 10)),
            ),
            (
                BlobRange::From {
                    start: 100,
                    end: None,
                },
                100,
                None,
            ),
            (
                BlobRange::From {
                    start: 5,
                    end: Some(4),
                },
                100,
                None,
            ),
            (BlobRange::Suffix(10), 100, Some((90, 10))),
            (BlobRange::Suffix(500), 100, Some((0, 100))),
            (BlobRange::Suffix(0), 100, None),
            (
                BlobRange::From {
                    start: 0,
                    end: None,
                },
                0,
                None,
            ),
        ];
        for (range, size, want) in cases {
            assert_eq!(range.resolve(size), want, "{range:?} of {size}");
        }
    }
}
