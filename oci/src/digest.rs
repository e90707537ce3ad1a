//! Content digests (`algorithm:encoded`), the addresses of every blob and manifest.
//!
//! Parsing follows the OCI image-spec descriptor grammar and then the registered algorithms:
//! Berth accepts `sha256` and `sha512` and reports any other well-formed algorithm as
//! [`DigestError::UnsupportedAlgorithm`], so callers can answer `UNSUPPORTED` instead of
//! `DIGEST_INVALID` where the spec allows it. Streaming hashing lives in `verifier`.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;
use thiserror::Error;

use crate::Excerpt;

/// A digest algorithm Berth can compute and verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the algorithm every client uses by default.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The registered name, as it appears before the `:` of a digest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the encoded (lowercase hex) part of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

/// A content digest, `algorithm:encoded`, for example `sha256:e3b0c442…b855`.
///
/// Grammar (image-spec): algorithm `[a-z0-9]+([+._-][a-z0-9]+)*`, encoded `[a-zA-Z0-9=_-]+`.
/// `sha256` needs exactly 64 lowercase hex characters and `sha512` exactly 128. Only valid
/// digests of supported algorithms can be constructed, so `Display` always prints a canonical
/// digest and equal content always gives equal values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a [`Digest`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DigestError {
    /// The string is not a well-formed digest (callers answer `DIGEST_INVALID`).
    #[error("invalid digest: {reason}")]
    Invalid {
        /// What is wrong, in a few words; never contains the input.
        reason: &'static str,
    },
    /// The string is a grammatically valid digest of an algorithm Berth does not implement,
    /// such as `md5:abc` (callers answer `DIGEST_INVALID` or `UNSUPPORTED`).
    #[error("unsupported digest algorithm {}; use sha256 or sha512", Excerpt(.algorithm))]
    UnsupportedAlgorithm {
        /// The algorithm part of the input, as given.
        algorithm: String,
    },
}

impl Digest {
    /// Parses and validates a digest.
    ///
    /// # Errors
    /// [`DigestError::UnsupportedAlgorithm`] for a well-formed digest whose algorithm is not
    /// `sha256` or `sha512`; [`DigestError::Invalid`] for anything else that is malformed,
    /// including a `sha256`/`sha512` value of the wrong length or with uppercase hex.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let invalid = |reason| Err(DigestError::Invalid { reason });
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return invalid("missing ':' between algorithm and encoded value");
        };
        if algorithm.is_empty() {
            return invalid("algorithm is empty");
        }
        if !is_algorithm_grammar(algorithm) {
            return invalid("algorithm must match [a-z0-9]+([+._-][a-z0-9]+)*");
        }
        if encoded.is_empty() {
            return invalid("encoded value is empty");
        }
        if !encoded
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
        {
            return invalid("encoded value must match [a-zA-Z0-9=_-]+");
        }
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(DigestError::UnsupportedAlgorithm {
                    algorithm: other.to_owned(),
                })
            }
        };
        let lower_hex = encoded
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if encoded.len() != algorithm.hex_len() || !lower_hex {
            return invalid(match algorithm {
                Algorithm::Sha256 => "sha256 digests need exactly 64 lowercase hex characters",
                Algorithm::Sha512 => "sha512 digests need exactly 128 lowercase hex characters",
            });
        }
        Ok(Self {
            algorithm,
            hex: encoded.to_owned(),
        })
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded part: lowercase hex, [`Algorithm::hex_len`] characters long.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The SHA-256 digest of `bytes`; shorthand for `Digest::of(Algorithm::Sha256, bytes)`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Self::of(Algorithm::Sha256, bytes)
    }

    /// The digest of `bytes` under `algorithm`. Use `DigestHasher` for data that arrives in
    /// pieces.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        match algorithm {
            Algorithm::Sha256 => Self::from_hash(algorithm, &sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => Self::from_hash(algorithm, &sha2::Sha512::digest(bytes)),
        }
    }

    /// Builds a digest from a finished hash of `algorithm`'s output length.
    pub(crate) fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Digest {
        debug_assert_eq!(hash.len() * 2, algorithm.hex_len());
        Digest {
            algorithm,
            hex: hex::encode(hash),
        }
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn is_algorithm_grammar(s: &str) -> bool {
    s.split(['+', '.', '_', '-']).all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
                                47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

    #[test]
    fn valid_digests() {
        let cases = [
            (
                format!("sha256:{EMPTY_SHA256}"),
                Algorithm::Sha256,
                EMPTY_SHA256,
            ),
            (
                format!("sha512:{EMPTY_SHA512}"),
                Algorithm::Sha512,
                EMPTY_SHA512,
            ),
        ];
        for (s, algorithm, hex) in &cases {
            let d = Digest::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(d.algorithm(), *algorithm);
            assert_eq!(d.hex(), *hex);
            assert_eq!(d.hex().len(), algorithm.hex_len());
            assert_eq!(d.to_string(), *s);
            assert_eq!(s.parse::<Digest>().unwrap(), d);
        }
    }

    #[test]
    fn invalid_digests() {
        let upper = format!("sha256:{}", EMPTY_SHA256.to_uppercase());
        let short = format!("sha256:{}", &EMPTY_SHA256[..63]);
        let long = format!("sha256:{EMPTY_SHA256}0");
        let non_hex = format!("sha256:{}g", &EMPTY_SHA256[..63]);
        let sha512_short = format!("sha512:{EMPTY_SHA256}");
        let two_colons = format!("sha256:{EMPTY_SHA256}:x");
        let padded = format!(" sha256:{EMPTY_SHA256}");
        let cases = [
            "",
            ":",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:abc",
            "sha256+:abc",
            "+sha256:abc",
            "sha..256:abc",
            "md5:",
            "md5:ab c",
            "md5:abc/def",
            &upper,
            &short,
            &long,
            &non_hex,
            &sha512_short,
            &two_colons,
            &padded,
        ];
        for s in cases {
            match Digest::parse(s) {
                Err(DigestError::Invalid { .. }) => {}
                other => panic!("{s:?}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_algorithms() {
        let cases = [
            ("md5:abc", "md5"),
            ("sha384:abc", "sha384"),
            ("blake3:abc", "blake3"),
            (
                "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
                "multihash+base58",
            ),
            (
                "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
                "sha256+b64u",
            ),
            ("a.b_c-d+e:x=", "a.b_c-d+e"),
        ];
        for (s, algorithm) in cases {
            assert_eq!(
                Digest::parse(s),
                Err(DigestError::UnsupportedAlgorithm {
                    algorithm: algorithm.to_owned()
                }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn error_messages_do_not_echo_input() {
        let long_algorithm = format!("{}:abc", "a".repeat(10_000));
        assert!(
            Digest::parse(&long_algorithm)
                .unwrap_err()
                .to_string()
                .len()
                < 150
        );
        let long_value = format!("sha256:{}", "A".repeat(10_000));
        assert!(Digest::parse(&long_value).unwrap_err().to_string().len() < 100);
    }

    #[test]
    fn of_computes_known_vectors() {
        assert_eq!(Digest::sha256_of(b"").hex(), EMPTY_SHA256);
        assert_eq!(Digest::of(Algorithm::Sha512, b"").hex(), EMPTY_SHA512);
        assert_eq!(
            Digest::sha256_of(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn serde_round_trip_validates() {
        let d = Digest::sha256_of(b"abc");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
        assert!(serde_json::from_str::<Digest>("\"md5:abc\"").is_err());
    }
}
