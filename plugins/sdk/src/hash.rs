//! Deterministic hashing for plugins: 64-bit FNV-1a for ids kept in state and for turning ids
//! into compact numbers, and [`FastMap`] for hash maps. Both are the same across runs and
//! machines, unlike std's random-keyed SipHash.

use std::hash::Hasher;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::default();
    h.write(bytes);
    h.finish()
}

/// FNV-1a as a [`Hasher`].
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(OFFSET)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(PRIME);
        }
    }
}

/// A `HashMap` with a fast deterministic hasher: rustc's Fx hash, which mixes a word at a time
/// (FNV-1a takes a multiply per byte: in the profile of the sales cleaner, interning its strings
/// cost more than finding them). Only ids kept in state ([`fnv1a`]) need a hash that never
/// changes; a map's hasher decides nothing but its own layout.
pub type FastMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Values numbered in the order first seen: a `u32` is a cheaper map key than the value (a
/// window store keyed by a store and product hashes 4 bytes instead of two strings), and the
/// number gives the value back.
#[derive(Debug, Clone)]
pub struct Numbered<T> {
    values: Vec<T>,
    numbers: FastMap<T, u32>,
}

impl<T> Default for Numbered<T> {
    fn default() -> Self {
        Numbered {
            values: Vec::new(),
            numbers: FastMap::default(),
        }
    }
}

impl<T: std::hash::Hash + Eq + Clone> Numbered<T> {
    /// The number of `value`: a new one the first time it is seen.
    pub fn number(&mut self, value: T) -> u32 {
        if let Some(&n) = self.numbers.get(&value) {
            return n;
        }
        let n = self.values.len() as u32;
        self.values.push(value.clone());
        self.numbers.insert(value, n);
        n
    }

    /// The value numbered `n`.
    pub fn get(&self, n: u32) -> &T {
        &self.values[n as usize]
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.numbers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn numbers_are_given_once_in_order_and_give_the_value_back() {
        let mut n = Numbered::default();
        assert_eq!([n.number("b"), n.number("a"), n.number("b")], [0, 1, 0]);
        assert_eq!((*n.get(0), *n.get(1)), ("b", "a"));
        n.clear();
        assert_eq!(n.number("a"), 0);
    }
}
