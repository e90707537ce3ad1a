//! Slowing down password guessing: failed logins are counted per account and per client
//! address; past a threshold within a window, further attempts are refused for a while that
//! doubles with each further failure (capped). In memory, per replica: a guesser who spreads
//! over replicas meets every replica's limit, and restarts forget (a deliberate trade for
//! not writing every failed login through Raft).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed within the window before attempts are refused.
const FREE_FAILURES: u32 = 5;
/// The window over which failures are counted.
const WINDOW: Duration = Duration::from_secs(300);
/// The first lockout; each further failure doubles it, up to [`MAX_LOCKOUT`].
const FIRST_LOCKOUT: Duration = Duration::from_secs(2);
const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// Entries kept at most (oldest forgotten first), so a flood cannot exhaust memory.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

/// Counters of failed logins by key (`user:NAME`, `addr:IP`).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<String, Entry>>,
}

impl LoginThrottle {
    /// A throttle with no failures recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Some(wait)` when any of `keys` is locked out now.
    pub fn check(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| entries.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a failed login for every key.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now.duration_since(e.first) < WINDOW);
        }
        for key in keys {
            let e = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                first: now,
                locked_until: None,
            });
            if now.duration_since(e.first) > WINDOW && e.locked_until.is_none_or(|u| u <= now) {
                *e = Entry {
                    failures: 0,
                    first: now,
                    locked_until: None,
                };
            }
            e.failures += 1;
            if e.failures > FREE_FAILURES {
                let doublings = (e.failures - FREE_FAILURES - 1).min(16);
                let lockout = (FIRST_LOCKOUT * 2u32.pow(doublings)).min(MAX_LOCKOUT);
                e.locked_until = Some(now + lockout);
            }
        }
    }

    /// Forgets the failures of an account after a successful login (not of the address: a
    /// guesser who also knows one password must not reset their address's count).
    pub fn succeeded(&self, account_key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(account_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_failures_are_free_then_attempts_wait_longer_and_longer() {
        let t = LoginThrottle::new();
        let keys = vec!["user:alice".to_owned(), "addr:10.0.0.1".to_owned()];
        let now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check(&keys, now), None);
            t.failed(&keys, now);
        }
        assert_eq!(t.check(&keys, now), None);
        t.failed(&keys, now);
        assert_eq!(t.check(&keys, now), Some(FIRST_LOCKOUT));
        t.failed(&keys, now);
        assert_eq!(t.check(&keys, now), Some(FIRST_LOCKOUT * 2));
        // The lockout ends.
        assert_eq!(t.check(&keys, now + MAX_LOCKOUT), None);
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES {
            t.failed(&[format!("user:u{i}"), "addr:a".to_owned()], now);
        }
        assert!(t
            .check(&["user:fresh".to_owned(), "addr:a".to_owned()], now)
            .is_some());
        assert!(t
            .check(&["user:fresh".to_owned(), "addr:b".to_owned()], now)
            .is_none());
        t.succeeded("user:u0");
        assert!(t.check(&["addr:a".to_owned()], now).is_some());
    }
}
