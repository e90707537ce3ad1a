//! The commands that change Berth's metadata, and what applying one answers.
//!
//! Commands travel through the Raft log (serde_json) and are applied by every replica, so they
//! carry everything apply needs: timestamps (`at_ms`) are chosen by the proposer, never read
//! from the applying replica's clock. Changing a variant or a field name changes the log
//! format: add new variants instead.

use std::collections::BTreeMap;

use berth_oci::{Digest, RepoName, Tag};
use serde::{Deserialize, Serialize};

/// A change to the metadata, committed through Raft and applied by every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Make a verified, stored blob visible in `repo` (creates the repository if needed).
    /// Linking an already linked blob changes nothing.
    LinkBlob {
        /// Repository the blob becomes visible in.
        repo: RepoName,
        /// Digest of the blob's bytes.
        digest: Digest,
        /// Size of the blob in bytes.
        size: u64,
        /// When the proposer accepted the blob (ms since the Unix epoch).
        at_ms: i64,
    },
    /// Remove a blob link; `Rejected(BlobUnknown)` if not linked.
    UnlinkBlob {
        /// Repository the blob is linked to.
        repo: RepoName,
        /// Digest of the blob.
        digest: Digest,
    },
    /// Store a manifest (idempotent for the same digest) and optionally point `tag` at it.
    ///
    /// `Rejected(MissingReferences)` unless every `blobs` digest is linked to `repo` and every
    /// `children` manifest exists in `repo`. Creates the repository if needed. Records
    /// `manifest_refs` for `blobs` (kind `blob`) and `children` (kind `manifest`); the subject
    /// is not a reference and is stored in its column only.
    PutManifest {
        /// Repository the manifest is pushed to.
        repo: RepoName,
        /// Digest of `body`.
        digest: Digest,
        /// The manifest's media type (its `Content-Type`).
        media_type: String,
        /// The artifact type the referrers API reports (`artifactType`, else the config's
        /// media type for an image manifest), if any.
        artifact_type: Option<String>,
        /// The manifest exactly as pushed (JSON text).
        body: String,
        /// The manifest this one refers to (`subject`), if any.
        subject: Option<Digest>,
        /// The manifest's `annotations`.
        annotations: BTreeMap<String, String>,
        /// Blobs the manifest needs (config, layers).
        blobs: Vec<Digest>,
        /// Manifests the manifest needs (an index's `manifests`).
        children: Vec<Digest>,
        /// Tag to point at the manifest, moving it if it exists.
        tag: Option<Tag>,
        /// When the proposer accepted the push (ms since the Unix epoch).
        at_ms: i64,
    },
    /// Remove a manifest, all tags pointing at it and its refs; `Rejected(ManifestUnknown)` if
    /// absent.
    DeleteManifest {
        /// Repository holding the manifest.
        repo: RepoName,
        /// Digest of the manifest.
        digest: Digest,
    },
    /// Remove one tag only (the manifest stays); `Rejected(TagUnknown)` if absent.
    DeleteTag {
        /// Repository holding the tag.
        repo: RepoName,
        /// The tag to remove.
        tag: Tag,
    },
    /// A change to the cluster itself (replica ids, join tokens).
    Cluster(ClusterCommand),
    /// A change to who may use the registry (users).
    Access(AccessCommand),
    /// A step of an online garbage collection run (see `state_machine/gc.rs`).
    Gc(GcCommand),
    /// Several independent commands proposed at about the same time, applied in order as if
    /// each were its own entry (a rejection of one changes nothing for the others), answered
    /// with [`MetaResponse::Batch`]. One log entry, so one synced write, for all of them
    /// (group commit, `node/batch.rs`). Never nested.
    Batch(Vec<MetaCommand>),
}

impl MetaCommand {
    /// About how many bytes the command takes in the log, to bound a batch.
    pub(crate) fn approx_size(&self) -> usize {
        const SMALL: usize = 256;
        match self {
            MetaCommand::PutManifest { body, .. } => body.len() + SMALL,
            MetaCommand::Batch(cmds) => cmds.iter().map(MetaCommand::approx_size).sum(),
            _ => SMALL,
        }
    }
}

