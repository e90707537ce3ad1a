//! Passwords: hashed with argon2id (PHC strings, salt and parameters included), verified
//! against such a hash, and generated at random when the operator gives none.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;

/// Length of generated passwords: 24 alphanumerics, about 142 bits.
const GENERATED_LEN: usize = 24;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// The argon2id PHC string of `password` with a fresh random salt and argon2's default
/// parameters (19 MiB, 2 passes: OWASP's recommendation).
///
/// # Errors
/// Only if argon2 refuses its inputs (a password over 4 GiB).
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches `phc` (an argon2 PHC string). A malformed hash matches nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .and_then(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed))
        .is_ok()
}

/// A new random password.
pub fn generate() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), GENERATED_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse", &phc));
        assert!(!verify("correct horse ", &phc));
        assert!(!verify("", &phc));
    }

    #[test]
    fn salts_differ_and_garbage_never_verifies() {
        assert_ne!(hash("x").unwrap(), hash("x").unwrap());
        assert!(!verify("x", "not a hash"));
        assert!(!verify("x", ""));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate();
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate());
    }
}
