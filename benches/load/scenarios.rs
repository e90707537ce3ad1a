//! The nine scenarios of issue 9, each run against one registry: an untimed setup (content
//! generation, digests, pushes the scenario reads), then a timed part whose wall time and
//! CPU seconds (server and client) are taken around the requests only. Sizes and counts
//! shrink with `--scale`; concurrencies and the 8 MiB chunk size do not.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use bytes::Bytes;
use serde_json::json;

use crate::client::Client;
use crate::data::{derive_seed, BlobSpec, SmallBlob};
use crate::procstat::Proc;
use crate::report::{Better, Metric, Outcome};
use crate::runner::{run_bounded, LoopResult};
use crate::servers::Server;

const MIB: u64 = 1 << 20;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

const REPO_BIG: &str = "load/big";
const REPO_SMALL: &str = "load/small";
const REPO_MANIFESTS: &str = "load/manifests";
const REPO_HEAD: &str = "load/head";
const REPO_TAGS: &str = "load/tags";

/// Distinct tags read by scenario 6, and blobs HEADed by scenario 7.
const GET_TAGS: u64 = 64;
const HEAD_BLOBS: u64 = 256;

/// All scenario numbers, in run order.
pub const ALL: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];

/// Sizes and counts of one run (issue 9's at scale 1).
#[derive(Debug, Clone)]
pub struct Plan {
    /// Scenarios 1-3: the big blob.
    pub big_len: u64,
    /// Scenario 2: PATCH size (never scaled).
    pub chunk_len: u64,
    /// Scenario 4: small blob count and size.
    pub small_count: u64,
    /// Scenario 4: small blob size (never scaled).
    pub small_len: usize,
    /// Scenario 5: manifest PUTs.
    pub manifest_puts: u64,
    /// Scenario 6: manifest GETs.
    pub manifest_gets: u64,
    /// Scenario 7: blob HEADs.
    pub blob_heads: u64,
    /// Scenario 8: tags to list.
    pub tags: u64,
    /// Scenario 8: page size.
    pub page_n: u64,
    /// Scenario 9: blob size.
    pub pull9_len: u64,
    /// Scenario 9: concurrent pulls (never scaled).
    pub pulls9: u64,
}

impl Plan {
    /// Issue 9's sizes times `scale` (sizes in whole MiB, counts at least 1).
    pub fn new(scale: f64) -> Self {
        let count = |n: f64| ((n * scale).round() as u64).max(1);
        let mib = |n: f64| ((n * scale).round() as u64).max(1) * MIB;
        Plan {
            big_len: mib(512.0),
            chunk_len: 8 * MIB,
            small_count: count(2000.0),
            small_len: 4096,
            manifest_puts: count(4000.0),
            manifest_gets: count(40_000.0),
            blob_heads: count(40_000.0),
            tags: count(10_000.0),
            page_n: count(1000.0),
            pull9_len: mib(64.0),
            pulls9: 32,
        }
    }
}

/// Content shared by both registries (generated, and its digests computed, once).
#[derive(Debug)]
pub struct Data {
    /// Sizes and counts.
    pub plan: Plan,
    run_seed: u64,
    big_a: OnceLock<BlobSpec>,
    big_b: OnceLock<BlobSpec>,
    pull9: OnceLock<BlobSpec>,
}

impl Data {
    /// Content for a run; `run_seed` makes it unique to this run.
    pub fn new(plan: Plan, run_seed: u64) -> Self {
        Data {
            plan,
            run_seed,
            big_a: OnceLock::new(),
            big_b: OnceLock::new(),
            pull9: OnceLock::new(),
        }
    }

    fn spec(&self, cell: &OnceLock<BlobSpec>, n: u64, len: u64) -> BlobSpec {
        cell.get_or_init(|| {
            eprintln!("  hashing a generated {} MiB blob", len / MIB);
            tokio::task::block_in_place(|| BlobSpec::new(derive_seed(self.run_seed, n), len))
        })
        .clone()
    }

