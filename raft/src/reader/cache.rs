//! An in-memory copy of the hottest reads (tag → digest, manifest by digest, blob link size),
//! kept exact by the state machine: every applied change that could alter one of them drops
//! the entries of its repository (or all of them) right after its transaction commits.
//!
//! Why: a read through sqlx crosses to the connection's worker thread and back, and on two
//! cores those wake-ups, not SQLite, were most of the CPU of a manifest GET or blob HEAD.
//!
//! No stale entry can be inserted: a reader notes the cache's epoch before its query and
//! inserts only if no invalidation happened since. An invalidation runs after the commit, so
//! a query that saw the old row started before it and its result is refused; a query that
//! started after the bump sees the new row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_oci::{Digest, RepoName, Tag};

use super::StoredManifest;

/// Bytes of cached manifest bodies and entries beyond which the cache starts over.
const DEFAULT_CAPACITY_BYTES: usize = 64 * 1024 * 1024;
/// What an entry costs beside a manifest's body (keys, digest strings, map overhead).
const ENTRY_OVERHEAD_BYTES: usize = 256;

/// What an applied command can change among the cached reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheScope<'a> {
    /// Nothing cached (users, teams, cluster settings).
    Nothing,
    /// Tags, manifests or links of this repository only.
    Repository(&'a RepoName),
    /// Possibly anything (garbage collection, repository deletion, a snapshot).
    Everything,
}

/// Where a reader stands: an insert is taken only if the cache has not been invalidated
/// since the ticket was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// The cached reads (see the module comment).
#[derive(Debug)]
pub(crate) struct ReadCache {
    inner: Mutex<Inner>,
    capacity_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    epoch: u64,
    bytes: usize,
    repos: HashMap<RepoName, RepoEntries>,
}

#[derive(Debug, Default)]
struct RepoEntries {
    tags: HashMap<Tag, Digest>,
    manifests: HashMap<Digest, Arc<StoredManifest>>,
    links: HashMap<Digest, u64>,
}

impl Default for ReadCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY_BYTES)
    }
}

