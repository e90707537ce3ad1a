//! `berth join-token`, `berth replicas`, `berth remove-replica`: the cluster through the
//! admin API.

use anyhow::Context;
use reqwest::Method;
use serde_json::json;

use super::admin_client::AdminClient;
use super::replica_count_advice;
use crate::cli::{JoinTokenArgs, RemoveReplicaArgs, ReplicasArgs};

/// Prints a new join token, alone on stdout, so `TOKEN=$(berth join-token)` works.
///
/// # Errors
/// A malformed `--ttl`, or the admin API failed.
pub async fn join_token(args: JoinTokenArgs) -> anyhow::Result<()> {
    let ttl_secs = if args.ttl.trim() == "0" {
        0
    } else {
        humantime::parse_duration(&args.ttl)
            .with_context(|| format!("--ttl {}: give a duration like 30m, 24h or 7d", args.ttl))?
            .as_secs()
            .max(1)
    };
    let client = AdminClient::new(&args.admin)?;
    let answer = client
        .call(
            Method::POST,
            "join-tokens",
            Some(&json!({ "ttl_secs": ttl_secs })),
        )
        .await?;
    let token = answer["token"]
        .as_str()
        .context("the answer has no token")?;
    #[allow(clippy::print_stdout)] // the command's output
    {
        println!("{token}");
    }
    Ok(())
}

/// Prints the replicas as a table (or JSON).
///
/// # Errors
/// The admin API failed.
pub async fn replicas(args: ReplicasArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let answer = client.call(Method::GET, "replicas", None).await?;
    let replicas = answer["replicas"]
        .as_array()
        .context("the answer has no replica list")?;
    let mut out = String::new();
    if args.json {
        out = serde_json::to_string_pretty(&answer)?;
    } else {
        out.push_str(&format!(
            "{:<4} {:<32} {:<9} {:>10}  {}\n",
            "ID", "ADDRESS", "ROLE", "APPLIED", "ANSWERS"
        ));
        for r in replicas {
            out.push_str(&format!(
                "{:<4} {:<32} {:<9} {:>10}  {}\n",
                r["id"],
                r["address"].as_str().unwrap_or("?"),
                r["role"].as_str().unwrap_or("?"),
                r["last_applied_index"]
                    .as_u64()
                    .map_or_else(|| "-".to_owned(), |i| i.to_string()),
                if r["answers"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
            ));
        }
    }
    #[allow(clippy::print_stdout)] // the command's output
    {
        print!("{}", out.trim_end_matches('\n'));
        println!();
    }
    Ok(())
}

/// Removes a replica and says how many remain.
///
/// # Errors
/// The admin API failed or refused (unknown replica, last voter).
pub async fn remove_replica(args: RemoveReplicaArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin)?;
    let answer = client
        .call(Method::DELETE, &format!("replicas/{}", args.id), None)
        .await?;
    let remaining = answer["replicas"].as_u64().unwrap_or(0);
    #[allow(clippy::print_stdout)] // the command's output
    {
        println!(
            "removed replica {}; the cluster has {remaining} replicas",
            args.id
        );
    }
    if let Some(advice) = replica_count_advice(usize::try_from(remaining).unwrap_or(0)) {
        eprintln!("{advice}");
    }
    Ok(())
}