    /// Scenarios 1 and 3.
    fn big_a(&self) -> BlobSpec {
        self.spec(&self.big_a, 1, self.plan.big_len)
    }

    /// Scenario 2: same size as `big_a`, other content (so no registry can skip the write).
    fn big_b(&self) -> BlobSpec {
        self.spec(&self.big_b, 2, self.plan.big_len)
    }

    /// Scenario 9.
    fn pull9(&self) -> BlobSpec {
        self.spec(&self.pull9, 9, self.plan.pull9_len)
    }

    fn small(&self, family: u64, i: u64, len: usize) -> SmallBlob {
        SmallBlob::new(derive_seed(self.run_seed, (family << 40) + i), len)
    }
}

/// One registry under test with its client and what has been pushed to it so far.
#[derive(Debug)]
pub struct Target {
    /// The server.
    pub server: Server,
    /// Its client.
    pub client: Arc<Client>,
    pushed: HashSet<String>,
}

impl Target {
    /// Wraps a started server and a connected client.
    pub fn new(server: Server, client: Client) -> Self {
        Target {
            server,
            client: Arc::new(client),
            pushed: HashSet::new(),
        }
    }
}

/// Runs scenario `n` against `t`.
///
/// # Errors
/// A request failed, a check failed, or the server has exited.
pub async fn run(n: u8, t: &mut Target, d: &Data) -> Result<Outcome> {
    if t.server.exited() {
        bail!("the server has exited; log:\n{}", t.server.log_tail());
    }
    match n {
        1 => monolithic_push(t, d).await,
        2 => chunked_push(t, d).await,
        3 => pull(t, d).await,
        4 => small_pushes(t, d).await,
        5 => manifest_puts(t, d).await,
        6 => manifest_gets(t, d).await,
        7 => blob_heads(t, d).await,
        8 => tag_listing(t, d).await,
        9 => concurrent_pulls(t, d).await,
        other => bail!("no scenario {other}"),
    }
}

/// Takes wall time and CPU seconds around a timed part.
struct Meter {
    t0: Instant,
    server: Option<Proc>,
    server0: Option<f64>,
    client0: f64,
}

impl Meter {
    fn start(t: &Target) -> Self {
        let server = t.server.pid.map(Proc::Pid);
        Meter {
            server,
            server0: server.and_then(Proc::cpu_seconds),
            client0: Proc::Current.cpu_seconds().unwrap_or(0.0),
            t0: Instant::now(),
        }
    }

    fn stop(self) -> Outcome {
        let wall_s = self.t0.elapsed().as_secs_f64();
        let server_cpu_s = match (self.server.and_then(Proc::cpu_seconds), self.server0) {
            (Some(after), Some(before)) => Some(after - before),
            _ => None,
        };
        Outcome {
            metrics: Vec::new(),
            wall_s,
            server_cpu_s,
            client_cpu_s: Proc::Current.cpu_seconds().unwrap_or(0.0) - self.client0,
            notes: Vec::new(),
        }
    }
}

