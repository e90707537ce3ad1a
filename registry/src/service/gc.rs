//! Online garbage collection: removes the manifests and blobs nothing references, and the
//! uploads abandoned for too long, while pushes and pulls go on.
//!
//! A run has three steps; the reasoning about races lives beside the state machine
//! (`berth_raft`, `state_machine/gc.rs`):
//!
//! 1. **Collect** (one Raft command, atomic): deletes the manifests the untagged policy lets go
//!    and the blob links older than the grace cutoff that no remaining manifest references;
//!    digests left with no link are marked as candidates.
//! 2. **Sweep** storage, in batches of [`BATCH`]: first the candidates, then every blob the
//!    streamed storage listing shows that no repository links and that storage wrote before
//!    the cutoff (a crashed push, a deleted repository, a `DELETE` of a blob). Each batch is
//!    claimed through Raft (from then on a push of those digests waits), deleted from storage
//!    with bounded concurrency, then released. Memory stays bounded by the batch size.
//! 3. **Uploads** started before `upload_max_age` are removed (S3: multipart uploads aborted).
//!
//! The grace period protects what a push has written but not yet linked or referenced:
//! blobs in storage are judged by their modification time, links by their creation time,
//! untagged manifests by theirs. A dry run computes the same from a read-only view and
//! changes nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use berth_oci::Digest;
use berth_raft::{GcCommand, MetaCommand, MetaResponse, Rejection};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::blob::unexpected;
use super::{Error, Registry, Result};

/// Digests claimed (and deleted) per Raft round trip.
const BATCH: usize = 256;

/// How one run behaves.
#[derive(Clone, Copy, Debug)]
pub struct GcOptions {
    /// Only report what would go.
    pub dry_run: bool,
    /// Anything written, linked or pushed more recently than this is kept.
    pub grace: Duration,
    /// Whether untagged manifests (not children of a kept index, not referrers of a kept
    /// manifest) are deleted.
    pub delete_untagged: bool,
    /// Uploads started longer ago than this are removed.
    pub upload_max_age: Duration,
    /// Storage deletions in flight at once.
    pub concurrency: usize,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            grace: Duration::from_secs(3600),
            delete_untagged: false,
            upload_max_age: Duration::from_secs(24 * 3600),
            concurrency: 16,
        }
    }
}

/// What a run did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Manifests deleted.
    pub manifests_deleted: u64,
    /// Blob links deleted from repositories.
    pub links_deleted: u64,
    /// Blobs deleted from storage.
    pub blobs_deleted: u64,
    /// Bytes of the blobs deleted.
    pub bytes_freed: u64,
    /// Abandoned uploads removed.
    pub uploads_removed: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// When the run started (ms since the epoch).
    pub started_at_ms: i64,
    /// How long it took.
    pub duration_ms: u64,
}

impl Registry {
    /// Runs garbage collection once (see the module documentation).
    ///
    /// # Errors
    /// [`Error::Conflict`] while another run holds the lease; metadata or storage failures
    /// (a run that fails part way leaves nothing inconsistent: the next run carries on).
    #[tracing::instrument(skip(self), fields(dry_run = opts.dry_run))]
    pub async fn collect_garbage(&self, opts: GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        let now = super::now_ms();
        let cutoff_ms = now.saturating_sub(millis(opts.grace));
        let upload_cutoff_ms = now.saturating_sub(millis(opts.upload_max_age));
        let mut report = GcReport {
            dry_run: opts.dry_run,
            started_at_ms: now,
            ..GcReport::default()
        };
        if opts.dry_run {
            self.plan_garbage(&mut report, cutoff_ms, opts.delete_untagged)
                .await?;
        } else {
            let run = uuid::Uuid::new_v4().to_string();
            let collected = self
                .meta
                .propose(MetaCommand::Gc(GcCommand::Collect {
                    run: run.clone(),
                    cutoff_ms,
                    delete_untagged: opts.delete_untagged,
                    at_ms: now,
                }))
                .await?;
            match collected {
                MetaResponse::GcCollected {
                    manifests_deleted,
                    links_deleted,
                    ..
                } => {
                    report.manifests_deleted = manifests_deleted;
                    report.links_deleted = links_deleted;
                }
                MetaResponse::Rejected(Rejection::GcBusy) => {
                    return Err(Error::Conflict(
                        "another garbage collection is running".into(),
                    ))
                }
                other => return Err(unexpected(&other)),
            }
            let swept = self.sweep(&run, cutoff_ms, opts, &mut report).await;
            let uploads = if swept.is_ok() {
                self.uploads.remove_abandoned(upload_cutoff_ms, false).await
            } else {
                Ok(0)
            };
            report.uploads_removed = *uploads.as_ref().unwrap_or(&0);
            report.duration_ms = elapsed_ms(started);
            let finished = self.finish_run(&run, &report).await;
            swept?;
            uploads?;
            finished?;
        }
        if opts.dry_run {
            report.uploads_removed = self
                .uploads
                .remove_abandoned(upload_cutoff_ms, true)
                .await?;
            report.duration_ms = elapsed_ms(started);
        }
        tracing::info!(
            manifests_deleted = report.manifests_deleted,
            links_deleted = report.links_deleted,
            blobs_deleted = report.blobs_deleted,
            bytes_freed = report.bytes_freed,
            uploads_removed = report.uploads_removed,
            dry_run = report.dry_run,
            duration_ms = report.duration_ms,
            "garbage collection finished"
        );
        Ok(report)
    }

