//! The directory of who may use the registry, for the admin API: users, organizations,
//! teams and members, grants, repositories (creation, visibility, deletion).

use berth_auth::policy::Role;
use berth_oci::RepoName;
use berth_raft::{
    AccessCommand, MetaCommand, MetaResponse, Rejection, RepositoryRecord, StoredGrant, TeamRecord,
};

use super::{now_ms, Error, Registry, Result};

/// Whether `name` can be a user, organization or team name: a repository path component
/// (lowercase alphanumerics with single `.`, `_`, `-` separators), at most 64 characters,
/// since users and organizations own the namespace of their name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && RepoName::parse(name).is_ok_and(|r| !r.as_str().contains('/'))
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "{kind} name {name:?}: use lowercase letters, digits and single . _ - separators (at most 64)"
        )))
    }
}

/// A grant's subject and target, checked.
fn grant_parts(subject: &str, target: &str) -> Result<()> {
    let subject_ok = match subject.split_once(':') {
        Some(("user", user)) => valid_name(user),
        Some(("team", team)) => team
            .split_once('/')
            .is_some_and(|(o, t)| valid_name(o) && valid_name(t)),
        _ => false,
    };
    let target_ok = match target.split_once(':') {
        Some(("namespace", ns)) => valid_name(ns),
        Some(("repository", repo)) => RepoName::parse(repo).is_ok(),
        _ => false,
    };
    if subject_ok && target_ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(
            "a grant is `user:NAME` or `team:ORG/TEAM` on `namespace:NS` or `repository:NAME`"
                .to_owned(),
        ))
    }
}

fn refusal(rejection: &Rejection) -> Error {
    match rejection {
        Rejection::UserUnknown => Error::NotFound("user".to_owned()),
        Rejection::OrgUnknown => Error::NotFound("organization".to_owned()),
        Rejection::TeamUnknown => Error::NotFound("team".to_owned()),
        Rejection::GrantUnknown => Error::NotFound("grant".to_owned()),
        Rejection::RepositoryUnknown => Error::NotFound("repository".to_owned()),
        Rejection::UserExists => Error::Conflict("the user exists already".to_owned()),
        Rejection::NameTaken => {
            Error::Conflict("a user or organization has that name already".to_owned())
        }
        Rejection::TeamExists => Error::Conflict("the team exists already".to_owned()),
        Rejection::RepositoryExists => Error::Conflict("the repository exists already".to_owned()),
        other => Error::Conflict(format!("refused: {other:?}")),
    }
}

async fn hash(password: String) -> Result<String> {
    if password.len() < 8 {
        return Err(Error::InvalidRequest(
            "a password has at least 8 characters".to_owned(),
        ));
    }
    tokio::task::spawn_blocking(move || berth_auth::password::hash(&password))
        .await
        .map_err(|e| Error::InvalidRequest(format!("hashing: {e}")))?
        .map_err(|e| Error::InvalidRequest(e.to_string()))
}

impl Registry {
    async fn access_command(&self, cmd: AccessCommand) -> Result<()> {
        match self.meta.propose(MetaCommand::Access(cmd)).await? {
            MetaResponse::Ok => Ok(()),
            MetaResponse::Rejected(r) => Err(refusal(&r)),
            other => Err(super::blob::unexpected(&other)),
        }
    }

    /// Creates a user.
    ///
    /// # Errors
    /// Invalid name or short password, name taken, no quorum.
    pub async fn create_user(&self, name: &str, password: String, admin: bool) -> Result<()> {
        check_name("user", name)?;
        let password_hash = hash(password).await?;
        self.access_command(AccessCommand::CreateUser {
            name: name.to_owned(),
            password_hash,
            admin,
            at_ms: now_ms(),
        })
        .await
    }

