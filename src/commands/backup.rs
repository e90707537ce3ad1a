//! `berth backup` (through the admin API, to stdout) and `berth restore` (offline, from
//! stdin, into a data directory); the file format and the restore itself are
//! `berth_raft::backup`'s.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_raft::backup::{BackupHeader, Encryption, Passphrase, RestoreOptions, RestoreProgress};
use berth_registry::config::StorageLocation;
use berth_registry::storage::Storage;
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::admin_client::AdminClient;
use super::progress::{human_bytes, Progress};
use crate::cli::{BackupArgs, RestoreArgs, ServeArgs};
use crate::config;

/// The replica's Raft directory inside a data directory (as `berth serve` lays it out).
const REPLICA_DIR: &str = "raft";
/// Missing blobs listed one by one; beyond this only counted.
const MISSING_LISTED: usize = 20;

/// Streams a backup from the cluster's admin API to stdout.
///
/// # Errors
/// No passphrase and no `--no-encryption`, stdout is a terminal, the admin API refused, or
/// the transfer broke off (the output is then incomplete).
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let body = match (&args.passphrase_file, args.no_encryption) {
        (Some(path), false) => json!({ "passphrase": read_passphrase(path)? }),
        (None, true) => json!({ "unencrypted": true }),
        _ => bail!(
            "a backup is written only with a passphrase: give --passphrase-file FILE, or \
             --no-encryption to write it in the clear (readable by whoever gets the file)"
        ),
    };
    if std::io::stdout().is_terminal() {
        bail!("the backup goes to stdout: redirect it to a file (berth backup ... > berth.bkp)");
    }
    let client = AdminClient::new(&args.admin)?;
    let mut res = client.send_json(Method::POST, "backup", &body).await?;
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| "?".to_owned())
    };
    let (cluster, index, rows, blobs) = (
        header("berth-backup-cluster-id"),
        header("berth-backup-index"),
        header("berth-backup-rows"),
        header("berth-backup-blobs"),
    );
    let total = header("berth-backup-plaintext-bytes").parse::<u64>().ok();

    let progress = Progress::new();
    let line = |written: u64| {
        let of = total.map_or_else(String::new, |t| format!(" of ~{}", human_bytes(t)));
        format!(
            "backup: {}{of} ({rows} rows, {blobs} referenced blobs)",
            human_bytes(written)
        )
    };
    let mut out = tokio::io::stdout();
    let mut written = 0u64;
    loop {
        match res.chunk().await {
            Ok(Some(chunk)) => {
                out.write_all(&chunk)
                    .await
                    .context("writing the backup to stdout")?;
                written += chunk.len() as u64;
                progress.show(|| line(written));
            }
            Ok(None) => {
                progress.show_now(|| line(written));
                break;
            }
            Err(e) => {
                progress.finish();
                bail!(
                    "the backup broke off after {written} bytes ({e}); the output is \
                     incomplete and will not restore: discard it and try again"
                );
            }
        }
    }
    out.flush().await.context("writing the backup to stdout")?;
    progress.finish();
    if progress.enabled() {
        eprintln!(
            "backup of cluster {cluster} up to log index {index}: {rows} rows, {blobs} \
             referenced blobs, {} written",
            human_bytes(written)
        );
    }
    Ok(())
}

/// Restores a backup from stdin as a new one-replica cluster, then checks storage.
///
/// # Errors
/// No passphrase and no `--no-encryption`, stdin is a terminal, the target is not empty, or
/// the backup is wrong, damaged, truncated or too new (nothing was changed then).
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let encryption = match (&args.passphrase_file, args.no_encryption) {
        (Some(path), false) => Encryption::Passphrase(Passphrase::new(read_passphrase(path)?)?),
        (None, true) => Encryption::None,
        _ => bail!(
            "give the backup's passphrase with --passphrase-file FILE (or --no-encryption for \
             a backup written without one)"
        ),
    };
    if std::io::stdin().is_terminal() {
        bail!("the backup is read from stdin: berth restore ... < berth.bkp");
    }
    let cfg = config::load(&ServeArgs {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        storage_dir: args.storage_dir.clone(),
        storage_url: args.storage_url.clone(),
        advertise: args.advertise.clone(),
        ..ServeArgs::default()
    })?;
    let location = cfg.storage()?;
    let data_dir = cfg.data_dir.clone();
    // A storage directory inside the data directory is not "something else in the way".
    let storage_dir = match &location {
        StorageLocation::Directory(dir) => dir.clone(),
        _ => data_dir.join("storage"),
    };
    check_target(&data_dir, &storage_dir, args.replace)?;

    let progress = Arc::new(Progress::new());
    let shown = Arc::clone(&progress);
    let options = RestoreOptions {
        dir: data_dir.join(REPLICA_DIR),
        replace: args.replace,
        advertise: cfg.advertise.clone(),
    };
    let restored = berth_raft::backup::restore(
        std::io::stdin(),
        encryption,
        options,
        move |step| match step {
            RestoreProgress::Header(_) => {}
            RestoreProgress::Bytes { done, total } => shown.show(|| {
                format!(
                    "restore: decrypted and checked {} of {}",
                    human_bytes(done),
                    human_bytes(total)
                )
            }),
            RestoreProgress::Installing => {
                shown.show_now(|| "restore: the file is intact; building the replica".to_owned());
            }
        },
    )
    .await;
    progress.finish();
    let restored = restored.with_context(|| format!("restoring into {}", data_dir.display()))?;

    #[allow(clippy::print_stdout)] // the command's output
    {
        println!("{}", summary(&restored.header, &data_dir));
        println!(
            "new cluster {} (replica {}); dropped {} join token(s) of the old cluster",
            restored.cluster_id, restored.replica_id, restored.dropped_join_tokens
        );
        println!(
            "next: berth serve --data-dir {} (same storage); then join replicas with \
             `berth join-token` and `berth serve --join`",
            data_dir.display()
        );
    }
    if args.skip_blob_check {
        #[allow(clippy::print_stdout)]
        {
            println!("blob check skipped (--skip-blob-check)");
        }
        return Ok(());
    }
    check_blobs(&restored.blobs, &location, &progress).await
}