impl ReadCache {
    pub(crate) fn with_capacity(capacity_bytes: usize) -> Self {
        ReadCache {
            inner: Mutex::new(Inner::default()),
            capacity_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-made entry that matters: at worst
        // an entry is missing. Keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Taken before a query whose result may be inserted.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.lock().epoch)
    }

    /// Drops what `scope` may have changed. Called after the change is committed.
    pub(crate) fn invalidate(&self, scope: CacheScope<'_>) {
        let mut inner = self.lock();
        match scope {
            CacheScope::Nothing => return,
            CacheScope::Repository(repo) => {
                if let Some(gone) = inner.repos.remove(repo) {
                    inner.bytes = inner.bytes.saturating_sub(gone.weight());
                }
            }
            CacheScope::Everything => {
                inner.repos.clear();
                inner.bytes = 0;
            }
        }
        inner.epoch += 1;
    }

    pub(crate) fn tag(&self, repo: &RepoName, tag: &Tag) -> Option<Digest> {
        self.lock().repos.get(repo)?.tags.get(tag).cloned()
    }

    pub(crate) fn manifest(&self, repo: &RepoName, digest: &Digest) -> Option<Arc<StoredManifest>> {
        self.lock().repos.get(repo)?.manifests.get(digest).cloned()
    }

    pub(crate) fn link(&self, repo: &RepoName, digest: &Digest) -> Option<u64> {
        self.lock().repos.get(repo)?.links.get(digest).copied()
    }

    pub(crate) fn insert_tag(&self, ticket: Ticket, repo: &RepoName, tag: &Tag, digest: &Digest) {
        self.insert(ticket, repo, ENTRY_OVERHEAD_BYTES, |entries| {
            entries.tags.insert(tag.clone(), digest.clone()).is_none()
        });
    }

    pub(crate) fn insert_manifest(
        &self,
        ticket: Ticket,
        repo: &RepoName,
        manifest: &Arc<StoredManifest>,
    ) {
        let weight = manifest.body.len() + ENTRY_OVERHEAD_BYTES;
        self.insert(ticket, repo, weight, |entries| {
            entries
                .manifests
                .insert(manifest.digest.clone(), Arc::clone(manifest))
                .is_none()
        });
    }

    pub(crate) fn insert_link(&self, ticket: Ticket, repo: &RepoName, digest: &Digest, size: u64) {
        self.insert(ticket, repo, ENTRY_OVERHEAD_BYTES, |entries| {
            entries.links.insert(digest.clone(), size).is_none()
        });
    }

    /// Runs `put` (which says whether it added an entry) unless the ticket is stale. Past the
    /// capacity the cache starts over: simpler than an eviction order, and a working set that
    /// does not fit is served by SQLite as before.
    fn insert(
        &self,
        ticket: Ticket,
        repo: &RepoName,
        weight: usize,
        put: impl FnOnce(&mut RepoEntries) -> bool,
    ) {
        if weight > self.capacity_bytes {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != ticket.0 {
            return;
        }
        if inner.bytes + weight > self.capacity_bytes {
            inner.repos.clear();
            inner.bytes = 0;
        }
        if put(inner.repos.entry(repo.clone()).or_default()) {
            inner.bytes += weight;
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl RepoEntries {
    fn weight(&self) -> usize {
        let bodies: usize = self.manifests.values().map(|m| m.body.len()).sum();
        bodies + ENTRY_OVERHEAD_BYTES * (self.tags.len() + self.manifests.len() + self.links.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", hex_of(n))).unwrap()
    }

    fn hex_of(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn manifest(n: u8, len: usize) -> Arc<StoredManifest> {
        Arc::new(StoredManifest {
            digest: digest(n),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            body: vec![b'x'; len].into(),
            subject: None,
        })
    }

    #[test]
    fn entries_are_served_until_their_repository_changes() {
        let cache = ReadCache::default();
        let (a, b) = (repo("a"), repo("b"));
        let tag = Tag::parse("latest").unwrap();
        let t = cache.ticket();
        cache.insert_tag(t, &a, &tag, &digest(1));
        cache.insert_link(t, &b, &digest(2), 42);
        assert_eq!(cache.tag(&a, &tag), Some(digest(1)));
        assert_eq!(cache.link(&b, &digest(2)), Some(42));

        cache.invalidate(CacheScope::Repository(&a));
        assert_eq!(cache.tag(&a, &tag), None);
        assert_eq!(
            cache.link(&b, &digest(2)),
            Some(42),
            "other repositories stay"
        );

        cache.invalidate(CacheScope::Everything);
        assert_eq!(cache.link(&b, &digest(2)), None);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_result_read_before_an_invalidation_is_not_inserted() {
        let cache = ReadCache::default();
        let a = repo("a");
        let before = cache.ticket();
        // A change to another repository still refuses it: the ticket is global.
        cache.invalidate(CacheScope::Repository(&repo("other")));
        cache.insert_link(before, &a, &digest(1), 1);
        assert_eq!(cache.link(&a, &digest(1)), None);

        let after = cache.ticket();
        cache.insert_link(after, &a, &digest(1), 1);
        assert_eq!(cache.link(&a, &digest(1)), Some(1));

        cache.invalidate(CacheScope::Nothing);
        cache.insert_link(after, &a, &digest(2), 2);
        assert_eq!(
            cache.link(&a, &digest(2)),
            Some(2),
            "a change to nothing cached does not stale tickets"
        );
    }

    #[test]
    fn the_cache_starts_over_past_its_capacity() {
        let cache = ReadCache::with_capacity(4 * 1024);
        let a = repo("a");
        let t = cache.ticket();
        cache.insert_manifest(t, &a, &manifest(1, 3000));
        assert!(cache.manifest(&a, &digest(1)).is_some());
        cache.insert_manifest(t, &a, &manifest(2, 3000));
        assert!(cache.manifest(&a, &digest(1)).is_none());
        assert!(cache.manifest(&a, &digest(2)).is_some());
        assert!(cache.bytes() <= 4 * 1024);

        cache.insert_manifest(t, &a, &manifest(3, 8000));
        assert!(
            cache.manifest(&a, &digest(3)).is_none(),
            "larger than the whole cache: not kept"
        );
        assert!(cache.manifest(&a, &digest(2)).is_some());
    }
}