    /// Deletes a user with their memberships and grants; their refresh tokens stop working.
    ///
    /// # Errors
    /// Unknown user, no quorum.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        self.access_command(AccessCommand::DeleteUser {
            name: name.to_owned(),
        })
        .await
    }

    /// Replaces a user's password; their refresh tokens stop working.
    ///
    /// # Errors
    /// Unknown user, short password, no quorum.
    pub async fn set_password(&self, name: &str, password: String) -> Result<()> {
        let password_hash = hash(password).await?;
        self.access_command(AccessCommand::SetPassword {
            name: name.to_owned(),
            password_hash,
            at_ms: now_ms(),
        })
        .await
    }

    /// Users' names and administrator flags.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn list_users(&self) -> Result<Vec<(String, bool)>> {
        self.meta.read_barrier().await?;
        Ok(self.meta.reader().users().await?)
    }

    /// Creates an organization (it owns the namespace of its name).
    ///
    /// # Errors
    /// Invalid name, name taken, no quorum.
    pub async fn create_org(&self, name: &str) -> Result<()> {
        check_name("organization", name)?;
        self.access_command(AccessCommand::CreateOrg {
            name: name.to_owned(),
            at_ms: now_ms(),
        })
        .await
    }

    /// Deletes an organization with its teams and their grants.
    ///
    /// # Errors
    /// Unknown organization, no quorum.
    pub async fn delete_org(&self, name: &str) -> Result<()> {
        self.access_command(AccessCommand::DeleteOrg {
            name: name.to_owned(),
        })
        .await
    }

    /// Organizations' names.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn list_orgs(&self) -> Result<Vec<String>> {
        self.meta.read_barrier().await?;
        Ok(self.meta.reader().organizations().await?)
    }

    /// Creates a team in an organization.
    ///
    /// # Errors
    /// Invalid name, unknown organization, team exists, no quorum.
    pub async fn create_team(&self, org: &str, team: &str) -> Result<()> {
        check_name("team", team)?;
        self.access_command(AccessCommand::CreateTeam {
            org: org.to_owned(),
            team: team.to_owned(),
            at_ms: now_ms(),
        })
        .await
    }

    /// Deletes a team with its members and grants.
    ///
    /// # Errors
    /// Unknown team, no quorum.
    pub async fn delete_team(&self, org: &str, team: &str) -> Result<()> {
        self.access_command(AccessCommand::DeleteTeam {
            org: org.to_owned(),
            team: team.to_owned(),
        })
        .await
    }

    /// The teams of an organization with their members.
    ///
    /// # Errors
    /// Unknown organization, metadata failures.
    pub async fn list_teams(&self, org: &str) -> Result<Vec<TeamRecord>> {
        self.meta.read_barrier().await?;
        if !self.meta.reader().organization_exists(org).await? {
            return Err(Error::NotFound("organization".to_owned()));
        }
        Ok(self.meta.reader().teams(org).await?)
    }

    /// Adds (`member = true`) or removes a user from a team.
    ///
    /// # Errors
    /// Unknown team or user, no quorum.
    pub async fn set_member(&self, org: &str, team: &str, user: &str, member: bool) -> Result<()> {
        let (org, team, user) = (org.to_owned(), team.to_owned(), user.to_owned());
        self.access_command(if member {
            AccessCommand::AddMember { org, team, user }
        } else {
            AccessCommand::RemoveMember { org, team, user }
        })
        .await
    }

    /// Gives `role` to `subject` on `target`.
    ///
    /// # Errors
    /// Malformed subject or target, unknown subject, no quorum.
    pub async fn set_grant(&self, subject: &str, target: &str, role: Role) -> Result<()> {
        grant_parts(subject, target)?;
        self.access_command(AccessCommand::SetGrant {
            subject: subject.to_owned(),
            target: target.to_owned(),
            role: role.as_str().to_owned(),
        })
        .await
    }

    /// Removes a grant.
    ///
    /// # Errors
    /// Unknown grant, no quorum.
    pub async fn remove_grant(&self, subject: &str, target: &str) -> Result<()> {
        self.access_command(AccessCommand::RemoveGrant {
            subject: subject.to_owned(),
            target: target.to_owned(),
        })
        .await
    }

    /// Every grant.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn list_grants(&self) -> Result<Vec<StoredGrant>> {
        self.meta.read_barrier().await?;
        Ok(self.meta.reader().grants().await?)
    }

    /// Creates an empty repository.
    ///
    /// # Errors
    /// Invalid name, exists, no quorum.
    pub async fn create_repository(&self, name: &str, public: bool) -> Result<()> {
        let name = RepoName::parse(name)
            .map_err(|e| Error::InvalidRequest(format!("repository name: {e}")))?;
        self.access_command(AccessCommand::CreateRepository {
            name,
            public,
            at_ms: now_ms(),
        })
        .await
    }

    /// Makes a repository public or private.
    ///
    /// # Errors
    /// Unknown repository, no quorum.
    pub async fn set_visibility(&self, name: &str, public: bool) -> Result<()> {
        let name = RepoName::parse(name).map_err(|_| Error::NotFound("repository".to_owned()))?;
        self.access_command(AccessCommand::SetVisibility { name, public })
            .await
    }

    /// Deletes a repository with its manifests, tags and blob links; tokens issued before no
    /// longer open the name.
    ///
    /// # Errors
    /// Unknown repository, no quorum.
    pub async fn delete_repository(&self, name: &str) -> Result<()> {
        let name = RepoName::parse(name).map_err(|_| Error::NotFound("repository".to_owned()))?;
        self.access_command(AccessCommand::DeleteRepository {
            name,
            at_ms: now_ms(),
        })
        .await
    }

    /// Every repository with its visibility.
    ///
    /// # Errors
    /// Metadata failures.
    pub async fn list_repository_records(&self) -> Result<Vec<RepositoryRecord>> {
        self.meta.read_barrier().await?;
        Ok(self.meta.reader().repository_records().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespace_components() {
        for good in ["alice", "team-a", "a.b_c", "x1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Alice", "a/b", "a..b", "-a", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn grants_name_a_subject_and_a_target() {
        assert!(grant_parts("user:alice", "namespace:team").is_ok());
        assert!(grant_parts("team:acme/devs", "repository:acme/app").is_ok());
        for (s, t) in [
            ("alice", "namespace:x"),
            ("user:alice", "x"),
            ("team:acme", "namespace:x"),
        ] {
            assert!(grant_parts(s, t).is_err(), "{s} {t}");
        }
    }
}
