//! Berth's identity and access decisions. Stores nothing: the registry hands it the data
//! (users, grants, keys) it decides from (ARCHITECTURE.md).
//!
//! - [`password`]: argon2id hashing and verification, random passwords.
//! - [`tls`]: the cluster CA and server certificates, bundle checks, the listener's rustls config.

pub mod password;
pub mod tls;
