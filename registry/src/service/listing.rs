//! Listings answered from the metadata: tags, the catalog and referrers. Lists are read
//! after the read barrier, so a replica never lists less than the leader had committed.

use berth_oci::{Digest, RepoName};
use berth_raft::Referrer;

use super::{Error, Registry, Result};

/// One page of a lexically ordered listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The entries, in order.
    pub entries: Vec<String>,
    /// The `n` to repeat in the next page's link, when more entries follow.
    pub next: Option<u32>,
}

/// The manifests that name a subject, after an optional artifact type filter.
#[derive(Clone, Debug)]
pub struct Referrers {
    /// Their descriptors' facts.
    pub referrers: Vec<Referrer>,
    /// Whether the `artifactType` filter was applied.
    pub filtered: bool,
}

impl Registry {
    /// Tags of `repo` after `last`, at most `n` (capped) (OCI end-8a/b).
    ///
    /// # Errors
    /// [`Error::NameUnknown`], failures.
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<Page> {
        self.meta.read_barrier().await?;
        let reader = self.meta.reader();
        if !reader.repository_exists(repo).await? {
            return Err(Error::NameUnknown(repo.clone()));
        }
        let limit = self.page_size(n);
        let mut entries = reader.tags(repo, last, limit.saturating_add(1)).await?;
        Ok(page(&mut entries, limit))
    }

    /// Repositories after `last`, at most `n` (capped).
    ///
    /// # Errors
    /// Failures only.
    pub async fn list_repositories(&self, n: Option<u32>, last: Option<&str>) -> Result<Page> {
        self.meta.read_barrier().await?;
        let limit = self.page_size(n);
        let mut entries = self
            .meta
            .reader()
            .repositories(last, limit.saturating_add(1))
            .await?;
        Ok(page(&mut entries, limit))
    }

    /// Manifests in `repo` whose `subject` is `subject` (OCI end-12a/b). An unknown
    /// subject has no referrers: that is an empty list, not an error.
    ///
    /// # Errors
    /// [`Error::NameUnknown`], failures.
    pub async fn list_referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        self.meta.read_barrier().await?;
        let reader = self.meta.reader();
        if !reader.repository_exists(repo).await? {
            return Err(Error::NameUnknown(repo.clone()));
        }
        let referrers = reader.referrers(repo, subject, artifact_type).await?;
        Ok(Referrers {
            referrers,
            filtered: artifact_type.is_some(),
        })
    }

    fn page_size(&self, n: Option<u32>) -> u32 {
        n.unwrap_or(self.limits.max_page_entries)
            .min(self.limits.max_page_entries)
    }
}

/// Cuts one look-ahead entry off `entries`, which tells whether another page follows.
fn page(entries: &mut Vec<String>, limit: u32) -> Page {
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    Page {
        entries: std::mem::take(entries),
        next: (more && limit > 0).then_some(limit),
    }
}

#[cfg(test)]
mod tests {
    use super::page;

    #[test]
    fn a_look_ahead_entry_means_a_next_page() {
        let mut entries = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let p = page(&mut entries, 2);
        assert_eq!(p.entries, ["a", "b"]);
        assert_eq!(p.next, Some(2));
        let mut entries = vec!["a".to_owned()];
        let p = page(&mut entries, 2);
        assert_eq!(p.next, None);
    }
}