fn metric(label: impl Into<String>, unit: &'static str, better: Better, value: f64) -> Metric {
    Metric {
        label: label.into(),
        unit,
        better,
        value,
    }
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

/// Adds rate, p50 and p99 rows of a loop to an outcome; notes a time-bound cut.
fn loop_metrics(out: &mut Outcome, label: &str, unit: &'static str, r: &LoopResult, count: u64) {
    out.metrics
        .push(metric(label, unit, Better::Higher, r.rate()));
    out.metrics.push(metric(
        label,
        "ms p50",
        Better::Lower,
        r.percentile_ms(50.0),
    ));
    out.metrics.push(metric(
        label,
        "ms p99",
        Better::Lower,
        r.percentile_ms(99.0),
    ));
    if r.timed_out {
        out.notes.push(format!(
            "{label}: time bound reached after {} of {count}; rate is over those",
            r.ok
        ));
    }
}

/// Fails on any failed operation (figures over a partly failing loop would mislead).
fn no_errors(r: &LoopResult, what: &str) -> Result<()> {
    if let Some(e) = &r.first_error {
        bail!(
            "{what}: {} failed, {} succeeded; first: {e}",
            r.errors,
            r.ok
        );
    }
    Ok(())
}

/// 1: one POST, then one PUT carrying the whole blob.
async fn monolithic_push(t: &mut Target, d: &Data) -> Result<Outcome> {
    let blob = d.big_a();
    eprintln!("  monolithic push of {} MiB", blob.len / MIB);
    let m = Meter::start(t);
    t.client
        .push_monolithic(REPO_BIG, &blob.digest, blob.len, || blob.body(0, blob.len))
        .await?;
    let mut out = m.stop();
    t.pushed.insert(blob.digest.clone());
    out.metrics.push(metric(
        format!("monolithic push (POST + PUT), {} MiB", blob.len / MIB),
        "MB/s",
        Better::Higher,
        mb_per_s(blob.len, out.wall_s),
    ));
    Ok(out)
}

/// 2: POST, 8 MiB PATCHes with Content-Range, PUT `?digest=`.
async fn chunked_push(t: &mut Target, d: &Data) -> Result<Outcome> {
    let blob = d.big_b();
    let chunk = d.plan.chunk_len;
    eprintln!("  chunked push of {} MiB", blob.len / MIB);
    let m = Meter::start(t);
    t.client
        .push_chunked(REPO_BIG, &blob.digest, blob.len, chunk, |s, e| {
            blob.body(s, e)
        })
        .await?;
    let mut out = m.stop();
    out.metrics.push(metric(
        format!(
            "chunked push, {} MiB in {} MiB PATCHes",
            blob.len / MIB,
            chunk / MIB
        ),
        "MB/s",
        Better::Higher,
        mb_per_s(blob.len, out.wall_s),
    ));
    Ok(out)
}

/// Pushes a big blob untimed unless this registry already has it.
async fn ensure_big(t: &mut Target, blob: &BlobSpec) -> Result<()> {
    if t.pushed.contains(&blob.digest) {
        return Ok(());
    }
    eprintln!("  setup: pushing {} MiB", blob.len / MIB);
    t.client
        .push_monolithic(REPO_BIG, &blob.digest, blob.len, || blob.body(0, blob.len))
        .await?;
    t.pushed.insert(blob.digest.clone());
    Ok(())
}

/// Timed pulls in scenario 3; one pull of 512 MiB takes a fifth of a second here, so one
/// alone mostly measures the machine's noise.
const PULL_REPEATS: usize = 5;

/// 3: timed GETs counting bytes (the figure is the median pull), then an untimed GET whose
/// sha256 is checked (hashing in a timed pull would take a core from the server on a
/// two-core machine).
async fn pull(t: &mut Target, d: &Data) -> Result<Outcome> {
    let blob = d.big_a();
    ensure_big(t, &blob).await?;
    eprintln!("  {PULL_REPEATS} pulls of {} MiB", blob.len / MIB);
    let m = Meter::start(t);
    let mut speeds = Vec::with_capacity(PULL_REPEATS);
    for _ in 0..PULL_REPEATS {
        let started = Instant::now();
        let pulled = t.client.pull(REPO_BIG, &blob.digest, false).await?;
        speeds.push(mb_per_s(blob.len, started.elapsed().as_secs_f64()));
        ensure!(
            pulled.bytes == blob.len,
            "pulled {} bytes, expected {}",
            pulled.bytes,
            blob.len
        );
    }
    let mut out = m.stop();
    speeds.sort_by(f64::total_cmp);
    out.notes.push(format!(
        "pull: median of {PULL_REPEATS} pulls; slowest {:.0}, fastest {:.0} MB/s",
        speeds[0],
        speeds[PULL_REPEATS - 1]
    ));
    eprintln!("  verifying the pulled bytes' sha256 (untimed)");
    let verified = t.client.pull(REPO_BIG, &blob.digest, true).await?;
    ensure!(
        verified.digest.as_deref() == Some(blob.digest.as_str()),
        "pulled content has digest {:?}, expected {}",
        verified.digest,
        blob.digest
    );
    out.metrics.push(metric(
        format!(
            "pull, {} MiB, median of {PULL_REPEATS} (sha256 verified untimed)",
            blob.len / MIB
        ),
        "MB/s",
        Better::Higher,
        speeds[PULL_REPEATS / 2],
    ));
    Ok(out)
}

/// 4: distinct 4 KiB blobs, POST + PUT each, 16 at a time.
async fn small_pushes(t: &mut Target, d: &Data) -> Result<Outcome> {
    let (count, len) = (d.plan.small_count, d.plan.small_len);
    let blobs: Arc<Vec<SmallBlob>> = Arc::new((0..count).map(|i| d.small(4, i, len)).collect());
    eprintln!(
        "  {count} pushes of {} KiB blobs, concurrency 16",
        len / 1024
    );
    let client = t.client.clone();
    let m = Meter::start(t);
    let r = run_bounded(
        "small blob pushes",
        count,
        16,
        Duration::from_secs(120),
        move |i| {
            let (client, blobs) = (client.clone(), blobs.clone());
            async move {
                let b = &blobs[i as usize];
                client.push_small(REPO_SMALL, &b.digest, &b.bytes).await
            }
        },
    )
    .await;
    let mut out = m.stop();
    no_errors(&r, "small blob pushes")?;
    loop_metrics(
        &mut out,
        &format!("{} KiB blob pushes (POST + PUT), c=16", len / 1024),
        "blobs/s",
        &r,
        count,
    );
    Ok(out)
}

/// The config and layer every manifest of `repo` refers to, pushed once (untimed).
async fn ensure_image_blobs(
    t: &mut Target,
    d: &Data,
    repo: &str,
) -> Result<(SmallBlob, SmallBlob)> {
    let config = SmallBlob::from_bytes(Bytes::from(
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [] },
            "config": { "Labels": { "org.example.load.run": d.run_seed.to_string() } },
        }))
        .expect("json"),
    ));
    let layer = d.small(5, 0, 1024);
    let key = format!("{repo}@image");
    if !t.pushed.contains(&key) {
        t.client
            .push_small(repo, &config.digest, &config.bytes)
            .await?;
        t.client
            .push_small(repo, &layer.digest, &layer.bytes)
            .await?;
        t.pushed.insert(key);
    }
    Ok((config, layer))
}

