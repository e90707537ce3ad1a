//! Berth's OCI vocabulary: repository names, tags, digests and references, the streaming digest
//! verifier, media types, manifest validation and the distribution-spec error codes.
//!
//! This crate is the leaf every other Berth crate shares, so that clients, the registry, auth and
//! raft parse names and digests with one parser (as distribution split out `reference` and
//! `digest`). It does no I/O and knows nothing of HTTP frameworks, async runtimes or storage:
//! values go in, typed values or small errors come out. Error messages never echo more than a
//! short excerpt of their input, so they are safe to put in a response body or a log line.

mod digest;
mod error_code;
mod manifest;
pub mod media_type;
mod name;
mod reference;
mod tag;
mod verifier;

pub use crate::digest::{Algorithm, Digest, DigestError};
pub use crate::error_code::ErrorCode;
pub use crate::manifest::{parse_manifest, Descriptor, ManifestError, ParsedManifest};
pub use crate::media_type::{
    essence, is_non_distributable, is_valid_media_type, manifest_kind, ManifestKind,
    DOCKER_FOREIGN_LAYER, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V1_SIGNED, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
    OCI_NONDISTRIBUTABLE_LAYER_PREFIX,
};
pub use crate::name::{NameError, RepoName};
pub use crate::reference::{Reference, ReferenceError};
pub use crate::tag::{Tag, TagError};
pub use crate::verifier::{DigestHasher, Mismatch, StateError};

use std::fmt;

/// Shows at most [`Excerpt::LIMIT`] characters of untrusted input, quoted and escaped, so that an
/// error message built from a multi-kilobyte header or body stays short and printable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Excerpt<'a>(pub(crate) &'a str);

impl Excerpt<'_> {
    /// Characters kept before the excerpt is cut off with `…`.
    const LIMIT: usize = 64;
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(Self::LIMIT) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}…", &self.0[..cut]),
        }
    }
}

/// Implements `as_str`, `FromStr`, `Display`, `AsRef<str>`, `Serialize` (as a plain string) and a
/// validating `Deserialize` for a newtype over `String` whose module has
/// `fn validate(&str) -> Result<(), $err>`.
macro_rules! validated_string {
    ($ty:ident, $err:ty) => {
        impl $ty {
            /// The validated string, exactly as it was parsed.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $err;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                validate(&s).map_err(<D::Error as ::serde::de::Error>::custom)?;
                Ok(Self(s))
            }
        }
    };
}
pub(crate) use validated_string;

#[cfg(test)]
mod tests {
    use super::Excerpt;

    #[test]
    fn excerpt_keeps_short_input_and_cuts_long_input() {
        assert_eq!(Excerpt("abc").to_string(), "\"abc\"");
        let long = "x".repeat(10_000);
        let shown = Excerpt(&long).to_string();
        assert_eq!(shown, format!("\"{}\"…", "x".repeat(Excerpt::LIMIT)));
        // Cutting respects character boundaries and escapes control characters.
        let multi = "é\n".repeat(100);
        let shown = Excerpt(&multi).to_string();
        assert!(shown.ends_with('…'));
        assert!(shown.contains("\\n"));
    }
}
