//! The command line: what `berth` accepts, parsed by clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Berth: a private, trusted, replicated container registry.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a replica of the registry.
    Serve(ServeArgs),
}

/// Flags of `berth serve`; each overrides the config file and `BERTH_...` variables.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:5000; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the replica's metadata (default ./berth-data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Blob storage directory, short for --storage-url file:///DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "storage_url")]
    pub storage_dir: Option<PathBuf>,
    /// Blob storage URL (file:///dir).
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
    /// URL other replicas use to reach this one (default http://<bound address>).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}
