//! Repository names (`<name>` in every `/v2/<name>/…` route), validated against the grammar of
//! the OCI distribution spec v1.1. Parsing only: whether a repository exists is the registry's
//! business.

use thiserror::Error;

/// A validated repository name, per the OCI distribution spec v1.1 grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// at most 255 characters in total (slashes included).
///
/// Because the grammar is ASCII-only, the length in bytes equals the length in characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// Why a string is not a [`RepoName`]. Positions are byte offsets into the input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("repository name is empty")]
    Empty,
    /// The name is longer than [`RepoName::MAX_LEN`].
    #[error("repository name is {len} characters long; at most 255 are allowed")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// A path component is empty: `a//b`, `/a` or `a/`.
    #[error("repository name has an empty path component at byte {at}")]
    EmptyComponent {
        /// Where the empty component starts.
        at: usize,
    },
    /// A character outside `[a-z0-9._/-]`, such as an uppercase letter.
    #[error(
        "repository name has invalid character {ch:?} at byte {at}; \
         only lowercase letters, digits, '.', '_', '-' and '/' are allowed"
    )]
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// Where it is.
        at: usize,
    },
    /// A separator at the start or end of a component, or a run of separators other than
    /// `.`, `_`, `__` or one or more `-`.
    #[error(
        "repository name has a misplaced separator at byte {at}; components start and end with \
         a letter or digit, joined by '.', '_', '__' or dashes"
    )]
    InvalidSeparator {
        /// Where the separator run starts.
        at: usize,
    },
}

impl RepoName {
    /// The longest name accepted, in characters.
    pub const MAX_LEN: usize = 255;

    /// Parses and validates a repository name.
    ///
    /// # Errors
    /// [`NameError`] when `s` does not match the grammar or is longer than 255 characters.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        validate(s)?;
        Ok(Self(s.to_owned()))
    }
}

crate::validated_string!(RepoName, NameError);

fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > RepoName::MAX_LEN {
        return Err(NameError::TooLong { len: s.len() });
    }
    let mut offset = 0;
    for component in s.split('/') {
        validate_component(s, component, offset)?;
        offset += component.len() + 1;
    }
    Ok(())
}

/// Checks one path component, `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, starting at byte `offset` of
/// `name` (used for error positions only).
fn validate_component(name: &str, component: &str, offset: usize) -> Result<(), NameError> {
    if component.is_empty() {
        return Err(NameError::EmptyComponent { at: offset });
    }
    let bytes = component.as_bytes();
    // Start of the separator run being read, if any.
    let mut run_start: Option<usize> = None;
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'0'..=b'9' => {
                if let Some(start) = run_start.take() {
                    if !is_separator(&bytes[start..i]) {
                        return Err(NameError::InvalidSeparator { at: offset + start });
                    }
                }
            }
            b'.' | b'_' | b'-' => {
                if i == 0 {
                    return Err(NameError::InvalidSeparator { at: offset });
                }
                run_start.get_or_insert(i);
            }
            _ => {
                // Every byte before this one was ASCII, so this is a character boundary.
                let at = offset + i;
                let ch = name[at..]
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(NameError::InvalidCharacter { ch, at });
            }
        }
    }
    match run_start {
        Some(start) => Err(NameError::InvalidSeparator { at: offset + start }),
        None => Ok(()),
    }
}

/// `\.|_|__|-+`
fn is_separator(run: &[u8]) -> bool {
    matches!(run, b"." | b"_" | b"__") || run.iter().all(|&c| c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        let max = format!("{}/{}", "a".repeat(127), "b".repeat(127));
        assert_eq!(max.len(), 255);
        let cases = [
            "a",
            "0",
            "library/ubuntu",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "a.b_c__d-e--f",
            "a/b/c/d/e",
            "my-org/team.one/app_v2",
            "123/456",
            "a0b1/c2-d3",
            max.as_str(),
        ];
        for name in cases {
            let parsed = RepoName::parse(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.to_string(), name);
            assert_eq!(name.parse::<RepoName>().unwrap(), parsed);
        }
    }

    #[test]
    fn invalid_names() {
        let too_long = format!("{}/{}", "a".repeat(127), "b".repeat(128));
        assert_eq!(too_long.len(), 256);
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (&too_long, NameError::TooLong { len: 256 }),
            ("a//b", NameError::EmptyComponent { at: 2 }),
            ("/a", NameError::EmptyComponent { at: 0 }),
            ("a/", NameError::EmptyComponent { at: 2 }),
            ("/", NameError::EmptyComponent { at: 0 }),
            ("A", NameError::InvalidCharacter { ch: 'A', at: 0 }),
            (
                "library/Ubuntu",
                NameError::InvalidCharacter { ch: 'U', at: 8 },
            ),
            ("a b", NameError::InvalidCharacter { ch: ' ', at: 1 }),
            ("a:b", NameError::InvalidCharacter { ch: ':', at: 1 }),
            ("café", NameError::InvalidCharacter { ch: 'é', at: 3 }),
            ("a___b", NameError::InvalidSeparator { at: 1 }),
            ("a..b", NameError::InvalidSeparator { at: 1 }),
            ("a.-b", NameError::InvalidSeparator { at: 1 }),
            ("a-.b", NameError::InvalidSeparator { at: 1 }),
            ("a_-b", NameError::InvalidSeparator { at: 1 }),
            (".a", NameError::InvalidSeparator { at: 0 }),
            ("-a", NameError::InvalidSeparator { at: 0 }),
            ("_a", NameError::InvalidSeparator { at: 0 }),
            ("a.", NameError::InvalidSeparator { at: 1 }),
            ("a-", NameError::InvalidSeparator { at: 1 }),
            ("a__", NameError::InvalidSeparator { at: 1 }),
            ("a/.b", NameError::InvalidSeparator { at: 2 }),
            ("a/b-", NameError::InvalidSeparator { at: 3 }),
        ];
        for (name, want) in cases {
            assert_eq!(RepoName::parse(name).as_ref(), Err(want), "{name:?}");
        }
    }

    #[test]
    fn error_messages_do_not_echo_input() {
        let long = "A".repeat(10_000);
        assert!(RepoName::parse(&long).unwrap_err().to_string().len() < 100);
        let bad = format!("a{}", "B".repeat(200));
        assert!(RepoName::parse(&bad).unwrap_err().to_string().len() < 150);
    }

    #[test]
    fn serde_round_trip_validates() {
        let name = RepoName::parse("library/ubuntu").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"library/ubuntu\"");
        assert_eq!(serde_json::from_str::<RepoName>(&json).unwrap(), name);
        assert!(serde_json::from_str::<RepoName>("\"Library/Ubuntu\"").is_err());
        assert!(serde_json::from_str::<RepoName>("42").is_err());
    }
}
