//! Flags of `berth backup` and `berth restore`.

use std::path::PathBuf;

use clap::Args;

use super::AdminArgs;

/// Flags of `berth backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The cluster to back up (any replica: it passes a read barrier first).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// A file holding the passphrase that encrypts the backup (first line; at least 12
    /// characters). Keep it apart from the backup: without it the backup cannot be restored.
    #[arg(long, value_name = "FILE", conflicts_with = "no_encryption")]
    pub passphrase_file: Option<PathBuf>,
    /// Write the backup without encryption: whoever reads the file reads all metadata,
    /// password hashes included.
    #[arg(long)]
    pub no_encryption: bool,
}

/// Flags of `berth restore`; where data and storage are found as for `berth serve`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A TOML configuration file (as for `berth serve`): its data_dir, storage and
    /// advertise settings apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory of the new replica (default ./berth-data). It must be empty but for
    /// the blob storage directory, unless --replace is given.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Blob storage directory to check the referenced blobs in, short for --storage-url
    /// file:///DIR (default <data-dir>/storage).
    #[arg(long, value_name = "DIR", conflicts_with = "storage_url")]
    pub storage_dir: Option<PathBuf>,
    /// Blob storage URL to check the referenced blobs in (file:///dir, s3://, gs://, az://).
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
    /// URL other replicas will reach the restored one at; default: what `berth serve`
    /// advertises on its first start.
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// A file holding the backup's passphrase (first line).
    #[arg(long, value_name = "FILE", conflicts_with = "no_encryption")]
    pub passphrase_file: Option<PathBuf>,
    /// The backup was written without encryption (refused otherwise, so that an unencrypted
    /// file cannot pass for the encrypted one).
    #[arg(long)]
    pub no_encryption: bool,
    /// Replace the replica in a non-empty data directory. Stop it first; blob storage and
    /// other files there are left alone.
    #[arg(long)]
    pub replace: bool,
    /// Do not check that storage has every blob the metadata references.
    #[arg(long)]
    pub skip_blob_check: bool,
}
