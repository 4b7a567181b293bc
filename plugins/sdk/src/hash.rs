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

/// Groups (lists of names, such as a store and a product) numbered as [`Numbered`] does, and
/// compared in the order of their names without comparing texts most of the time: each group
/// keeps the first 16 bytes of an order-preserving encoding of its names, and only groups whose
/// 16 bytes are equal compare their names. Sorting a closed window's rows by group this way
/// took the revenue aggregator's sort from a third of its time (the texts compared byte by byte
/// in WebAssembly) to a few integer comparisons per row.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    numbered: Numbered<Vec<String>>,
    prefixes: Vec<u128>,
}

impl Groups {
    /// The number of the group `names`, a new one the first time it is seen.
    pub fn number(&mut self, names: Vec<String>) -> u32 {
        let n = self.numbered.number(names);
        if n as usize == self.prefixes.len() {
            self.prefixes.push(order_prefix(self.numbered.get(n)));
        }
        n
    }

    /// The names of group `n`.
    pub fn get(&self, n: u32) -> &[String] {
        self.numbered.get(n)
    }

    /// Groups `a` and `b` in the order of their names (as `Vec<String>` compares them).
    pub fn cmp(&self, a: u32, b: u32) -> std::cmp::Ordering {
        let (pa, pb) = (self.prefixes[a as usize], self.prefixes[b as usize]);
        pa.cmp(&pb).then_with(|| self.get(a).cmp(self.get(b)))
    }

    pub fn clear(&mut self) {
        self.numbered.clear();
        self.prefixes.clear();
    }
}

/// The first 16 bytes (big-endian, zero-padded) of `names` encoded so that byte order is list
/// order: each name's bytes with 0 written as 0 0xFF, then 0 0 to end it. UTF-8 never holds the
/// byte 0xFF, so an escaped 0 sorts after a name's end; padding with zeros keeps a shorter
/// encoding first. A truncated encoding never orders two lists the wrong way round, it can
/// only tie.
fn order_prefix(names: &[String]) -> u128 {
    let mut out = [0u8; 16];
    let bytes = names.iter().flat_map(|n| {
        let escaped = n.bytes().flat_map(|b| match b {
            0 => [Some(0), Some(0xFF)],
            b => [Some(b), None],
        });
        escaped.flatten().chain([0, 0])
    });
    for (slot, b) in out.iter_mut().zip(bytes) {
        *slot = b;
    }
    u128::from_be_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_compare_as_their_names_do() {
        let texts = [
            "",
            "\0",
            "\0\0",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "b",
            "é",
            "S001",
            "SKU-00001",
        ];
        let long = [
            "SKU-000010000000000000",
            "SKU-000010000000000001",
            "SKU-00001",
        ];
        let mut lists: Vec<Vec<String>> = Vec::new();
        for x in texts.iter().chain(&long) {
            for y in texts.iter().chain(&long) {
                lists.push(vec![x.to_string(), y.to_string()]);
            }
        }
        let mut groups = Groups::default();
        let numbers: Vec<u32> = lists.iter().map(|l| groups.number(l.clone())).collect();
        for (a, la) in numbers.iter().zip(&lists) {
            for (b, lb) in numbers.iter().zip(&lists) {
                assert_eq!(groups.cmp(*a, *b), la.cmp(lb), "{la:?} {lb:?}");
            }
        }
        assert_eq!(groups.number(lists[3].clone()), numbers[3]);
        assert_eq!(groups.get(numbers[5]), &lists[5][..]);
        groups.clear();
        assert_eq!(groups.number(lists[7].clone()), 0);
        assert_eq!(groups.cmp(0, 0), std::cmp::Ordering::Equal);
    }

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
