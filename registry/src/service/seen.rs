//! Blobs storage was recently seen to hold, so that a HEAD or GET of a linked blob does not
//! ask storage again each time (a `stat` costs a trip to a blocking thread, a `HEAD` on S3 a
//! round trip). Only consulted after the repository's link was found: a linked blob is not
//! one garbage collection deletes, so an entry can be wrong only if the bytes were lost
//! behind the registry's back, and then only for [`TTL`]; a GET still fails cleanly when it
//! opens them. Uploads and garbage collection always ask storage itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_oci::Digest;

/// How long a sighting is trusted.
const TTL: Duration = Duration::from_secs(5);
/// Sightings kept at most; past it the map starts over (each entry is about 150 bytes).
const MAX_ENTRIES: usize = 65_536;

/// Digest → (size in storage, when seen).
#[derive(Debug, Default)]
pub(crate) struct SeenInStorage {
    seen: Mutex<HashMap<Digest, (u64, Instant)>>,
}

impl SeenInStorage {
    /// The size storage had for `digest`, if seen within the TTL.
    pub(crate) fn size(&self, digest: &Digest) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (size, at) = seen.get(digest)?;
        (at.elapsed() < TTL).then_some(*size)
    }

    /// Storage has `digest` with `size` bytes, now.
    pub(crate) fn saw(&self, digest: &Digest, size: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ENTRIES {
            seen.clear();
        }
        seen.insert(digest.clone(), (size, Instant::now()));
    }

    /// Storage no longer has `digest` (garbage collection on this replica deleted it).
    pub(crate) fn forget(&self, digest: &Digest) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sighting_is_served_then_forgotten() {
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let seen = SeenInStorage::default();
        assert_eq!(seen.size(&d), None);
        seen.saw(&d, 7);
        assert_eq!(seen.size(&d), Some(7));
        seen.forget(&d);
        assert_eq!(seen.size(&d), None);
    }

    #[test]
    fn a_stale_sighting_is_not_served() {
        let d = Digest::parse(&format!("sha256:{}", "cd".repeat(32))).unwrap();
        let seen = SeenInStorage::default();
        seen.saw(&d, 7);
        let old = Instant::now().checked_sub(TTL + Duration::from_millis(1));
        if let Some(old) = old {
            seen.seen.lock().unwrap().insert(d.clone(), (7, old));
            assert_eq!(seen.size(&d), None);
        }
    }
}
