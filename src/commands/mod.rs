//! One module per `berth` command.

mod serve;

use crate::cli::Command;

/// Runs a parsed command.
///
/// # Errors
/// Whatever made the command fail, for the user to read.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(args).await,
    }
}
