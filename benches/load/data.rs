//! Deterministic blob contents, generated on the fly so a 512 MiB blob is never held in
//! memory. A blob is a sequence of 1 MiB blocks: one pseudo-random block per blob, with the
//! blob's seed and the block's index written over its first 16 bytes, so every block of
//! every blob differs and the content is unique per run (the run seed comes from the clock).
//! No HTTP here besides turning a byte range into a streamed request body.

use std::io;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

/// Size of one generated block, and of the frames a streamed body is cut into.
pub const BLOCK: u64 = 1 << 20;

/// A blob that can be regenerated, byte for byte, any number of times.
#[derive(Debug, Clone)]
pub struct BlobSpec {
    seed: u64,
    /// Length in bytes.
    pub len: u64,
    base: Bytes,
    /// `sha256:<hex>` of the whole content.
    pub digest: String,
}

impl BlobSpec {
    /// Describes a blob of `len` bytes and computes its digest (one pass over the content).
    pub fn new(seed: u64, len: u64) -> Self {
        let mut spec = BlobSpec {
            seed,
            len,
            base: Bytes::from(pseudo_random(seed, BLOCK as usize)),
            digest: String::new(),
        };
        let mut hasher = Sha256::new();
        for piece in spec.pieces(0, len) {
            hasher.update(&piece);
        }
        spec.digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        spec
    }

    fn block(&self, index: u64) -> Bytes {
        let block_len = BLOCK.min(self.len - index * BLOCK) as usize;
        let mut block = self.base[..block_len].to_vec();
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&self.seed.to_le_bytes());
        header[8..].copy_from_slice(&index.to_le_bytes());
        let n = header.len().min(block_len);
        block[..n].copy_from_slice(&header[..n]);
        Bytes::from(block)
    }

    /// The bytes `[start, end)` as pieces of at most one block, produced lazily.
    pub fn pieces(&self, start: u64, end: u64) -> impl Iterator<Item = Bytes> + Send + 'static {
        let spec = self.clone();
        let end = end.min(self.len);
        let first = start / BLOCK;
        let last = if end > start {
            (end - 1) / BLOCK + 1
        } else {
            first
        };
        (first..last).map(move |index| {
            let block_start = index * BLOCK;
            let block = spec.block(index);
            let from = start.saturating_sub(block_start) as usize;
            let to = ((end - block_start) as usize).min(block.len());
            block.slice(from..to)
        })
    }

    /// The bytes `[start, end)` as a streamed request body (no `Content-Length` of its own:
    /// callers set the header).
    pub fn body(&self, start: u64, end: u64) -> reqwest::Body {
        let frames = self.pieces(start, end).map(Ok::<Bytes, io::Error>);
        reqwest::Body::wrap_stream(futures::stream::iter(frames))
    }
}

/// `len` bytes from xorshift64* seeded with `seed`.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A small blob held in memory, with its digest.
#[derive(Debug, Clone)]
pub struct SmallBlob {
    /// The content.
    pub bytes: Bytes,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
}

impl SmallBlob {
    /// `len` pseudo-random bytes derived from `seed`.
    pub fn new(seed: u64, len: usize) -> Self {
        Self::from_bytes(Bytes::from(pseudo_random(seed, len)))
    }

    /// Wraps given bytes.
    pub fn from_bytes(bytes: Bytes) -> Self {
        let digest = sha256(&bytes);
        SmallBlob { bytes, digest }
    }
}

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Mixes a run seed with a blob number into a well-spread seed.
pub fn derive_seed(run_seed: u64, n: u64) -> u64 {
    let mut z = run_seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
