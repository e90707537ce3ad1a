//! The command line: what `berth` accepts, parsed by clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod backup;
pub use backup::{BackupArgs, RestoreArgs};

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
    Serve(Box<ServeArgs>),
    /// Print a new token that admits replicas to the cluster (`berth serve --join`).
    JoinToken(JoinTokenArgs),
    /// List the replicas of the cluster.
    Replicas(ReplicasArgs),
    /// Remove a replica from the cluster's membership.
    RemoveReplica(RemoveReplicaArgs),
    /// On a stopped replica whose cluster lost its majority for good: make it a one-replica
    /// cluster with its data, which new replicas can join.
    EmergencyRepair(EmergencyRepairArgs),
    /// Exit 0 when the replica at --url is healthy (`/health` answers 200), 1 otherwise: for
    /// container health checks, where no shell or curl exists.
    Healthcheck(HealthcheckArgs),
    /// Manage users.
    User(DirectoryArgs<UserCommand>),
    /// Manage organizations.
    Org(DirectoryArgs<OrgCommand>),
    /// Manage teams and their members.
    Team(DirectoryArgs<TeamCommand>),
    /// Give, list and remove grants.
    Grant(DirectoryArgs<GrantCommand>),
    /// Create, list, publish and delete repositories.
    Repo(DirectoryArgs<RepoCommand>),
    /// List or rotate the token-signing keys.
    Key(DirectoryArgs<KeyCommand>),
    /// Write an encrypted backup of all metadata of a running cluster to stdout.
    Backup(BackupArgs),
    /// Build a new one-replica cluster from a backup read on stdin, in an empty data directory.
    Restore(RestoreArgs),
    /// Delete the manifests and blobs nothing references, and abandoned uploads, now
    /// (online: pushes and pulls go on). Prints the report as JSON.
    Gc(GcArgs),
    /// Check that storage holds every linked blob with its size (`--deep`: and its digest).
    /// Prints the report as JSON; exits non-zero when a blob is missing or corrupt.
    Fsck(FsckArgs),
}

/// Flags of `berth healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Base URL of the replica.
    #[arg(
        long,
        value_name = "URL",
        env = "BERTH_URL",
        default_value = "http://127.0.0.1:5000"
    )]
    pub url: String,
    /// A CA certificate to trust for an https URL.
    #[arg(long, value_name = "FILE", env = "BERTH_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// How long to wait for the answer (`5s`, `500ms`).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub timeout: String,
}

/// A directory command with the admin API connection.
#[derive(Debug, Args)]
pub struct DirectoryArgs<C: Subcommand> {
    /// The cluster to ask.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: C,
}

/// `berth user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password comes from --new-password-file, BERTH_NEW_PASSWORD, or a prompt.
    Add {
        /// Login name (also the user's own namespace).
        name: String,
        /// Make the user a registry administrator.
        #[arg(long)]
        admin: bool,
        /// A file holding the new user's password.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// List users.
    List,
    /// Delete a user (their refresh tokens stop working).
    Delete {
        /// Login name.
        name: String,
    },
    /// Set a user's password (from --new-password-file, BERTH_NEW_PASSWORD, or a prompt).
    Passwd {
        /// Login name.
        name: String,
        /// A file holding the new password.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

/// `berth org ...`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization (it owns the namespace of its name).
    Add {
        /// Its name.
        name: String,
    },
    /// List organizations.
    List,
    /// Delete an organization with its teams.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `berth team ...`
#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team in an organization.
    Add {
        /// The organization.
        org: String,
        /// The team.
        team: String,
    },
    /// List an organization's teams with their members.
    List {
        /// The organization.
        org: String,
    },
    /// Delete a team.
    Delete {
        /// The organization.
        org: String,
        /// The team.
        team: String,
    },
    /// Add a user to a team.
    AddMember {
        /// The organization.
        org: String,
        /// The team.
        team: String,
        /// The user.
        user: String,
    },
    /// Remove a user from a team.
    RemoveMember {
        /// The organization.
        org: String,
        /// The team.
        team: String,
        /// The user.
        user: String,
    },
}

/// `berth grant ...`
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Give a role: `berth grant add user:alice namespace:acme read-write`.
    Add {
        /// `user:NAME` or `team:ORG/TEAM`.
        subject: String,
        /// `namespace:NS` or `repository:NAME`.
        target: String,
        /// `read`, `read-write` or `admin`.
        role: String,
    },
    /// List grants.
    List,
    /// Remove a grant.
    Remove {
        /// The subject.
        subject: String,
        /// The target.
        target: String,
    },
}