    /// The last finished run's report, as any replica knows it.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn last_gc_report(&self) -> Result<Option<GcReport>> {
        self.meta.read_barrier().await?;
        let Some(json) = self.meta.reader().gc_last_report().await? else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| Error::Meta(berth_raft::MetaError::Corrupt(e.to_string())))
    }

    /// Fills a dry run's report from the metadata and the storage listing.
    async fn plan_garbage(
        &self,
        report: &mut GcReport,
        cutoff_ms: i64,
        delete_untagged: bool,
    ) -> Result<()> {
        self.meta.read_barrier().await?;
        let reader = self.meta.reader();
        let plan = reader.gc_plan(cutoff_ms, delete_untagged).await?;
        report.manifests_deleted = plan.manifests.len() as u64;
        report.links_deleted = plan.links;
        let mut counted: HashSet<Digest> = HashSet::new();
        for (digest, size) in plan.candidates {
            if self.blobs.stat(&digest).await?.is_some() {
                report.blobs_deleted += 1;
                report.bytes_freed += size;
            }
            counted.insert(digest);
        }
        let mut listing = self.blobs.list();
        while let Some(entry) = listing.try_next().await? {
            if entry.modified_ms.is_none_or(|t| t >= cutoff_ms) || counted.contains(&entry.digest) {
                continue;
            }
            if !reader.digest_linked(&entry.digest).await? {
                report.blobs_deleted += 1;
                report.bytes_freed += entry.size;
            }
        }
        Ok(())
    }

    /// Step 2: the candidates, then the storage listing, batch by batch.
    async fn sweep(
        &self,
        run: &str,
        cutoff_ms: i64,
        opts: GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        self.meta.read_barrier().await?;
        let reader = self.meta.reader().clone();
        let mut after: Option<Digest> = None;
        loop {
            let page = reader
                .gc_candidates(after.as_ref(), u32::try_from(BATCH).unwrap_or(256))
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            self.delete_batch(run, page, false, opts.concurrency, report)
                .await?;
        }
        let mut listing = self.blobs.list();
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(entry) = listing.try_next().await? {
            // No modification time: cannot tell it is old enough, so it stays.
            if entry.modified_ms.is_none_or(|t| t >= cutoff_ms) {
                continue;
            }
            if reader.digest_linked(&entry.digest).await? {
                continue;
            }
            batch.push((entry.digest, entry.size));
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                self.delete_batch(run, full, true, opts.concurrency, report)
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.delete_batch(run, batch, true, opts.concurrency, report)
                .await?;
        }
        Ok(())
    }

    /// Claims a batch, deletes what was claimed from storage in parallel, releases it.
    /// `listed`: the blobs were just seen in the storage listing with these sizes, so they are
    /// deleted in bulk; otherwise (candidates from the metadata, perhaps gone already) each is
    /// looked at first, so that only bytes actually freed are counted.
    async fn delete_batch(
        &self,
        run: &str,
        blobs: Vec<(Digest, u64)>,
        listed: bool,
        concurrency: usize,
        report: &mut GcReport,
    ) -> Result<()> {
        let sizes: std::collections::HashMap<Digest, u64> = if listed {
            blobs.iter().cloned().collect()
        } else {
            std::collections::HashMap::new()
        };
        let claimed = match self
            .meta
            .propose(MetaCommand::Gc(GcCommand::Claim {
                run: run.to_owned(),
                blobs,
                at_ms: super::now_ms(),
            }))
            .await?
        {
            MetaResponse::GcClaimed(claimed) => claimed,
            MetaResponse::Rejected(Rejection::GcSuperseded) => {
                return Err(Error::Conflict(
                    "this garbage collection run was superseded".into(),
                ))
            }
            other => return Err(unexpected(&other)),
        };
        if claimed.is_empty() {
            return Ok(());
        }
        // Nothing links a claimed digest, so no pull reaches the sighting; forgotten anyway so
        // that it is not trusted if the digest is linked again after the delete.
        for digest in &claimed {
            self.seen.forget(digest);
        }
        if listed {
            let deleted = self.blobs.delete_many(&claimed, concurrency).await;
            self.release(run, claimed.clone()).await?;
            deleted?;
            for digest in &claimed {
                report.blobs_deleted += 1;
                report.bytes_freed += sizes.get(digest).copied().unwrap_or(0);
            }
            return Ok(());
        }
        let deleted: Vec<Result<Option<u64>>> = futures::stream::iter(claimed.clone())
            .map(|digest| {
                let blobs = self.blobs.clone();
                async move {
                    let Some(size) = blobs.stat(&digest).await? else {
                        return Ok(None);
                    };
                    blobs.delete(&digest).await?;
                    Ok(Some(size))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        // Release even after a failure: a claim left behind would hold pushes of those
        // digests until the lease expires.
        self.release(run, claimed).await?;
        for outcome in deleted {
            if let Some(size) = outcome? {
                report.blobs_deleted += 1;
                report.bytes_freed += size;
            }
        }
        Ok(())
    }

    async fn release(&self, run: &str, digests: Vec<Digest>) -> Result<()> {
        let cmd = MetaCommand::Gc(GcCommand::Release {
            run: run.to_owned(),
            digests,
            at_ms: super::now_ms(),
        });
        match self.meta.propose(cmd).await? {
            MetaResponse::Ok => Ok(()),
            MetaResponse::Rejected(Rejection::GcSuperseded) => Err(Error::Conflict(
                "this garbage collection run was superseded".into(),
            )),
            other => Err(unexpected(&other)),
        }
    }

    async fn finish_run(&self, run: &str, report: &GcReport) -> Result<()> {
        let cmd = MetaCommand::Gc(GcCommand::Finish {
            run: run.to_owned(),
            report: serde_json::to_string(report)
                .map_err(|e| Error::Meta(berth_raft::MetaError::Corrupt(e.to_string())))?,
        });
        match self.meta.propose(cmd).await? {
            MetaResponse::Ok | MetaResponse::Rejected(Rejection::GcSuperseded) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    //! The race between a GC deleting a blob and a push of the same bytes, driven step by
    //! step: the GC's claim, storage delete and release are issued by hand around a push.

    use std::time::Duration;

    use berth_oci::{Digest, RepoName};
    use berth_raft::{GcCommand, MetaCommand, MetaNode, MetaResponse, NodeConfig, StartMode};
    use bytes::Bytes;

    use crate::service::{Error, Limits, Registry};
    use crate::storage::Storage;

    const BYTES: &[u8] = b"a layer that GC is deleting";

    struct Fixture {
        _dir: tempfile::TempDir,
        registry: Registry,
        storage: Storage,
        digest: Digest,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaNode::start(
            NodeConfig {
                dir: dir.path().join("raft"),
                advertise_url: "http://127.0.0.1:9".to_owned(),
                heartbeat_ms: 50,
                election_timeout_min_ms: 150,
                election_timeout_max_ms: 300,
                snapshot_after_logs: 10_000,
                logs_kept_after_snapshot: 100,
                write_timeout_ms: 10_000,
                peer_tls: berth_raft::PeerTls::Off,
            },
            StartMode::Create,
        )
        .await
        .unwrap();
        let storage = Storage::directory(dir.path().join("storage")).unwrap();
        let registry = Registry::new(
            meta,
            storage.blobs().clone(),
            storage.uploads().clone(),
            Limits::default(),
        );
        let digest = Digest::sha256_of(BYTES);
        // Garbage: pushed, then unlinked.
        registry
            .put_blob(&repo("old"), &digest, body())
            .await
            .unwrap();
        registry.delete_blob(&repo("old"), &digest).await.unwrap();
        Fixture {
            _dir: dir,
            registry,
            storage,
            digest,
        }
    }

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    fn body() -> futures::stream::Iter<std::vec::IntoIter<std::io::Result<Bytes>>> {
        futures::stream::iter(vec![Ok(Bytes::from_static(BYTES))])
    }

    async fn gc(f: &Fixture, cmd: GcCommand) -> MetaResponse {
        f.registry.meta.propose(MetaCommand::Gc(cmd)).await.unwrap()
    }

    /// Collects (links older than `cutoff_ms` go), then claims the fixture's digest.
    async fn claim(f: &Fixture, cutoff_ms: i64) -> MetaResponse {
        let now = crate::service::now_ms();
        gc(
            f,
            GcCommand::Collect {
                run: "run".into(),
                cutoff_ms,
                delete_untagged: false,
                at_ms: now,
            },
        )
        .await;
        gc(
            f,
            GcCommand::Claim {
                run: "run".into(),
                blobs: vec![(f.digest.clone(), BYTES.len() as u64)],
                at_ms: now,
            },
        )
        .await
    }

    async fn release(f: &Fixture) {
        let released = gc(
            f,
            GcCommand::Release {
                run: "run".into(),
                digests: vec![f.digest.clone()],
                at_ms: crate::service::now_ms(),
            },
        )
        .await;
        assert_eq!(released, MetaResponse::Ok);
    }

    fn spawn_push(f: &Fixture) -> tokio::task::JoinHandle<crate::service::Result<u64>> {
        let (registry, digest) = (f.registry.clone(), f.digest.clone());
        tokio::spawn(async move { registry.put_blob(&repo("new"), &digest, body()).await })
    }

    #[tokio::test]
    async fn a_push_that_stored_the_bytes_before_gc_deleted_them_is_not_acknowledged() {
        let f = fixture().await;
        let now = crate::service::now_ms();
        assert_eq!(
            claim(&f, now).await,
            MetaResponse::GcClaimed(vec![f.digest.clone()])
        );
        // The push finds the bytes stored, then waits: its link is refused while claimed.
        let push = spawn_push(&f);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !push.is_finished(),
            "the link must wait for the claim to end"
        );
        // GC deletes the bytes the push relied on, then releases.
        f.storage.blobs().delete(&f.digest).await.unwrap();
        release(&f).await;
        assert!(matches!(push.await.unwrap(), Err(Error::Unavailable)));
        // The client retries the push: now it is stored, linked and served.
        f.registry
            .put_blob(&repo("new"), &f.digest, body())
            .await
            .unwrap();
        let stat = f.registry.stat_blob(&repo("new"), &f.digest).await.unwrap();
        assert_eq!(stat.size, BYTES.len() as u64);
    }

    #[tokio::test]
    async fn a_push_that_stores_the_bytes_after_gc_deleted_them_succeeds() {
        let f = fixture().await;
        let now = crate::service::now_ms();
        assert_eq!(
            claim(&f, now).await,
            MetaResponse::GcClaimed(vec![f.digest.clone()])
        );
        f.storage.blobs().delete(&f.digest).await.unwrap();
        let push = spawn_push(&f);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !push.is_finished(),
            "the link must wait for the claim to end"
        );
        release(&f).await;
        assert_eq!(push.await.unwrap().unwrap(), BYTES.len() as u64);
        let stat = f.registry.stat_blob(&repo("new"), &f.digest).await.unwrap();
        assert_eq!(stat.size, BYTES.len() as u64);
    }

    #[tokio::test]
    async fn a_push_linked_before_the_claim_keeps_the_blob() {
        let f = fixture().await;
        f.registry
            .put_blob(&repo("new"), &f.digest, body())
            .await
            .unwrap();
        // Linked within the grace period: the collect keeps the link, the claim skips it.
        assert_eq!(claim(&f, 0).await, MetaResponse::GcClaimed(vec![]));
        // A whole run (default grace) leaves it alone too, once the lease is free.
        let report = f
            .registry
            .collect_garbage(super::GcOptions::default())
            .await;
        assert!(
            matches!(report, Err(Error::Conflict(_))),
            "run holds the lease"
        );
        gc(
            &f,
            GcCommand::Finish {
                run: "run".into(),
                report: "{}".into(),
            },
        )
        .await;
        let report = f
            .registry
            .collect_garbage(super::GcOptions::default())
            .await
            .unwrap();
        assert_eq!(report.blobs_deleted, 0);
        assert_eq!(report.links_deleted, 0);
        assert!(f.registry.stat_blob(&repo("new"), &f.digest).await.is_ok());
    }
}
