//! Tags (`<reference>` when it is not a digest), validated against the distribution spec
//! grammar `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. Parsing only: what a tag points to is decided
//! by the registry's metadata.

use thiserror::Error;

/// A validated tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`, so 1 to 128 ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// Why a string is not a [`Tag`]. Positions are byte offsets into the input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TagError {
    /// The tag is the empty string.
    #[error("tag is empty")]
    Empty,
    /// The tag is longer than [`Tag::MAX_LEN`].
    #[error("tag is {len} characters long; at most 128 are allowed")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// The first character is not a letter, digit or `_` (a leading `.` or `-`, say).
    #[error("tag starts with {ch:?}; a tag starts with a letter, digit or '_'")]
    InvalidStart {
        /// The offending first character.
        ch: char,
    },
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error(
        "tag has invalid character {ch:?} at byte {at}; \
         only letters, digits, '.', '_' and '-' are allowed"
    )]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// Where it is.
        at: usize,
    },
}

impl Tag {
    /// The longest tag accepted, in characters.
    pub const MAX_LEN: usize = 128;

    /// Parses and validates a tag.
    ///
    /// # Errors
    /// [`TagError`] when `s` does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    pub fn parse(s: &str) -> Result<Self, TagError> {
        validate(s)?;
        Ok(Self(s.to_owned()))
    }
}

crate::validated_string!(Tag, TagError);

fn validate(s: &str) -> Result<(), TagError> {
    if s.len() > Tag::MAX_LEN {
        return Err(TagError::TooLong { len: s.len() });
    }
    let mut chars = s.char_indices();
    match chars.next() {
        None => return Err(TagError::Empty),
        Some((_, c)) if c.is_ascii_alphanumeric() || c == '_' => {}
        Some((_, ch)) => return Err(TagError::InvalidStart { ch }),
    }
    match chars.find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some((at, ch)) => Err(TagError::InvalidCharacter { ch, at }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_tags() {
        let max = format!("v{}", "1".repeat(127));
        let cases = [
            "latest",
            "v1.2.3",
            "V1",
            "_",
            "_hidden",
            "0",
            "1.0-rc.1_build-7",
            "sha256-abc.sig",
            "a..b--c__d",
            max.as_str(),
        ];
        for tag in cases {
            let parsed = Tag::parse(tag).unwrap_or_else(|e| panic!("{tag:?}: {e}"));
            assert_eq!(parsed.as_str(), tag);
            assert_eq!(parsed.to_string(), tag);
            assert_eq!(tag.parse::<Tag>().unwrap(), parsed);
        }
    }

    #[test]
    fn invalid_tags() {
        let too_long = "a".repeat(129);
        let cases: &[(&str, TagError)] = &[
            ("", TagError::Empty),
            (&too_long, TagError::TooLong { len: 129 }),
            (".hidden", TagError::InvalidStart { ch: '.' }),
            ("-rc", TagError::InvalidStart { ch: '-' }),
            ("é", TagError::InvalidStart { ch: 'é' }),
            ("v1:2", TagError::InvalidCharacter { ch: ':', at: 2 }),
            ("v1/2", TagError::InvalidCharacter { ch: '/', at: 2 }),
            ("a b", TagError::InvalidCharacter { ch: ' ', at: 1 }),
            ("a+b", TagError::InvalidCharacter { ch: '+', at: 1 }),
            ("aé", TagError::InvalidCharacter { ch: 'é', at: 1 }),
        ];
        for (tag, want) in cases {
            assert_eq!(Tag::parse(tag).as_ref(), Err(want), "{tag:?}");
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let tag = Tag::parse("v1.0").unwrap();
        let json = serde_json::to_string(&tag).unwrap();
        assert_eq!(json, "\"v1.0\"");
        assert_eq!(serde_json::from_str::<Tag>(&json).unwrap(), tag);
        assert!(serde_json::from_str::<Tag>("\".v1\"").is_err());
    }
}
