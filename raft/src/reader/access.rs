//! Reads for access decisions and the admin API: users, organizations, teams, grants,
//! repositories' visibility and signing keys.

use serde::Serialize;

use super::MetaReader;
use crate::error::MetaError;

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredGrant {
    /// `user:NAME` or `team:ORG/TEAM`.
    pub subject: String,
    /// `namespace:NS` or `repository:NAME`.
    pub target: String,
    /// `read`, `read-write` or `admin`.
    pub role: String,
}

/// A repository's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepositoryRecord {
    /// Its name.
    pub name: String,
    /// Whether anyone may pull it.
    pub public: bool,
    /// When it was created (ms since the epoch).
    pub created_at_ms: i64,
}

/// A team with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamRecord {
    /// The organization.
    pub org: String,
    /// The team's name.
    pub name: String,
    /// Its members' user names, sorted.
    pub members: Vec<String>,
}

/// A signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    /// SPKI PEM of the public key.
    pub public_pem: String,
    /// When it was added.
    pub created_at_ms: i64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

impl MetaReader {
    /// Every user's name and administrator flag, by name.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn users(&self) -> Result<Vec<(String, bool)>, MetaError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, is_admin FROM users ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(n, a)| (n, a != 0)).collect())
    }

    /// Every organization's name.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn organizations(&self) -> Result<Vec<String>, MetaError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM organizations ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Whether an organization exists.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn organization_exists(&self, name: &str) -> Result<bool, MetaError> {
        let row: Option<i64> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The teams of `org` with their members.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn teams(&self, org: &str) -> Result<Vec<TeamRecord>, MetaError> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM teams WHERE org = ? ORDER BY name")
                .bind(org)
                .fetch_all(&self.pool)
                .await?;
        let mut teams = Vec::with_capacity(names.len());
        for name in names {
            let members: Vec<String> = sqlx::query_scalar(
                "SELECT user FROM team_members WHERE org = ? AND team = ? ORDER BY user",
            )
            .bind(org)
            .bind(&name)
            .fetch_all(&self.pool)
            .await?;
            teams.push(TeamRecord {
                org: org.to_owned(),
                name,
                members,
            });
        }
        Ok(teams)
    }

    /// Every grant, by subject then target.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn grants(&self) -> Result<Vec<StoredGrant>, MetaError> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT subject, target, role FROM grants ORDER BY subject, target")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(subject, target, role)| StoredGrant {
                subject,
                target,
                role,
            })
            .collect())
    }

    /// The roles `user` holds, directly or through a team, on each of `targets`; answers
    /// `(target, role)` pairs.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn roles_of(
        &self,
        user: &str,
        targets: &[String],
    ) -> Result<Vec<(String, String)>, MetaError> {
        let mut found = Vec::new();
        for target in targets {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT target, role FROM grants WHERE target = ?1 AND (subject = 'user:' || ?2 \
                 OR subject IN (SELECT 'team:' || org || '/' || team FROM team_members WHERE user = ?2))",
            )
            .bind(target)
            .bind(user)
            .fetch_all(&self.pool)
            .await?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// A repository's record, if it exists.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn repository(&self, name: &str) -> Result<Option<RepositoryRecord>, MetaError> {
        let row: Option<(String, i64, i64)> =
            sqlx::query_as("SELECT name, public, created_at_ms FROM repositories WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(name, public, created_at_ms)| RepositoryRecord {
            name,
            public: public != 0,
            created_at_ms,
        }))
    }

    /// When the repository of this name was last deleted, if ever.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn repository_deleted_at(&self, name: &str) -> Result<Option<i64>, MetaError> {
        Ok(
            sqlx::query_scalar("SELECT deleted_at_ms FROM repository_deletions WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every repository's record, by name.
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn repository_records(&self) -> Result<Vec<RepositoryRecord>, MetaError> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT name, public, created_at_ms FROM repositories ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, public, created_at_ms)| RepositoryRecord {
                name,
                public: public != 0,
                created_at_ms,
            })
            .collect())
    }

    /// Every signing key, oldest first (the last one signs).
    ///
    /// # Errors
    /// [`MetaError::Storage`] if SQLite fails.
    pub async fn signing_keys(&self) -> Result<Vec<StoredKey>, MetaError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT kid, private_pem, public_pem, created_at_ms FROM signing_keys \
             ORDER BY created_at_ms, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(kid, private_pem, public_pem, created_at_ms)| StoredKey {
                kid,
                private_pem,
                public_pem,
                created_at_ms,
            })
            .collect())
    }
}
