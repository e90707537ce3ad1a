//! Berth's identity and access decisions. Stores nothing: the registry hands it the data
//! (users, grants, keys) it decides from (ARCHITECTURE.md).
//!
//! - [`password`]: argon2id hashing and verification, random passwords.
//! - [`scope`]: the token protocol's scopes and actions.
//! - [`policy`]: roles, grants and who may do what on a repository.
//! - [`keys`] and [`token`]: ES256 signing keys and the JWTs signed with them.
//! - [`throttle`]: slowing down failed logins.
//! - [`tls`]: the cluster CA and server certificates, bundle checks, the listener's rustls config.

pub mod keys;
pub mod password;
pub mod policy;
pub mod scope;
pub mod throttle;
pub mod tls;
pub mod token;