/// An OCI image manifest over `config` and `layer`, made distinct by `marker`.
fn manifest(config: &SmallBlob, layer: &SmallBlob, marker: &str) -> Bytes {
    let desc = |media_type: &str, b: &SmallBlob| json!({ "mediaType": media_type, "digest": b.digest, "size": b.bytes.len() });
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc(OCI_CONFIG, config),
            "layers": [desc(OCI_LAYER, layer)],
            "annotations": { "org.example.load.marker": marker },
        }))
        .expect("json"),
    )
}

/// PUTs `manifests[i]` to `tag(i)` for all i, 16 at a time (bounded by `bound`).
async fn put_manifests(
    client: &Arc<Client>,
    label: &str,
    repo: &'static str,
    manifests: Arc<Vec<(String, Bytes)>>,
    bound: Duration,
) -> LoopResult {
    let client = client.clone();
    let count = manifests.len() as u64;
    run_bounded(label, count, 16, bound, move |i| {
        let (client, manifests) = (client.clone(), manifests.clone());
        async move {
            let (tag, body) = &manifests[i as usize];
            client.put_manifest(repo, tag, OCI_MANIFEST, body).await
        }
    })
    .await
}

/// 5: distinct manifests to distinct tags, 16 at a time.
async fn manifest_puts(t: &mut Target, d: &Data) -> Result<Outcome> {
    let (config, layer) = ensure_image_blobs(t, d, REPO_MANIFESTS).await?;
    let count = d.plan.manifest_puts;
    let manifests: Arc<Vec<(String, Bytes)>> = Arc::new(
        (0..count)
            .map(|i| {
                let tag = format!("put-{i}");
                let body = manifest(&config, &layer, &format!("{}-{tag}", d.run_seed));
                (tag, body)
            })
            .collect(),
    );
    eprintln!("  {count} manifest PUTs to distinct tags, concurrency 16");
    let m = Meter::start(t);
    let r = put_manifests(
        &t.client,
        "manifest PUTs",
        REPO_MANIFESTS,
        manifests,
        Duration::from_secs(120),
    )
    .await;
    let mut out = m.stop();
    no_errors(&r, "manifest PUTs")?;
    loop_metrics(
        &mut out,
        "manifest PUT, distinct tags, c=16",
        "req/s",
        &r,
        count,
    );
    Ok(out)
}