/// A data directory may hold the blob storage directory and empty directories; anything else
/// (a replica, its files) only with --replace.
fn check_target(data_dir: &Path, storage: &Path, replace: bool) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", data_dir.display())),
    };
    let storage = std::fs::canonicalize(storage).unwrap_or_else(|_| storage.to_path_buf());
    let mut others = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = std::fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path());
        let empty_dir = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
        if path != storage && !empty_dir {
            others.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    others.sort();
    if !others.is_empty() && !replace {
        bail!(
            "{} is not empty (it holds {}): restore into an empty data directory, or give \
             --replace to replace the replica there (stop it first; blob storage and other \
             files are left alone)",
            data_dir.display(),
            others.join(", ")
        );
    }
    Ok(())
}

fn summary(h: &BackupHeader, data_dir: &Path) -> String {
    format!(
        "restored into {}: the backup of cluster {} taken {} on replica {} (log index {}): {} \
         rows in {} tables, {} referenced blobs",
        data_dir.display(),
        h.cluster_id,
        h.created_at,
        h.replica_id,
        h.last_applied.index,
        h.rows(),
        h.tables.len(),
        h.blob_count
    )
}

/// Reports every referenced blob that storage does not have.
async fn check_blobs(
    blobs: &berth_raft::backup::BlobList,
    location: &StorageLocation,
    progress: &Progress,
) -> anyhow::Result<()> {
    if let StorageLocation::Directory(dir) = location {
        if !dir.join("blobs").is_dir() && !blobs.is_empty() {
            eprintln!(
                "warning: {} has no blobs/ directory: is it the registry's storage (--storage-dir)?",
                dir.display()
            );
        }
    }
    let storage = Storage::open(location)
        .await
        .with_context(|| format!("opening storage {location}"))?;
    let store = storage.blobs();
    let total = blobs.len();
    let line = |checked: u64, missing: u64| {
        format!("checking blobs in storage: {checked} of {total}, {missing} missing")
    };
    let (mut checked, mut missing) = (0u64, Vec::new());
    let mut missing_count = 0u64;
    for digest in blobs.digests().context("reading the blob list")? {
        let digest = digest?;
        if store
            .stat(&digest)
            .await
            .with_context(|| format!("checking {digest} in {location}"))?
            .is_none()
        {
            missing_count += 1;
            if missing.len() < MISSING_LISTED {
                missing.push(digest.to_string());
            }
        }
        checked += 1;
        progress.show(|| line(checked, missing_count));
    }
    progress.show_now(|| line(checked, missing_count));
    progress.finish();
    if missing_count == 0 {
        #[allow(clippy::print_stdout)]
        {
            println!("all {total} referenced blobs are in storage ({location})");
        }
        return Ok(());
    }
    eprintln!(
        "warning: {missing_count} of {total} referenced blobs are missing from storage ({location}):"
    );
    for digest in &missing {
        eprintln!("  {digest}");
    }
    if missing_count > missing.len() as u64 {
        eprintln!("  ... and {} more", missing_count - missing.len() as u64);
    }
    eprintln!(
        "pulls that need them will fail until they are restored from the storage's own backup"
    );
    Ok(())
}

/// The first line of a passphrase file.
fn read_passphrase(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        bail!("the passphrase file {} is empty", path.display());
    }
    Ok(line)
}
