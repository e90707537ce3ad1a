//! The `<reference>` of `/v2/<name>/manifests/<reference>`: a tag or a digest. A digest always
//! contains `:` and a tag never does, so one character decides which grammar applies.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::{Digest, DigestError, Tag, TagError};

/// A manifest reference: a tag or a digest (distribution spec end-3, end-7, end-9).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable name such as `latest`.
    Tag(Tag),
    /// An immutable content address.
    Digest(Digest),
}

/// Why a string is not a [`Reference`]: the error of the grammar it was parsed with.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReferenceError {
    /// The reference has no `:`, and is not a valid tag.
    #[error(transparent)]
    Tag(#[from] TagError),
    /// The reference contains `:`, and is not a valid (or supported) digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl Reference {
    /// Parses a reference: a digest if `s` contains `:`, else a tag.
    ///
    /// # Errors
    /// [`ReferenceError::Digest`] or [`ReferenceError::Tag`] with the underlying reason.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            Ok(Self::Digest(Digest::parse(s)?))
        } else {
            Ok(Self::Tag(Tag::parse(s)?))
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(tag) => fmt::Display::fmt(tag, f),
            Self::Digest(digest) => fmt::Display::fmt(digest, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_and_digests() {
        let digest = Digest::sha256_of(b"x").to_string();
        let cases = [
            ("latest", true),
            ("v1.2.3", true),
            ("_x", true),
            (digest.as_str(), false),
        ];
        for (s, is_tag) in cases {
            let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(matches!(r, Reference::Tag(_)), is_tag, "{s:?}");
            assert_eq!(r.to_string(), s);
            assert_eq!(s.parse::<Reference>().unwrap(), r);
        }
    }

    #[test]
    fn reports_the_grammar_that_failed() {
        let cases = [
            ("", false),
            (".v1", false),
            ("v1/2", false),
            ("sha256:abc", true),
            ("md5:abc", true),
            ("v1:2", true),
        ];
        for (s, is_digest) in cases {
            let err = Reference::parse(s).unwrap_err();
            assert_eq!(
                matches!(err, ReferenceError::Digest(_)),
                is_digest,
                "{s:?}: {err}"
            );
        }
        assert!(matches!(
            Reference::parse("md5:abc"),
            Err(ReferenceError::Digest(
                DigestError::UnsupportedAlgorithm { .. }
            ))
        ));
    }
}
