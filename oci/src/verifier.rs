//! Streaming digest verification while blob bytes arrive (distribution spec end-4b, end-5,
//! end-6): one [`DigestHasher`] per upload, fed chunk by chunk, checked against the digest the
//! client names when it closes the upload.
//!
//! An upload spans several HTTP requests that may land on different processes, so the running
//! hash state can be saved to bytes and restored elsewhere. The saved form is sha2's own
//! `SerializableState` (stable across sha2 0.11.x) behind a small header; no bytes are re-read.
//! This module never touches storage: callers persist the saved state wherever they keep
//! upload sessions.

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};
use thiserror::Error;

use crate::{Algorithm, Digest};

/// Incremental hasher for one [`Algorithm`], resumable across processes with
/// [`save_state`](Self::save_state) and [`restore_state`](Self::restore_state).
#[derive(Clone, Debug)]
pub struct DigestHasher {
    inner: Inner,
    bytes_hashed: u64,
}

#[derive(Clone, Debug)]
enum Inner {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// The computed digest differs from the one the client asked for (callers answer
/// `DIGEST_INVALID`).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("content digest {actual} does not match the expected {expected}")]
pub struct Mismatch {
    /// The digest the client named.
    pub expected: Digest,
    /// The digest of the bytes actually received.
    pub actual: Digest,
}

/// Why saved hasher state could not be restored. The state is opaque to callers; any of these
/// means it was truncated, corrupted or not produced by [`DigestHasher::save_state`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StateError {
    /// The header is missing or names a format version this build does not know.
    #[error("saved hasher state has an unknown format")]
    UnknownFormat,
    /// The header names an algorithm this build does not know.
    #[error("saved hasher state names unknown algorithm tag {0}")]
    UnknownAlgorithm(u8),
    /// The state is not the size its algorithm requires.
    #[error("saved hasher state is {actual} bytes long; expected {expected}")]
    Length {
        /// Size the algorithm requires.
        expected: usize,
        /// Size received.
        actual: usize,
    },
    /// The hash state is internally inconsistent or disagrees with the recorded byte count.
    #[error("saved hasher state is corrupt")]
    Corrupt,
}

/// Saved state layout, format version 1:
///
/// | bytes    | content                                                        |
/// |----------|----------------------------------------------------------------|
/// | 0..4     | magic `BDH` + format version `1`                               |
/// | 4        | algorithm: 1 = sha256, 2 = sha512                              |
/// | 5..13    | bytes hashed so far, u64 little-endian                         |
/// | 13..     | sha2 0.11 `SerializableState` of the hasher (104 or 208 bytes) |
const MAGIC: [u8; 4] = *b"BDH\x01";
const HEADER_LEN: usize = 13;
const TAG_SHA256: u8 = 1;
const TAG_SHA512: u8 = 2;

/// sha2 0.11 serializes a hasher as its core (`state` words, then the processed block count as
/// a little-endian integer) followed by its block buffer (one `pos` byte, then `BLOCK - 1`
/// bytes of which the first `pos` are pending input and the rest zero). These offsets let `restore_state` cross-check the byte
/// count; the `state_layout_matches_sha2` test pins them.
struct Layout {
    /// Offset of the block counter.
    counter: usize,
    /// Width of the block counter in bytes (u64 for SHA-256, u128 for SHA-512).
    counter_len: usize,
    /// Block size in bytes; the buffer position byte follows the counter.
    block: u128,
}

const SHA256_LAYOUT: Layout = Layout {
    counter: 32,
    counter_len: 8,
    block: 64,
};
const SHA512_LAYOUT: Layout = Layout {
    counter: 64,
    counter_len: 16,
    block: 128,
};

impl Layout {
    /// Bytes hashed according to the serialized core and buffer, if they are well formed.
    fn bytes_hashed(&self, state: &[u8]) -> Option<u128> {
        let mut counter = [0u8; 16];
        counter[..self.counter_len]
            .copy_from_slice(state.get(self.counter..self.counter + self.counter_len)?);
        let blocks = u128::from_le_bytes(counter);
        let pos = u128::from(*state.get(self.counter + self.counter_len)?);
        blocks.checked_mul(self.block)?.checked_add(pos)
    }
}

impl DigestHasher {
    /// A hasher with no bytes hashed yet.
    pub fn new(algorithm: Algorithm) -> Self {
        let inner = match algorithm {
            Algorithm::Sha256 => Inner::Sha256(Sha256::new()),
            Algorithm::Sha512 => Inner::Sha512(Sha512::new()),
        };
        Self {
            inner,
            bytes_hashed: 0,
        }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Sha256(_) => Algorithm::Sha256,
            Inner::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds the next bytes of the content.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.inner {
            Inner::Sha256(h) => h.update(bytes),
            Inner::Sha512(h) => h.update(bytes),
        }
        self.bytes_hashed += bytes.len() as u64;
    }

