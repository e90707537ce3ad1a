//! State-machine `apply` of 1,000 commands (a LinkBlob + PutManifest mix) on a temp-file SQLite
//! database: once as one batch (one transaction), once as 1,000 batches of one entry (one
//! transaction each, as under light load).
//!
//! Each measured iteration starts from an empty store in a fresh temp dir (not timed), so every
//! command takes its insert path rather than the idempotent no-op one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_oci::{Digest, RepoName, Tag};
use berth_raft::{Entry, MetaCommand, MetaResponse, StateMachineStore};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};

const COMMANDS: u64 = 1_000;

fn digest(n: u64, salt: &str) -> Digest {
    let hex = format!("{salt}{n:0>width$x}", width = 64 - salt.len());
    Digest::parse(&format!("sha256:{hex}")).expect("valid digest")
}

/// Alternating LinkBlob / PutManifest (each manifest references the blob just linked).
fn entries() -> Vec<Entry> {
    let repo = RepoName::parse("bench/app").expect("valid repo name");
    (0..COMMANDS)
        .map(|i| {
            let n = i / 2;
            let blob = digest(n, "b");
            let cmd = if i % 2 == 0 {
                MetaCommand::LinkBlob {
                    repo: repo.clone(),
                    digest: blob,
                    size: 1024 + n,
                    at_ms: 1_700_000_000_000,
                }
            } else {
                let body = format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[{{"digest":"{blob}","size":{}}}]}}"#,
                    1024 + n
                );
                MetaCommand::PutManifest {
                    repo: repo.clone(),
                    digest: digest(n, "a"),
                    media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
                    artifact_type: None,
                    body,
                    subject: None,
                    annotations: BTreeMap::new(),
                    blobs: vec![blob],
                    children: Vec::new(),
                    tag: Some(Tag::parse(&format!("v{n}")).expect("valid tag")),
                    at_ms: 1_700_000_000_000,
                }
            };
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i + 1),
                payload: EntryPayload::Normal(cmd),
            }
        })
        .collect()
}

/// Times `apply` on a fresh store, with entries grouped into batches of `batch` entries.
async fn timed_apply(batch: usize) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sm = StateMachineStore::open(dir.path())
        .await
        .expect("open state machine");
    let all = entries();
    let start = Instant::now();
    for chunk in all.chunks(batch) {
        let responses = sm.apply(chunk.to_vec()).await.expect("apply");
        debug_assert!(responses.iter().all(|r| *r == MetaResponse::Ok));
    }
    start.elapsed()
}

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut group = c.benchmark_group("state_machine_apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(COMMANDS));
    for (name, batch) in [
        ("1000_commands_one_batch", COMMANDS as usize),
        ("1000_commands_batches_of_1", 1),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| rt.block_on(async { total_apply_time(iters, batch).await }))
        });
    }
    group.finish();
}

async fn total_apply_time(iters: u64, batch: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        total += timed_apply(batch).await;
    }
    total
}

criterion_group!(benches, apply);
criterion_main!(benches);