/// 6: GETs by tag over 64 tags, 64 at a time.
async fn manifest_gets(t: &mut Target, d: &Data) -> Result<Outcome> {
    let (config, layer) = ensure_image_blobs(t, d, REPO_MANIFESTS).await?;
    if t.pushed.insert("get-tags".into()) {
        let manifests: Arc<Vec<(String, Bytes)>> = Arc::new(
            (0..GET_TAGS)
                .map(|i| {
                    let tag = format!("get-{i}");
                    let body = manifest(&config, &layer, &format!("{}-{tag}", d.run_seed));
                    (tag, body)
                })
                .collect(),
        );
        let r = put_manifests(
            &t.client,
            "setup",
            REPO_MANIFESTS,
            manifests,
            Duration::from_secs(120),
        )
        .await;
        r.complete(GET_TAGS)?;
    }
    let count = d.plan.manifest_gets;
    eprintln!("  {count} manifest GETs by tag, concurrency 64");
    let client = t.client.clone();
    let m = Meter::start(t);
    let r = run_bounded(
        "manifest GETs",
        count,
        64,
        Duration::from_secs(60),
        move |i| {
            let client = client.clone();
            async move {
                let len = client
                    .get_manifest(REPO_MANIFESTS, &format!("get-{}", i % GET_TAGS))
                    .await?;
                ensure!(len > 0, "empty manifest");
                Ok(())
            }
        },
    )
    .await;
    let mut out = m.stop();
    no_errors(&r, "manifest GETs")?;
    loop_metrics(&mut out, "manifest GET by tag, c=64", "req/s", &r, count);
    Ok(out)
}

/// 7: HEADs over 256 small blobs, 64 at a time.
async fn blob_heads(t: &mut Target, d: &Data) -> Result<Outcome> {
    let blobs: Arc<Vec<SmallBlob>> =
        Arc::new((0..HEAD_BLOBS).map(|i| d.small(7, i, 4096)).collect());
    if t.pushed.insert("head-blobs".into()) {
        let (client, blobs) = (t.client.clone(), blobs.clone());
        let r = run_bounded(
            "setup",
            HEAD_BLOBS,
            16,
            Duration::from_secs(120),
            move |i| {
                let (client, blobs) = (client.clone(), blobs.clone());
                async move {
                    let b = &blobs[i as usize];
                    client.push_small(REPO_HEAD, &b.digest, &b.bytes).await
                }
            },
        )
        .await;
        r.complete(HEAD_BLOBS)?;
    }
    let count = d.plan.blob_heads;
    eprintln!("  {count} blob HEADs, concurrency 64");
    let client = t.client.clone();
    let m = Meter::start(t);
    let r = run_bounded("blob HEADs", count, 64, Duration::from_secs(60), move |i| {
        let (client, blobs) = (client.clone(), blobs.clone());
        async move {
            let b = &blobs[(i % HEAD_BLOBS) as usize];
            client.head_blob(REPO_HEAD, &b.digest).await
        }
    })
    .await;
    let mut out = m.stop();
    no_errors(&r, "blob HEADs")?;
    loop_metrics(&mut out, "blob HEAD, c=64", "req/s", &r, count);
    Ok(out)
}

