//! `berth healthcheck`: asks a replica's `/health` and turns the answer into an exit status,
//! for a container's `HEALTHCHECK` (a `FROM scratch` image has no shell and no curl).

use anyhow::{bail, Context};

use super::admin_client::http_client;
use crate::cli::HealthcheckArgs;

/// Prints the replica's health JSON; fails unless it answered 200 in time.
///
/// # Errors
/// Unreachable, too slow, or unhealthy (503).
pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let timeout = humantime::parse_duration(&args.timeout)
        .with_context(|| format!("--timeout {}: give a duration like 5s", args.timeout))?;
    let http = http_client(args.ca_file.as_deref(), Some(timeout))?;
    let url = format!("{}/health", args.url.trim_end_matches('/'));
    let res = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    #[allow(clippy::print_stdout)] // the command's output
    {
        println!("{body}");
    }
    if !status.is_success() {
        bail!("{url} answered {status}: not healthy");
    }
    Ok(())
}
