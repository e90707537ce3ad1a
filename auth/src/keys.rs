//! Token-signing keys: ECDSA P-256 (ES256) key pairs, made here, stored by the registry in
//! the replicated metadata so that every replica signs and verifies with the same keys.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

/// A new signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Key id, carried in a token's `kid` header.
    pub kid: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    /// SPKI PEM of the public key.
    pub public_pem: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate a signing key: {0}")]
pub struct KeyError(String);

/// Generates a P-256 key pair with a random key id.
///
/// # Errors
/// Only if the system's random source fails.
pub fn generate() -> Result<NewKey, KeyError> {
    let pair =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| KeyError(e.to_string()))?;
    let mut id = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
    Ok(NewKey {
        kid: hex::encode(id),
        private_pem: pair.serialize_pem(),
        public_pem: pair.public_key_pem(),
    })
}
