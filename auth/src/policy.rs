//! Who may do what: roles, grants and the decision for one repository. Pure functions over
//! facts the registry reads from its metadata; nothing is stored here.
//!
//! - A registry administrator may do everything.
//! - A user owns the namespace of their own name (`alice/...`) with the admin role.
//! - Grants give a role to a user or a team, on a namespace (a repository name's first
//!   component) or on one repository. Roles: `read` (pull), `read-write` (pull, push),
//!   `admin` (pull, push, delete).
//! - A public repository can be pulled by anyone, anonymous included.
//! - Pushing to a repository that does not exist needs write on its namespace (it is then
//!   created).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::scope::Action;

/// A grant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Pull.
    Read,
    /// Pull and push.
    ReadWrite,
    /// Pull, push and delete.
    Admin,
}

impl Role {
    /// Parses `read`, `read-write` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "read-write" => Some(Role::ReadWrite),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::ReadWrite => "read-write",
            Role::Admin => "admin",
        }
    }

    /// The actions this role allows on a repository.
    pub fn actions(self) -> &'static [Action] {
        match self {
            Role::Read => &[Action::Pull],
            Role::ReadWrite => &[Action::Pull, Action::Push],
            Role::Admin => &[Action::Pull, Action::Push, Action::Delete],
        }
    }
}

/// Who asks: anonymous, or a user with their registry-wide flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A user who proved their password or holds a valid token.
    User {
        /// Login name.
        name: String,
        /// Registry administrator.
        admin: bool,
    },
}

impl Principal {
    /// The user name, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User { name, .. } => Some(name),
        }
    }
}

/// What the metadata says about one repository for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryFacts {
    /// Whether it exists.
    pub exists: bool,
    /// Whether anyone may pull it.
    pub public: bool,
    /// Roles the principal holds on the repository itself (directly or through teams).
    pub repository_roles: Vec<Role>,
    /// Roles the principal holds on its namespace (directly or through teams).
    pub namespace_roles: Vec<Role>,
}

/// The namespace of a repository name: its first path component.
pub fn namespace_of(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

/// The actions among `asked` that `principal` may perform on `repository`.
pub fn allowed_actions(
    principal: &Principal,
    repository: &str,
    facts: &RepositoryFacts,
    asked: &BTreeSet<Action>,
) -> BTreeSet<Action> {
    let mut allowed = BTreeSet::new();
    match principal {
        Principal::User { admin: true, .. } => {
            allowed.extend([Action::Pull, Action::Push, Action::Delete]);
        }
        Principal::User { name, .. } => {
            if namespace_of(repository) == name {
                allowed.extend(Role::Admin.actions());
            }
            for role in &facts.namespace_roles {
                allowed.extend(role.actions());
            }
            if facts.exists {
                for role in &facts.repository_roles {
                    allowed.extend(role.actions());
                }
            }
        }
        Principal::Anonymous => {}
    }
    if facts.exists && facts.public {
        allowed.insert(Action::Pull);
    }
    if asked.contains(&Action::All) {
        return allowed;
    }
    allowed.intersection(asked).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Principal {
        Principal::User {
            name: name.to_owned(),
            admin: false,
        }
    }

    fn facts(exists: bool, public: bool, repo: &[Role], ns: &[Role]) -> RepositoryFacts {
        RepositoryFacts {
            exists,
            public,
            repository_roles: repo.to_vec(),
            namespace_roles: ns.to_vec(),
        }
    }

    fn set(actions: &[Action]) -> BTreeSet<Action> {
        actions.iter().copied().collect()
    }

    const ALL: &[Action] = &[Action::Pull, Action::Push, Action::Delete];

    #[test]
    fn administrators_may_do_everything() {
        let admin = Principal::User {
            name: "root".into(),
            admin: true,
        };
        let got = allowed_actions(&admin, "x/y", &facts(false, false, &[], &[]), &set(ALL));
        assert_eq!(got, set(ALL));
    }

    #[test]
    fn a_user_owns_their_namespace_only() {
        let f = facts(false, false, &[], &[]);
        assert_eq!(
            allowed_actions(&user("alice"), "alice/app", &f, &set(ALL)),
            set(ALL)
        );
        assert!(allowed_actions(&user("alice"), "bob/app", &f, &set(ALL)).is_empty());
        assert!(allowed_actions(&user("alice"), "alicex/app", &f, &set(ALL)).is_empty());
    }

    #[test]
    fn roles_give_their_actions_and_no_more() {
        let read = facts(true, false, &[Role::Read], &[]);
        assert_eq!(
            allowed_actions(&user("u"), "t/a", &read, &set(ALL)),
            set(&[Action::Pull])
        );
        let rw = facts(true, false, &[Role::ReadWrite], &[]);
        assert_eq!(
            allowed_actions(&user("u"), "t/a", &rw, &set(ALL)),
            set(&[Action::Pull, Action::Push]),
            "read-write never deletes"
        );
        let ns_admin = facts(true, false, &[], &[Role::Admin]);
        assert_eq!(
            allowed_actions(&user("u"), "t/a", &ns_admin, &set(ALL)),
            set(ALL)
        );
    }

    #[test]
    fn repository_grants_do_not_open_a_missing_repository() {
        // A grant left on a deleted repository must not let anyone create it again.
        let f = facts(false, false, &[Role::ReadWrite], &[]);
        assert!(allowed_actions(&user("u"), "t/a", &f, &set(ALL)).is_empty());
        // Namespace write creates it.
        let f = facts(false, false, &[], &[Role::ReadWrite]);
        assert_eq!(
            allowed_actions(&user("u"), "t/a", &f, &set(&[Action::Push])),
            set(&[Action::Push])
        );
    }

    #[test]
    fn public_repositories_are_pullable_by_anyone_only() {
        let f = facts(true, true, &[], &[]);
        assert_eq!(
            allowed_actions(&Principal::Anonymous, "t/a", &f, &set(ALL)),
            set(&[Action::Pull])
        );
        let private = facts(true, false, &[], &[]);
        assert!(allowed_actions(&Principal::Anonymous, "t/a", &private, &set(ALL)).is_empty());
    }

    #[test]
    fn only_what_was_asked_is_granted() {
        let f = facts(true, false, &[Role::Admin], &[]);
        assert_eq!(
            allowed_actions(&user("u"), "t/a", &f, &set(&[Action::Pull])),
            set(&[Action::Pull])
        );
    }

    #[test]
    fn roles_parse() {
        for r in [Role::Read, Role::ReadWrite, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("owner"), None);
    }
}
