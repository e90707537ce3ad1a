//! Reads of the cluster's own state (join tokens, retired replicas, the CA) and of users.

use serde::{Deserialize, Serialize};

use super::MetaReader;
use crate::error::MetaError;

/// The cluster's root CA (`--tls auto`), as stored by
/// [`ClusterCommand::SetClusterCa`](crate::ClusterCommand::SetClusterCa).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCa {
    /// The CA certificate (PEM).
    pub cert_pem: String,
    /// The CA's private key (PEM). Secret: never printed.
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A registry user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// The login name.
    pub name: String,
    /// The password as an argon2id PHC string.
    pub password_hash: String,
    /// Whether the user administers the whole registry.
    pub admin: bool,
    /// When the user was created (ms since the epoch).
    pub created_at_ms: i64,
    /// When the password last changed (ms since the epoch).
    pub password_changed_at_ms: i64,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the hash: it is an offline-crackable secret.
        f.debug_struct("StoredUser")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl MetaReader {
    /// Whether a join token with this SHA-256 exists and has not expired at `now_ms`.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn join_token_valid(
        &self,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<bool, MetaError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM join_tokens WHERE token_sha256 = ? \
             AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
        )
        .bind(token_sha256)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whether replica `id` was removed from the cluster (and may never come back).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn replica_retired(&self, id: u64) -> Result<bool, MetaError> {
        let key = format!("{}{id}", crate::state_machine::cluster::RETIRED_PREFIX);
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The cluster's root CA, if one was stored.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn cluster_ca(&self) -> Result<Option<ClusterCa>, MetaError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT cert_pem, key_pem FROM cluster_ca WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(cert_pem, key_pem)| ClusterCa { cert_pem, key_pem }))
    }

    /// The user called `name`, if any.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn user(&self, name: &str) -> Result<Option<StoredUser>, MetaError> {
        let row: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT name, password_hash, is_admin, created_at_ms, password_changed_at_ms              FROM users WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(name, password_hash, admin, created_at_ms, password_changed_at_ms)| StoredUser {
                name,
                password_hash,
                admin: admin != 0,
                created_at_ms,
                password_changed_at_ms,
            },
        ))
    }

    /// How many users exist.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn user_count(&self) -> Result<u64, MetaError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