    /// How many bytes have been fed so far (the upload offset a `Range` header reports).
    pub fn bytes_hashed(&self) -> u64 {
        self.bytes_hashed
    }

    /// The digest of all bytes fed, consuming the hasher.
    pub fn finish(self) -> Digest {
        match self.inner {
            Inner::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            Inner::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &h.finalize()),
        }
    }

    /// The digest of the bytes fed so far, leaving the hasher usable.
    pub fn peek(&self) -> Digest {
        self.clone().finish()
    }

    /// Serializes the running state: an opaque byte string (at most 221 bytes) that
    /// [`restore_state`](Self::restore_state) turns back into an equivalent hasher, in this or
    /// another process built with sha2 0.11.
    pub fn save_state(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 208);
        out.extend_from_slice(&MAGIC);
        out.push(match self.inner {
            Inner::Sha256(_) => TAG_SHA256,
            Inner::Sha512(_) => TAG_SHA512,
        });
        out.extend_from_slice(&self.bytes_hashed.to_le_bytes());
        match &self.inner {
            Inner::Sha256(h) => out.extend_from_slice(&h.serialize()),
            Inner::Sha512(h) => out.extend_from_slice(&h.serialize()),
        }
        out
    }

    /// Restores a hasher saved by [`save_state`](Self::save_state).
    ///
    /// # Errors
    /// [`StateError`] when `bytes` is not an intact saved state; the caller should treat the
    /// upload as unusable (`BLOB_UPLOAD_INVALID`), since the hash cannot be recomputed here.
    pub fn restore_state(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
            return Err(StateError::UnknownFormat);
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&bytes[5..HEADER_LEN]);
        let bytes_hashed = u64::from_le_bytes(count);
        let state = &bytes[HEADER_LEN..];
        let (inner, layout) = match bytes[4] {
            TAG_SHA256 => (Inner::Sha256(deserialize(state)?), &SHA256_LAYOUT),
            TAG_SHA512 => (Inner::Sha512(deserialize(state)?), &SHA512_LAYOUT),
            tag => return Err(StateError::UnknownAlgorithm(tag)),
        };
        if layout.bytes_hashed(state) != Some(u128::from(bytes_hashed)) {
            return Err(StateError::Corrupt);
        }
        Ok(Self {
            inner,
            bytes_hashed,
        })
    }

    /// Finishes the hash and compares it with `expected`. A hasher of another algorithm than
    /// `expected`'s always mismatches, so create it with `DigestHasher::new(expected.algorithm())`.
    ///
    /// # Errors
    /// [`Mismatch`] with both digests when they differ.
    pub fn verify(self, expected: &Digest) -> Result<(), Mismatch> {
        let actual = self.finish();
        if actual == *expected {
            Ok(())
        } else {
            Err(Mismatch {
                expected: expected.clone(),
                actual,
            })
        }
    }
}