/// 8: after an untimed push of one manifest to `tags` tags, the timed listing with `n`
/// pagination following `Link`, and for comparison one request without `n`.
async fn tag_listing(t: &mut Target, d: &Data) -> Result<Outcome> {
    let (config, layer) = ensure_image_blobs(t, d, REPO_TAGS).await?;
    let (tags, n) = (d.plan.tags, d.plan.page_n);
    if t.pushed.insert("tags".into()) {
        eprintln!("  setup: tagging {tags} times (untimed), concurrency 16");
        let body = manifest(&config, &layer, &d.run_seed.to_string());
        let manifests: Arc<Vec<(String, Bytes)>> = Arc::new(
            (0..tags)
                .map(|i| (format!("tag-{i:05}"), body.clone()))
                .collect(),
        );
        let r = put_manifests(
            &t.client,
            "setup",
            REPO_TAGS,
            manifests,
            Duration::from_secs(900),
        )
        .await;
        r.complete(tags)?;
    }
    let max_pages = (tags / n + 10) as usize;
    eprintln!("  listing {tags} tags, n={n}");
    let m = Meter::start(t);
    let t0 = Instant::now();
    let (seen, pages) = t.client.list_tags(REPO_TAGS, Some(n), max_pages).await?;
    let paginated_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (seen_all, pages_all) = t.client.list_tags(REPO_TAGS, None, max_pages).await?;
    let unpaginated_s = t1.elapsed().as_secs_f64();
    let mut out = m.stop();
    ensure!(
        seen as u64 == tags,
        "n={n} listing returned {seen} tags in {pages} pages, expected {tags}"
    );
    ensure!(
        seen_all as u64 == tags,
        "listing without n returned {seen_all} tags in {pages_all} pages, expected {tags}"
    );
    if pages as u64 != tags.div_ceil(n) {
        out.notes.push(format!(
            "tag listing with n={n}: {pages} page(s) for {tags} tags, not {}: n not honoured",
            tags.div_ceil(n)
        ));
    }
    if pages_all != 1 {
        out.notes.push(format!(
            "tag listing without n: {pages_all} pages (the server caps a page)"
        ));
    }
    out.metrics.push(metric(
        format!("list {tags} tags, n={n}, following Link"),
        "s",
        Better::Lower,
        paginated_s,
    ));
    out.metrics.push(metric(
        format!("list {tags} tags without n"),
        "s",
        Better::Lower,
        unpaginated_s,
    ));
    Ok(out)
}

/// 9: 32 GETs of one blob at once; aggregate throughput.
async fn concurrent_pulls(t: &mut Target, d: &Data) -> Result<Outcome> {
    let blob = d.pull9();
    ensure_big(t, &blob).await?;
    let pulls = d.plan.pulls9;
    eprintln!("  {pulls} concurrent pulls of {} MiB", blob.len / MIB);
    let (client, digest, len) = (t.client.clone(), blob.digest.clone(), blob.len);
    let m = Meter::start(t);
    let r = run_bounded(
        "concurrent pulls",
        pulls,
        pulls as usize,
        Duration::from_secs(300),
        move |_| {
            let (client, digest) = (client.clone(), digest.clone());
            async move {
                let got = client.pull(REPO_BIG, &digest, false).await?;
                ensure!(
                    got.bytes == len,
                    "pulled {} bytes, expected {len}",
                    got.bytes
                );
                Ok(())
            }
        },
    )
    .await;
    let mut out = m.stop();
    no_errors(&r, "concurrent pulls")?;
    r.complete(pulls)?;
    out.metrics.push(metric(
        format!(
            "{pulls} concurrent pulls of {} MiB, aggregate",
            blob.len / MIB
        ),
        "MB/s",
        Better::Higher,
        mb_per_s(r.ok * len, out.wall_s),
    ));
    Ok(out)
}
