//! Scopes of the Docker token protocol: `type:name:action[,action]`, as asked for on the
//! token endpoint and granted in a token's `access` claim.
//!
//! A repository name may contain `:` (a registry host with a port), so a scope is split at
//! its first and last colons only.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An action on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests and blobs.
    Pull,
    /// Write manifests and blobs (uploads, mounts, tags).
    Push,
    /// Delete manifests, tags and blobs: its own action, never implied by push.
    Delete,
    /// `*`: every action of the resource (the catalog's only action).
    #[serde(rename = "*")]
    All,
}

impl Action {
    /// Parses `pull`, `push`, `delete` or `*`.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            "*" => Some(Action::All),
            _ => None,
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::All => "*",
        }
    }
}

/// One scope: a resource and the actions asked or granted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog` for the registry.
    pub name: String,
    /// The actions, without duplicates, in their natural order.
    pub actions: BTreeSet<Action>,
}

impl Scope {
    /// A repository scope.
    pub fn repository(name: &str, actions: impl IntoIterator<Item = Action>) -> Scope {
        Scope {
            kind: "repository".to_owned(),
            name: name.to_owned(),
            actions: actions.into_iter().collect(),
        }
    }

    /// The catalog scope, `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope {
            kind: "registry".to_owned(),
            name: "catalog".to_owned(),
            actions: BTreeSet::from([Action::All]),
        }
    }

    /// Parses `type:name:actions`. Unknown actions are dropped (a client may ask for more
    /// than we know); a scope with no known action, or no name, is `None`.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let actions: BTreeSet<Action> = actions.split(',').filter_map(Action::parse).collect();
        if actions.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions,
        })
    }

    /// Whether this is a repository scope.
    pub fn is_repository(&self) -> bool {
        self.kind == "repository"
    }

    /// Whether this is the catalog scope.
    pub fn is_catalog(&self) -> bool {
        self.kind == "registry" && self.name == "catalog"
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        write!(f, "{}:{}:{}", self.kind, self.name, actions.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        let s = Scope::parse("repository:team/app:pull,push").unwrap();
        assert_eq!(
            s,
            Scope::repository("team/app", [Action::Pull, Action::Push])
        );
        assert_eq!(s.to_string(), "repository:team/app:pull,push");
        assert!(Scope::parse("registry:catalog:*").unwrap().is_catalog());
    }

    #[test]
    fn names_with_a_port_keep_their_colon() {
        let s = Scope::parse("repository:localhost:5000/app:pull").unwrap();
        assert_eq!(s.name, "localhost:5000/app");
        assert_eq!(s.actions, BTreeSet::from([Action::Pull]));
    }

    #[test]
    fn malformed_scopes_are_none() {
        for bad in [
            "",
            "repository",
            "repository:app",
            ":app:pull",
            "repository::pull",
            "repository:app:fly",
        ] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
        // Unknown actions are dropped, known ones kept.
        assert_eq!(
            Scope::parse("repository:app:fly,pull").unwrap().actions,
            BTreeSet::from([Action::Pull])
        );
    }
}
