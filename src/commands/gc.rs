//! `berth gc` and `berth fsck`: garbage collection and the storage check through the admin
//! API. Reports go to stdout as JSON; a one-line summary goes to stderr.

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::admin_client::AdminClient;
use crate::cli::{FsckArgs, GcArgs};

/// Runs garbage collection (or shows the last run) and prints the report.
///
/// # Errors
/// A malformed `--grace`, or the admin API failed.
pub async fn gc(args: GcArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let report = if args.last {
        client.call(Method::GET, "gc", None).await?
    } else {
        let mut body = Map::new();
        body.insert("dry_run".into(), json!(args.dry_run));
        if let Some(grace) = &args.grace {
            let grace = if grace.trim() == "0" {
                "0s"
            } else {
                grace.as_str()
            };
            humantime::parse_duration(grace)
                .with_context(|| format!("--grace {grace}: give a duration like 0s, 30m or 1h"))?;
            body.insert("grace".into(), json!(grace));
        }
        if let Some(policy) = &args.untagged {
            body.insert("untagged".into(), json!(policy));
        }
        client
            .call(Method::POST, "gc", Some(&Value::Object(body)))
            .await?
    };
    #[allow(clippy::print_stdout, clippy::print_stderr)] // the command's output
    {
        eprintln!(
            "{}{} manifests, {} blobs ({} bytes), {} uploads",
            if report["dry_run"] == json!(true) {
                "would delete "
            } else {
                "deleted "
            },
            report["manifests_deleted"],
            report["blobs_deleted"],
            report["bytes_freed"],
            report["uploads_removed"],
        );
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Checks storage against the metadata, prints the report, fails when problems were found.
///
/// # Errors
/// The admin API failed, or blobs are missing or corrupt.
pub async fn fsck(args: FsckArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let report = client
        .call(Method::POST, "fsck", Some(&json!({ "deep": args.deep })))
        .await?;
    let count = |key: &str| report[key].as_array().map_or(0, Vec::len);
    let (missing, size, corrupt) = (count("missing"), count("size_mismatch"), count("corrupt"));
    #[allow(clippy::print_stdout)] // the command's output
    {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if missing + size + corrupt > 0 {
        bail!(
            "{missing} missing, {size} of the wrong size, {corrupt} corrupt of {} linked blobs",
            report["checked"]
        );
    }
    Ok(())
}
