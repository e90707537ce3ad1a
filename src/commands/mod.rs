//! One module per `berth` command; `admin_client` is how the cluster commands reach the
//! admin API.

mod admin_client;
mod backup;
mod cluster;
mod directory;
mod gc;
mod healthcheck;
mod progress;
mod repair;
mod serve;

use crate::cli::Command;

/// Runs a parsed command.
///
/// # Errors
/// Whatever made the command fail, for the user to read.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(*args).await,
        Command::JoinToken(args) => cluster::join_token(args).await,
        Command::Replicas(args) => cluster::replicas(args).await,
        Command::RemoveReplica(args) => cluster::remove_replica(args).await,
        Command::EmergencyRepair(args) => repair::run(args).await,
        Command::Healthcheck(args) => healthcheck::run(args).await,
        Command::User(args) => directory::user(args).await,
        Command::Org(args) => directory::org(args).await,
        Command::Team(args) => directory::team(args).await,
        Command::Grant(args) => directory::grant(args).await,
        Command::Repo(args) => directory::repo(args).await,
        Command::Key(args) => directory::key(args).await,
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::Gc(args) => gc::gc(args).await,
        Command::Fsck(args) => gc::fsck(args).await,
    }
}

/// The advice Berth gives whenever the replica count changes.
pub(crate) fn replica_count_advice(count: usize) -> Option<String> {
    count.is_multiple_of(2).then(|| {
        format!(
            "warning: the cluster has {count} replicas; an odd number (3, 5 or 7) tolerates \
             as many failures with one replica less"
        )
    })
}
