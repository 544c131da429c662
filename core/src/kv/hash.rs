//! Prefix-cache block hashes: a chained xxh3-128 over (parent hash, token ids, extra keys).
//!
//! ```text
//! tokens   [t0 .. t15][t16 .. t31][t32 .. t40)      block_size 16
//! hashes   h0 = H(ROOT, t0..t15, extra)             (extra keys: first block only, e.g. a salt)
//!          h1 = H(h0,   t16..t31)
//!          (the partial block t32..t40 has no hash: only full blocks are ever shared)
//! ```
//! Equal hashes mean equal token prefixes (up to xxh3-128 collisions, ~2^-64 per pair), so a
//! block can be reused by any request whose prefix hashes the same. The hash is stable across
//! runs, machines and targets (little-endian bytes, fixed seed), unlike `DefaultHasher`.

use xxhash_rust::xxh3::xxh3_128;

/// The hash of one full block and, through its parent, of every token before it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u128);

impl std::fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockHash({:08x}..)", (self.0 >> 96) as u32)
    }
}

/// Stand-in parent of the first block (vLLM's `NONE_HASH`), fixed so hashes are reproducible.
const ROOT: u128 = 0x7465_7373_6572_615f_7072_6566_6978_5f31; // "tessera_prefix_1"

/// `H(parent, tokens, extra)`: xxh3-128 of the parent hash, the token count and ids, and the
/// extra-key bytes, all little-endian.
pub fn hash_block_tokens(parent: Option<BlockHash>, tokens: &[u32], extra_keys: Option<&[u8]>) -> BlockHash {
    let mut buf = Vec::with_capacity(16 + 8 + 4 * tokens.len() + 9 + extra_keys.map_or(0, <[u8]>::len));
    buf.extend_from_slice(&parent.map_or(ROOT, |h| h.0).to_le_bytes());
    buf.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    for t in tokens {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    match extra_keys {
        None => buf.push(0),
        Some(e) => {
            buf.push(1);
            buf.extend_from_slice(&(e.len() as u64).to_le_bytes());
            buf.extend_from_slice(e);
        }
    }
    BlockHash(xxh3_128(&buf))
}

/// Extends `hashes` (the chain of `tokens`' first full blocks) to cover every full block of
/// `tokens`. `extra_keys` enter the first block's hash only.
pub fn extend_block_hashes(hashes: &mut Vec<BlockHash>, tokens: &[u32], block_size: usize, extra_keys: Option<&[u8]>) {
    let full = tokens.len() / block_size;
    while hashes.len() < full {
        let i = hashes.len();
        let block = &tokens[i * block_size..(i + 1) * block_size];
        let extra = if i == 0 { extra_keys } else { None };
        hashes.push(hash_block_tokens(hashes.last().copied(), block, extra));
    }
}

/// The hashes of every full block of `tokens`.
pub fn hash_request_tokens(tokens: &[u32], block_size: usize, extra_keys: Option<&[u8]>) -> Vec<BlockHash> {
    let mut v = Vec::new();
    extend_block_hashes(&mut v, tokens, block_size, extra_keys);
    v
}