/// The metadata steps of one garbage collection run. Every step but `Collect` names the run
/// it belongs to and is refused (`Rejected(GcSuperseded)`) unless that run is the current one,
/// so two runs never claim digests at the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GcCommand {
    /// Starts run `run` (`Rejected(GcBusy)` while another run's lease is younger than an hour)
    /// and, atomically: deletes the manifests nothing keeps (when `delete_untagged`: untagged,
    /// not a child of a kept index, not a referrer of a kept manifest, created before
    /// `cutoff_ms`), then the blob links created before `cutoff_ms` that no remaining manifest
    /// of their repository references, and marks every digest left with no link at all as a
    /// candidate. Answers [`MetaResponse::GcCollected`].
    Collect {
        /// The run's id (chosen by the proposer).
        run: String,
        /// Links and untagged manifests created before this (ms since the epoch) may go.
        cutoff_ms: i64,
        /// Whether untagged manifests are deleted (the `gc.untagged = "delete"` policy).
        delete_untagged: bool,
        /// When the run started (ms since the epoch).
        at_ms: i64,
    },
    /// Claims blobs for deletion from storage: each digest that no repository links and that
    /// is not already claimed becomes `deleting` (LinkBlob of it is refused until released).
    /// Answers [`MetaResponse::GcClaimed`] with the digests claimed.
    Claim {
        /// The run.
        run: String,
        /// Digests with their sizes in bytes (as storage or the links said).
        blobs: Vec<(Digest, u64)>,
        /// When (ms since the epoch).
        at_ms: i64,
    },
    /// Ends the claims of `digests` (their bytes were deleted, or the attempt failed): they
    /// become tombstones.
    Release {
        /// The run.
        run: String,
        /// Digests claimed by this run.
        digests: Vec<Digest>,
        /// When (ms since the epoch).
        at_ms: i64,
    },
    /// Ends the run: its lease is dropped and `report` (JSON) is kept as the last report.
    Finish {
        /// The run.
        run: String,
        /// The run's report as JSON text.
        report: String,
    },
}

/// Changes to the cluster's own bookkeeping. Membership itself is Raft's (membership entries),
/// not a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// Hand out the next replica id (never reused, even after a removal); answers
    /// `ReplicaId`. The replica that created the cluster is 1.
    AllocateReplicaId,
    /// Accept a new join token. Only its SHA-256 is stored; adding the same one again changes
    /// nothing.
    AddJoinToken {
        /// Lowercase hex SHA-256 of the token.
        token_sha256: String,
        /// When it was made (ms since the Unix epoch).
        created_at_ms: i64,
        /// When it stops admitting replicas; `None`: never.
        expires_at_ms: Option<i64>,
    },
    /// Record that replica `id` was removed, so that it is never added back under that id
    /// (a removed replica restarted with `--join` must not slip back in).
    RetireReplica {
        /// The removed replica's id.
        id: u64,
    },
    /// Store the cluster's root CA (`--tls auto`) if it has none: the first proposer wins and
    /// the CA never changes afterwards; `Rejected(ClusterCaExists)` when one is stored.
    SetClusterCa {
        /// The CA certificate (PEM).
        cert_pem: String,
        /// The CA's private key (PEM, PKCS#8), generated by the proposer.
        key_pem: Redacted,
    },
}

/// A secret inside a command: serialized as the plain string, never shown by `Debug` (commands
/// may be logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Changes to users, organizations, teams, grants, repositories' visibility and signing keys.
/// Names arrive validated by the registry; subjects are `user:NAME` or `team:ORG/TEAM`,
/// targets `namespace:NS` or `repository:NAME`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessCommand {
    /// Create a user; `Rejected(UserExists)` if the name is taken.
    CreateUser {
        /// The login name.
        name: String,
        /// The password as an argon2id PHC string, hashed by the proposer.
        password_hash: String,
        /// Whether the user administers the whole registry.
        admin: bool,
        /// When it was created (ms since the Unix epoch).
        at_ms: i64,
    },
    /// Delete a user with their team memberships and grants; `Rejected(UserUnknown)`.
    DeleteUser {
        /// The login name.
        name: String,
    },
    /// Replace a user's password; `Rejected(UserUnknown)`.
    SetPassword {
        /// The login name.
        name: String,
        /// The new argon2id PHC string.
        password_hash: String,
        /// When (refresh tokens issued before stop working).
        at_ms: i64,
    },
    /// Create an organization; `Rejected(NameTaken)` if a user or organization has the name.
    CreateOrg {
        /// Its name (its namespace).
        name: String,
        /// When.
        at_ms: i64,
    },
    /// Delete an organization with its teams, their members and grants; `Rejected(OrgUnknown)`.
    DeleteOrg {
        /// Its name.
        name: String,
    },
    /// Create a team; `Rejected(OrgUnknown | TeamExists)`.
    CreateTeam {
        /// The organization.
        org: String,
        /// The team's name.
        team: String,
        /// When.
        at_ms: i64,
    },
    /// Delete a team with its members and grants; `Rejected(TeamUnknown)`.
    DeleteTeam {
        /// The organization.
        org: String,
        /// The team.
        team: String,
    },
    /// Add a user to a team (idempotent); `Rejected(TeamUnknown | UserUnknown)`.
    AddMember {
        /// The organization.
        org: String,
        /// The team.
        team: String,
        /// The user.
        user: String,
    },
    /// Remove a user from a team (idempotent).
    RemoveMember {
        /// The organization.
        org: String,
        /// The team.
        team: String,
        /// The user.
        user: String,
    },
    /// Give `role` to `subject` on `target`, replacing an earlier role;
    /// `Rejected(UserUnknown | TeamUnknown)`.
    SetGrant {
        /// `user:NAME` or `team:ORG/TEAM`.
        subject: String,
        /// `namespace:NS` or `repository:NAME`.
        target: String,
        /// `read`, `read-write` or `admin`.
        role: String,
    },
    /// Remove a grant; `Rejected(GrantUnknown)`.
    RemoveGrant {
        /// The subject.
        subject: String,
        /// The target.
        target: String,
    },
    /// Create an empty repository; `Rejected(RepositoryExists)`.
    CreateRepository {
        /// Its name.
        name: RepoName,
        /// Whether anyone may pull it.
        public: bool,
        /// When.
        at_ms: i64,
    },
    /// Make a repository public or private; `Rejected(RepositoryUnknown)`.
    SetVisibility {
        /// Its name.
        name: RepoName,
        /// Whether anyone may pull it.
        public: bool,
    },
    /// Delete a repository with its manifests, tags, blob links and grants;
    /// `Rejected(RepositoryUnknown)`. Blobs stay in storage for garbage collection.
    DeleteRepository {
        /// Its name.
        name: RepoName,
        /// When (tokens issued before no longer open the name).
        at_ms: i64,
    },
    /// Add a token-signing key; the newest key signs, every key verifies.
    AddSigningKey {
        /// Key id.
        kid: String,
        /// PKCS#8 PEM of the private key.
        private_pem: String,
        /// SPKI PEM of the public key.
        public_pem: String,
        /// When (orders the keys).
        at_ms: i64,
    },
}

