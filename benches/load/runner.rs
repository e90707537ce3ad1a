//! Runs one operation many times at a fixed concurrency, bounded in count and in time,
//! recording each success's latency; prints progress to stderr. Knows nothing of HTTP.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Stop a loop after this many failed operations: the figures would mean nothing.
const MAX_ERRORS: u64 = 50;

/// How a bounded loop went.
#[derive(Debug)]
pub struct LoopResult {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Wall time from the first start to the last finish.
    pub elapsed: Duration,
    /// Latencies of the successes, sorted.
    pub latencies: Vec<Duration>,
    /// Whether the time bound ended the loop before `count` operations.
    pub timed_out: bool,
}

impl LoopResult {
    /// Successes per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency (nearest rank) in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[i].as_secs_f64() * 1e3
    }

    /// An error unless every one of `count` operations succeeded within the bound.
    ///
    /// # Errors
    /// Failures, or the time bound cut the loop short.
    pub fn complete(&self, count: u64) -> anyhow::Result<()> {
        if let Some(e) = &self.first_error {
            anyhow::bail!("{} of {count} failed; first: {e}", self.errors);
        }
        if self.ok < count {
            anyhow::bail!(
                "time bound reached after {} of {count} ({:.1} s)",
                self.ok,
                self.elapsed.as_secs_f64()
            );
        }
        Ok(())
    }
}

#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<String>,
}

/// Runs `op(i)` for `i` in `0..count` on `concurrency` tasks until all are done, `bound`
/// has passed, or too many failed.
pub async fn run_bounded<F, Fut>(
    label: &str,
    count: u64,
    concurrency: usize,
    bound: Duration,
    op: F,
) -> LoopResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Failures::default()));
    let start = Instant::now();
    let deadline = start + bound;

    let progress = {
        let (done, label) = (done.clone(), label.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {label}: {n}/{count} after {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
        })
    };

    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (op, next, done, stop, failures) = (
                op.clone(),
                next.clone(),
                done.clone(),
                stop.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut timed_out = false;
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if Instant::now() >= deadline {
                        timed_out = true;
                        break;
                    }
                    let t0 = Instant::now();
                    match op(i).await {
                        Ok(()) => {
                            latencies.push(t0.elapsed());
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let mut f = failures.lock().unwrap();
                            f.count += 1;
                            f.first.get_or_insert_with(|| format!("{e:#}"));
                            if f.count >= MAX_ERRORS {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                (latencies, timed_out)
            })
        })
        .collect();

    let mut latencies = Vec::with_capacity(count.min(1 << 20) as usize);
    let mut timed_out = false;
    for task in tasks {
        match task.await {
            Ok((l, t)) => {
                latencies.extend(l);
                timed_out |= t;
            }
            Err(e) => {
                let mut f = failures.lock().unwrap();
                f.count += 1;
                f.first.get_or_insert_with(|| format!("task failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    progress.abort();
    latencies.sort_unstable();
    let f = std::mem::take(&mut *failures.lock().unwrap());
    LoopResult {
        ok: latencies.len() as u64,
        errors: f.count,
        first_error: f.first,
        elapsed,
        latencies,
        timed_out,
    }
}