fn deserialize<H: SerializableState>(state: &[u8]) -> Result<H, StateError> {
    let expected = std::mem::size_of::<sha2::digest::common::hazmat::SerializedState<H>>();
    let array =
        <&sha2::digest::common::hazmat::SerializedState<H>>::try_from(state).map_err(|_| {
            StateError::Length {
                expected,
                actual: state.len(),
            }
        })?;
    H::deserialize(array).map_err(|_| StateError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const ABC_SHA512: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                              2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn known_vectors() {
        let cases = [
            (
                Algorithm::Sha256,
                &b""[..],
                Digest::sha256_of(b"").hex().to_owned(),
            ),
            (Algorithm::Sha256, b"abc", ABC_SHA256.to_owned()),
            (Algorithm::Sha512, b"abc", ABC_SHA512.to_owned()),
        ];
        for (algorithm, input, hex) in cases {
            let mut h = DigestHasher::new(algorithm);
            assert_eq!(h.algorithm(), algorithm);
            h.update(input);
            assert_eq!(h.bytes_hashed(), input.len() as u64);
            assert_eq!(h.peek().hex(), hex);
            assert_eq!(h.finish().hex(), hex);
        }
        assert_eq!(
            DigestHasher::new(Algorithm::Sha256).finish().hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn incremental_equals_one_shot() {
        let input = data(10_000);
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            for chunk in [1, 7, 63, 64, 65, 128, 1000, 10_000] {
                let mut h = DigestHasher::new(algorithm);
                for piece in input.chunks(chunk) {
                    h.update(piece);
                }
                assert_eq!(h.bytes_hashed(), 10_000);
                assert_eq!(
                    h.finish(),
                    Digest::of(algorithm, &input),
                    "{algorithm:?} {chunk}"
                );
            }
        }
    }

    #[test]
    fn save_and_restore_mid_stream_continues_the_same_hash() {
        let input = data(5_000);
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            for split in [0, 1, 63, 64, 127, 128, 129, 4_999, 5_000] {
                let mut first = DigestHasher::new(algorithm);
                first.update(&input[..split]);
                let saved = first.save_state();
                assert!(saved.len() <= 221);
                let mut resumed = DigestHasher::restore_state(&saved)
                    .unwrap_or_else(|e| panic!("{algorithm:?} at {split}: {e}"));
                assert_eq!(resumed.algorithm(), algorithm);
                assert_eq!(resumed.bytes_hashed(), split as u64);
                assert_eq!(resumed.peek(), first.peek());
                resumed.update(&input[split..]);
                assert_eq!(resumed.finish(), Digest::of(algorithm, &input));
            }
        }
    }

    #[test]
    fn state_layout_matches_sha2() {
        // The cross-check in restore_state relies on these offsets; if sha2 changed its
        // serialization, every restore would fail with Corrupt and this test names the cause.
        for (algorithm, layout, len) in [
            (Algorithm::Sha256, &SHA256_LAYOUT, 104),
            (Algorithm::Sha512, &SHA512_LAYOUT, 208),
        ] {
            for n in [0usize, 5, 64, 200, 1_000_003] {
                let mut h = DigestHasher::new(algorithm);
                h.update(&data(n));
                let saved = h.save_state();
                assert_eq!(saved.len(), HEADER_LEN + len);
                assert_eq!(layout.bytes_hashed(&saved[HEADER_LEN..]), Some(n as u128));
            }
        }
    }

    #[test]
    fn restore_rejects_garbage() {
        let mut h = DigestHasher::new(Algorithm::Sha256);
        h.update(&data(100));
        let good = h.save_state();

        let mut wrong_count = good.clone();
        wrong_count[5] ^= 1;
        let mut bad_pos = good.clone();
        bad_pos[HEADER_LEN + 40] = 64; // buffer position must be below the block size
        let mut dirty_buffer = good.clone();
        *dirty_buffer.last_mut().unwrap() = 1; // bytes past the position must be zero
        let mut other_version = good.clone();
        other_version[3] = 2;
        let mut unknown_algorithm = good.clone();
        unknown_algorithm[4] = 9;
        let mut sha512_tag = good.clone();
        sha512_tag[4] = TAG_SHA512;

        let cases: Vec<(&str, Vec<u8>, StateError)> = vec![
            ("empty", vec![], StateError::UnknownFormat),
            (
                "random",
                b"not a hasher state at all".to_vec(),
                StateError::UnknownFormat,
            ),
            ("version", other_version, StateError::UnknownFormat),
            (
                "algorithm",
                unknown_algorithm,
                StateError::UnknownAlgorithm(9),
            ),
            (
                "truncated",
                good[..good.len() - 1].to_vec(),
                StateError::Length {
                    expected: 104,
                    actual: 103,
                },
            ),
            (
                "extended",
                [&good[..], &[0]].concat(),
                StateError::Length {
                    expected: 104,
                    actual: 105,
                },
            ),
            (
                "wrong algorithm for state",
                sha512_tag,
                StateError::Length {
                    expected: 208,
                    actual: 104,
                },
            ),
            ("count", wrong_count, StateError::Corrupt),
            ("position", bad_pos, StateError::Corrupt),
            ("buffer", dirty_buffer, StateError::Corrupt),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(
                DigestHasher::restore_state(&bytes).unwrap_err(),
                want,
                "{what}"
            );
        }
        assert!(DigestHasher::restore_state(&good).is_ok());
    }

    #[test]
    fn verify_reports_both_digests() {
        let mut h = DigestHasher::new(Algorithm::Sha256);
        h.update(b"abc");
        assert_eq!(h.clone().verify(&Digest::sha256_of(b"abc")), Ok(()));
        let err = h.clone().verify(&Digest::sha256_of(b"abd")).unwrap_err();
        assert_eq!(err.expected, Digest::sha256_of(b"abd"));
        assert_eq!(err.actual, Digest::sha256_of(b"abc"));
        assert!(err.to_string().contains(ABC_SHA256));
        // Another algorithm never matches.
        let sha512 = Digest::of(Algorithm::Sha512, b"abc");
        assert!(h.verify(&sha512).is_err());
    }
}