impl std::fmt::Debug for AccessCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes and keys are secrets: name the command and its non-secret fields only.
        match self {
            AccessCommand::CreateUser { name, admin, .. } => {
                write!(f, "CreateUser {{ name: {name:?}, admin: {admin} }}")
            }
            AccessCommand::SetPassword { name, .. } => {
                write!(f, "SetPassword {{ name: {name:?} }}")
            }
            AccessCommand::AddSigningKey { kid, .. } => {
                write!(f, "AddSigningKey {{ kid: {kid:?} }}")
            }
            other => {
                let json = serde_json::to_string(other).unwrap_or_default();
                f.write_str(&json)
            }
        }
    }
}

/// What applying a [`MetaCommand`] answered. Identical on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    /// The command took effect (or was already in effect, for idempotent commands).
    Ok,
    /// The command was refused for a domain reason and changed nothing.
    Rejected(Rejection),
    /// The replica id handed out by [`ClusterCommand::AllocateReplicaId`].
    ReplicaId(u64),
    /// A [`MetaCommand::LinkBlob`] took effect, but garbage collection deleted that digest's
    /// bytes lately: the proposer must check that storage still holds the blob.
    LinkedAfterGc,
    /// What [`GcCommand::Collect`] did.
    GcCollected {
        /// Manifests deleted.
        manifests_deleted: u64,
        /// Blob links deleted.
        links_deleted: u64,
        /// Digests marked as candidates (no link left).
        candidates: u64,
    },
    /// The digests [`GcCommand::Claim`] claimed, in the order asked.
    GcClaimed(Vec<Digest>),
    /// The answers to a [`MetaCommand::Batch`], one per command, in its order.
    Batch(Vec<MetaResponse>),
}

/// Why a command was refused. Refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// The blob is not linked to the repository.
    BlobUnknown,
    /// The manifest does not exist in the repository.
    ManifestUnknown,
    /// The tag does not exist in the repository.
    TagUnknown,
    /// A user of that name exists already.
    UserExists,
    /// No user of that name.
    UserUnknown,
    /// A user or organization has that name (they share the namespace space).
    NameTaken,
    /// No organization of that name.
    OrgUnknown,
    /// The team exists already.
    TeamExists,
    /// No such team.
    TeamUnknown,
    /// No such grant.
    GrantUnknown,
    /// The repository exists already.
    RepositoryExists,
    /// No such repository.
    RepositoryUnknown,
    /// The cluster has a CA already ([`ClusterCommand::SetClusterCa`] lost the race).
    ClusterCaExists,
    /// Garbage collection is deleting this blob from storage right now: retry shortly.
    BlobDeleting,
    /// Another garbage collection run holds the lease.
    GcBusy,
    /// The run is not the current garbage collection run any more.
    GcSuperseded,
    /// A manifest refers to blobs not linked to its repository or to manifests absent from
    /// it. Both lists are sorted and without duplicates.
    MissingReferences {
        /// Referenced blobs not linked to the repository.
        blobs: Vec<Digest>,
        /// Referenced manifests absent from the repository.
        manifests: Vec<Digest>,
    },
}
