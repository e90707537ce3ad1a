//! Who may use the admin API: the first administrator of a new cluster, and checking a
//! user's password. (Grants and tokens come with the identity issue.)

use berth_raft::{AccessCommand, MetaCommand, MetaResponse, Rejection};

use super::{now_ms, Error, Registry, Result};

/// Login name of the administrator created with a new cluster.
pub const ADMIN_USER: &str = "admin";

/// What [`Registry::ensure_admin`] found or did.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// Users existed already: nothing was done.
    Existing,
    /// The administrator was created with the operator's password.
    Created,
    /// The administrator was created with this random password, to be shown once.
    Generated(String),
}

impl std::fmt::Debug for AdminBootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminBootstrap::Existing => "Existing",
            AdminBootstrap::Created => "Created",
            AdminBootstrap::Generated(_) => "Generated(..)",
        })
    }
}

impl Registry {
    /// Creates the `admin` user when the cluster has no user at all, with `password` or a
    /// random one. Safe to call at every start of every replica: only the first call on a new
    /// cluster creates it, and concurrent calls agree through Raft.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the cluster cannot commit now.
    pub async fn ensure_admin(&self, password: Option<String>) -> Result<AdminBootstrap> {
        if self.meta.reader().user_count().await? > 0 {
            return Ok(AdminBootstrap::Existing);
        }
        self.meta.read_barrier().await?;
        if self.meta.reader().user_count().await? > 0 {
            return Ok(AdminBootstrap::Existing);
        }
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (berth_auth::password::generate(), true),
        };
        let to_hash = password.clone();
        let password_hash =
            tokio::task::spawn_blocking(move || berth_auth::password::hash(&to_hash))
                .await
                .map_err(|e| Error::InvalidRequest(format!("hashing: {e}")))?
                .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let created = self
            .meta
            .propose(MetaCommand::Access(AccessCommand::CreateUser {
                name: ADMIN_USER.to_owned(),
                password_hash,
                admin: true,
                at_ms: now_ms(),
            }))
            .await?;
        Ok(match created {
            MetaResponse::Rejected(Rejection::UserExists) => AdminBootstrap::Existing,
            _ if generated => AdminBootstrap::Generated(password),
            _ => AdminBootstrap::Created,
        })
    }
}

/// A valid argon2id hash of a random password, verified against for unknown users.
pub(super) fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            berth_auth::password::hash(&berth_auth::password::generate()).unwrap_or_default()
        })
        .clone()
}
