//! `berth emergency-repair`: make a stopped replica a one-replica cluster.

use anyhow::{bail, Context};

use crate::cli::EmergencyRepairArgs;

/// Rewrites the stopped replica's membership to itself and says what was dropped.
///
/// # Errors
/// Not confirmed with `--yes`, no replica in the directory, or its files failed.
pub async fn run(args: EmergencyRepairArgs) -> anyhow::Result<()> {
    if !args.yes {
        bail!(
            "emergency-repair drops every other replica from the membership for good; stop \
             this replica first, then run it again with --yes"
        );
    }
    let dir = args.data_dir.join("raft");
    let report = berth_raft::emergency_repair(&dir, args.advertise.as_deref())
        .await
        .with_context(|| format!("repairing the replica in {}", args.data_dir.display()))?;
    #[allow(clippy::print_stdout)] // the command's output
    {
        println!(
            "replica {} at {} is now a one-replica cluster (dropped: {:?}); start it with \
             `berth serve`, then join new replicas to it",
            report.replica_id, report.address, report.removed
        );
    }
    Ok(())
}