/// `berth repo ...`
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create an empty repository.
    Add {
        /// Its name.
        name: String,
        /// Anyone may pull it.
        #[arg(long)]
        public: bool,
    },
    /// List repositories with their visibility.
    List,
    /// Make a repository public or private.
    Visibility {
        /// Its name.
        name: String,
        /// `public` or `private`.
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
    },
    /// Delete a repository with its manifests and tags.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `berth key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the signing keys, oldest first (the newest signs).
    List,
    /// Add a new signing key; tokens signed by older keys stay valid until they expire.
    Rotate,
}

/// How commands reach a running cluster's admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Base URL of any replica (or the load balancer).
    #[arg(
        long,
        value_name = "URL",
        env = "BERTH_URL",
        default_value = "http://127.0.0.1:5000"
    )]
    pub url: String,
    /// An administrator's user name.
    #[arg(
        long,
        value_name = "NAME",
        env = "BERTH_USERNAME",
        default_value = "admin"
    )]
    pub username: String,
    /// A file holding the password (first line); default: BERTH_PASSWORD, else a prompt.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for https URLs, e.g. the cluster's `/ca.pem`.
    #[arg(long, value_name = "FILE", env = "BERTH_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Flags of `berth join-token`.
#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// The cluster to ask.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// How long the token admits replicas (`30m`, `24h`, `7d`); `0` for no expiry.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub ttl: String,
}

/// Flags of `berth gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The cluster to ask.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Only report what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep what was pushed more recently than this (`0s`, `30m`, `1h`); default: `gc.grace`.
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,
    /// Untagged manifests: `keep` or `delete`; default: `gc.untagged`.
    #[arg(long, value_name = "POLICY", value_parser = ["keep", "delete"])]
    pub untagged: Option<String>,
    /// Print the last finished run's report instead of running.
    #[arg(long, conflicts_with_all = ["dry_run", "grace", "untagged"])]
    pub last: bool,
}

/// Flags of `berth fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The cluster to ask.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Also read every blob and recompute its digest.
    #[arg(long)]
    pub deep: bool,
}

/// Flags of `berth replicas`.
#[derive(Debug, Args)]
pub struct ReplicasArgs {
    /// The cluster to ask.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `berth remove-replica`.
#[derive(Debug, Args)]
pub struct RemoveReplicaArgs {
    /// The cluster to ask.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The id of the replica to remove (see `berth replicas`).
    pub id: u64,
}

/// Flags of `berth emergency-repair`.
#[derive(Debug, Args)]
pub struct EmergencyRepairArgs {
    /// The stopped replica's data directory.
    #[arg(long, value_name = "DIR", default_value = "berth-data")]
    pub data_dir: PathBuf,
    /// The URL other replicas will use to reach it, if it changed.
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// Confirm: the replicas that are gone are dropped from the membership for good.
    #[arg(long)]
    pub yes: bool,
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
    /// Blob storage URL: file:///dir, s3://bucket/prefix, gs://bucket/prefix or
    /// az://container/prefix.
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
    /// URL other replicas use to reach this one (default http://<bound address>).
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
    /// On first start, join the cluster of the member at URL instead of creating one.
    #[arg(long, value_name = "URL")]
    pub join: Option<String>,
    /// The join token (from `berth join-token`). Without --join: a token this new cluster
    /// accepts from replicas that join it.
    #[arg(long, value_name = "TOKEN", group = "join_secret")]
    pub join_token: Option<String>,
    /// A file holding the join token, instead of --join-token.
    #[arg(long, value_name = "FILE", group = "join_secret")]
    pub join_token_file: Option<PathBuf>,
    /// TLS: off (plain HTTP, the default), auto (Berth's own cluster CA, served at /ca.pem) or
    /// bundle (ca.pem, cert.pem, key.pem from --tls-dir).
    #[arg(long, value_name = "MODE")]
    pub tls: Option<String>,
    /// The TLS bundle's directory (default <data-dir>/tls); written by Berth with --tls auto.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// A name (DNS name or IP address) for the server certificate with --tls auto;
    /// repeatable (default: the listen address, localhost and 127.0.0.1).
    #[arg(long, value_name = "NAME")]
    pub san: Vec<String>,
    /// A file holding the first administrator's password (new cluster only); default:
    /// BERTH_ADMIN_PASSWORD, else a random one printed once.
    #[arg(long, value_name = "FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}
