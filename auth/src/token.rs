//! JSON Web Tokens of the Docker token protocol: ES256, a `kid` naming one of our keys, the
//! registered claims and `access`. Access tokens are short-lived; refresh tokens (the OAuth2
//! "offline" form `docker login` stores) carry no access and are exchanged for access tokens.
//!
//! Verification trusts nothing in the token's header but the `kid`: the algorithm is fixed
//! to ES256 (so `alg: none` or HS256 with a public key as secret fail), the key comes from
//! our own key set, `iss` and `aud` must be ours, `exp`, `nbf` and `iat` must be present and
//! hold with 60 s of leeway.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::scope::Scope;

/// Clock leeway when checking `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    /// Presented to `/v2/` and the admin API.
    Access,
    /// Exchanged at the token endpoint for access tokens.
    Refresh,
}

/// The claims of a Berth token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user name, empty for anonymous.
    pub sub: String,
    /// Audience: the service name.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique id.
    pub jti: String,
    /// Granted access (empty for refresh tokens).
    #[serde(default)]
    pub access: Vec<Scope>,
    /// Access or refresh; absent means access (tokens of other issuers never get here).
    #[serde(default = "default_use", rename = "use")]
    pub token_use: TokenUse,
    /// `iat` in milliseconds, for revocation checks finer than a second (a password changed
    /// in the same second as a login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<u64>,
}

fn default_use() -> TokenUse {
    TokenUse::Access
}

/// Why a token was refused. Deliberately coarse: clients only learn "invalid".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, wrong algorithm, unknown key, bad signature, wrong issuer or audience.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past `exp` (beyond the leeway) or before `nbf`.
    #[error("token expired or not yet valid")]
    Expired,
    /// The token could not be signed.
    #[error("cannot sign a token: {0}")]
    Signing(String),
}

/// Signs claims with one key.
pub fn sign(claims: &Claims, kid: &str, private_pem: &str) -> Result<String, TokenError> {
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes())
        .map_err(|e| TokenError::Signing(e.to_string()))?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| TokenError::Signing(e.to_string()))
}

/// Our public keys by `kid`, ready to verify.
#[derive(Default, Clone)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// A key set from `(kid, public PEM)` pairs; unreadable keys are skipped.
    pub fn new<'a>(keys: impl IntoIterator<Item = (&'a str, &'a str)>) -> KeySet {
        KeySet {
            keys: keys
                .into_iter()
                .filter_map(|(kid, pem)| {
                    DecodingKey::from_ec_pem(pem.as_bytes())
                        .ok()
                        .map(|k| (kid.to_owned(), k))
                })
                .collect(),
        }
    }

    /// Whether a key with this id is in the set.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The `kid` of a token's header, without verifying anything.
    pub fn kid_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).ok()?.kid
    }

    /// Verifies `token` for `issuer` and `audience` and returns its claims.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] or [`TokenError::Expired`].
    pub fn verify(&self, token: &str, issuer: &str, audience: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Invalid(format!("algorithm {:?}", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("no kid".to_owned()))?;
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| TokenError::Invalid(format!("unknown key {kid}")))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature
                | jsonwebtoken::errors::ErrorKind::ImmatureSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::scope::Action;

    fn claims(now: u64) -> Claims {
        Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: "registry".into(),
            exp: now + 300,
            nbf: now,
            iat: now,
            jti: "j1".into(),
            access: vec![Scope::repository("alice/app", [Action::Pull])],
            token_use: TokenUse::Access,
            iat_ms: Some(now * 1000),
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn a_signed_token_verifies_and_round_trips() {
        let k = keys::generate().unwrap();
        let set = KeySet::new([(k.kid.as_str(), k.public_pem.as_str())]);
        let c = claims(now());
        let t = sign(&c, &k.kid, &k.private_pem).unwrap();
        assert_eq!(KeySet::kid_of(&t).as_deref(), Some(k.kid.as_str()));
        assert_eq!(set.verify(&t, "berth", "registry").unwrap(), c);
        assert!(set.verify(&t, "other", "registry").is_err());
        assert!(set.verify(&t, "berth", "other").is_err());
    }

    #[test]
    fn expired_tokens_and_unknown_keys_fail() {
        let k = keys::generate().unwrap();
        let set = KeySet::new([(k.kid.as_str(), k.public_pem.as_str())]);
        let mut c = claims(now() - 10_000);
        c.exp = now() - 1_000;
        let t = sign(&c, &k.kid, &k.private_pem).unwrap();
        assert_eq!(
            set.verify(&t, "berth", "registry"),
            Err(TokenError::Expired)
        );

        let stranger = keys::generate().unwrap();
        let t = sign(&claims(now()), &stranger.kid, &stranger.private_pem).unwrap();
        assert!(matches!(
            set.verify(&t, "berth", "registry"),
            Err(TokenError::Invalid(_))
        ));
        // Our kid on a stranger's signature.
        let t = sign(&claims(now()), &k.kid, &stranger.private_pem).unwrap();
        assert!(matches!(
            set.verify(&t, "berth", "registry"),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn alg_none_and_tampered_payloads_fail() {
        let k = keys::generate().unwrap();
        let set = KeySet::new([(k.kid.as_str(), k.public_pem.as_str())]);
        let t = sign(&claims(now()), &k.kid, &k.private_pem).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(now());
        c.access = vec![Scope::repository("bob/app", [Action::Push])];
        let forged_payload = b64(&serde_json::to_vec(&c).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(set.verify(&tampered, "berth", "registry").is_err());
        let none_header = b64(format!(r#"{{"alg":"none","kid":"{}"}}"#, k.kid).as_bytes());
        let unsigned = format!("{none_header}.{forged_payload}.");
        assert!(set.verify(&unsigned, "berth", "registry").is_err());
        let hs_header = b64(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, k.kid).as_bytes());
        assert!(set
            .verify(
                &format!("{hs_header}.{forged_payload}.{}", parts[2]),
                "berth",
                "registry"
            )
            .is_err());
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let k = keys::generate().unwrap();
        let set = KeySet::new([(k.kid.as_str(), k.public_pem.as_str())]);
        let mut v = serde_json::to_value(claims(now())).unwrap();
        v.as_object_mut().unwrap().remove("exp");
        let key = EncodingKey::from_ec_pem(k.private_pem.as_bytes()).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(k.kid.clone());
        let t = jsonwebtoken::encode(&header, &v, &key).unwrap();
        assert!(set.verify(&t, "berth", "registry").is_err());
    }
}
