//! Cheap hashing for ticket-keyed maps and the string interner.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Tickets are not attacker-chosen hash keys: a multiplicative hash is enough and far cheaper than
/// SipHash on the per-deal path.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u64(&mut self, x: u64) {
        let h = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 31);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// Deduplicated strings (symbols, comments); index 0 is the empty string.
#[derive(Debug)]
pub(crate) struct Interner {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32, BuildHasherDefault<IdHasher>>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner {
            names: Vec::new(),
            index: HashMap::default(),
        };
        i.intern("");
        i
    }
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.index.insert(s.into(), i);
        i
    }
    pub fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map(|s| &**s).unwrap_or("")
    }
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.index.get(s).copied()
    }
}
