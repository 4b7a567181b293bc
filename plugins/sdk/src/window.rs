//! Event-time windows: assignment and a keyed store that closes windows on the watermark.
//!
//! A window is the half-open interval `[start, end)`. The host's watermark `w` promises that no
//! event with time `< w` will arrive any more, so a window is complete, and is emitted, once
//! `end <= w`. Windows are aligned to the Unix epoch (a 1-minute window starts on the minute).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::hash::Hash;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::hash::FastMap;
use crate::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Fixed-size, non-overlapping windows.
#[derive(Debug, Clone, Copy)]
pub struct Tumbling {
    pub size_ms: i64,
}

impl Tumbling {
    pub fn new(size_ms: i64) -> Self {
        assert!(size_ms > 0, "window size must be positive");
        Tumbling { size_ms }
    }

    /// The one window holding `ts`.
    pub fn assign(&self, ts: Timestamp) -> Window {
        let start = ts.div_euclid(self.size_ms) * self.size_ms;
        Window {
            start,
            end: start + self.size_ms,
        }
    }
}

/// Fixed-size windows starting every `hop_ms`; an event belongs to `size / hop` of them.
#[derive(Debug, Clone, Copy)]
pub struct Hopping {
    pub size_ms: i64,
    pub hop_ms: i64,
}

impl Hopping {
    /// `size_ms` must be a positive multiple of `hop_ms`.
    pub fn new(size_ms: i64, hop_ms: i64) -> Result<Self, String> {
        if hop_ms <= 0 || size_ms <= 0 || size_ms % hop_ms != 0 {
            return Err(format!(
                "hopping window size {size_ms}ms must be a positive multiple of the hop {hop_ms}ms"
            ));
        }
        Ok(Hopping { size_ms, hop_ms })
    }

    /// Every window holding `ts`, earliest first.
    pub fn assign(&self, ts: Timestamp) -> impl Iterator<Item = Window> {
        let last_start = ts.div_euclid(self.hop_ms) * self.hop_ms;
        let count = self.size_ms / self.hop_ms;
        let (size, hop) = (self.size_ms, self.hop_ms);
        (0..count).rev().map(move |i| {
            let start = last_start - i * hop;
            Window {
                start,
                end: start + size,
            }
        })
    }
}

/// Accumulators per (window, key), emitted in order of window end, then key, when the watermark
/// passes the window's end. Serialisable, so it goes straight into a plugin's snapshot.
///
/// Windows are kept in order (there are few open at a time); keys within a window are hashed
/// (one [`crate::hash::Fnv64`] hash per lookup instead of comparisons along a tree path), and
/// sorted once, when the window closes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Clone + Ord + Hash, A: Serialize + Clone",
    deserialize = "K: DeserializeOwned + Ord + Hash, A: DeserializeOwned"
))]
#[serde(into = "Vec<(Window, K, A)>", from = "Vec<(Window, K, A)>")]
pub struct WindowStore<K: Ord + Hash, A> {
    /// (end, start) -> key -> accumulator.
    open: BTreeMap<(Timestamp, Timestamp), FastMap<K, A>>,
    len: usize,
}

impl<K: Ord + Hash, A> Default for WindowStore<K, A> {
    fn default() -> Self {
        WindowStore {
            open: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Hash, A> WindowStore<K, A> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The accumulator of `key` in `window`, created with `init` on first use.
    pub fn entry(&mut self, window: Window, key: K, init: impl FnOnce() -> A) -> &mut A {
        let keys = self.open.entry((window.end, window.start)).or_default();
        let len = &mut self.len;
        keys.entry(key).or_insert_with(|| {
            *len += 1;
            init()
        })
    }

    /// [`WindowStore::entry`] by a borrowed key: the key is copied only when it is new.
    pub fn entry_ref<Q>(&mut self, window: Window, key: &Q, init: impl FnOnce() -> A) -> &mut A
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let keys = self.open.entry((window.end, window.start)).or_default();
        if !keys.contains_key(key) {
            keys.insert(key.to_owned(), init());
            self.len += 1;
        }
        keys.get_mut(key).expect("present")
    }

    /// Remove and return every window with `end <= watermark`, ordered by end, start, key.
    pub fn close(&mut self, watermark: Timestamp) -> Vec<(Window, K, A)> {
        self.close_by(watermark, K::cmp)
    }

    /// [`WindowStore::close`] with the keys of each window in the order `order` gives.
    pub fn close_by(
        &mut self,
        watermark: Timestamp,
        mut order: impl FnMut(&K, &K) -> std::cmp::Ordering,
    ) -> Vec<(Window, K, A)> {
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            let ((end, start), keys) = entry.remove_entry();
            let window = Window { start, end };
            let mut accs: Vec<(K, A)> = keys.into_iter().collect();
            accs.sort_unstable_by(|a, b| order(&a.0, &b.0));
            self.len -= accs.len();
            closed.extend(accs.into_iter().map(|(k, a)| (window, k, a)));
        }
        closed
    }

    /// Number of open (window, key) accumulators.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every open window's entries, oldest window first (keys in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (Window, &K, &A)> {
        (self.open.iter()).flat_map(|(&(end, start), keys)| {
            (keys.iter()).map(move |(k, a)| (Window { start, end }, k, a))
        })
    }
}

impl<K: Ord + Hash + Clone, A: Clone> From<WindowStore<K, A>> for Vec<(Window, K, A)> {
    fn from(store: WindowStore<K, A>) -> Self {
        let mut store = store;
        store.close(Timestamp::MAX)
    }
}

impl<K: Ord + Hash, A> From<Vec<(Window, K, A)>> for WindowStore<K, A> {
    fn from(entries: Vec<(Window, K, A)>) -> Self {
        let mut store = WindowStore::new();
        for (window, key, acc) in entries {
            let mut acc = Some(acc);
            store.entry(window, key, || acc.take().expect("once"));
        }
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_aligns_to_the_epoch_including_negative_times() {
        let t = Tumbling::new(60_000);
        assert_eq!(
            t.assign(0),
            Window {
                start: 0,
                end: 60_000
            }
        );
        assert_eq!(
            t.assign(59_999),
            Window {
                start: 0,
                end: 60_000
            }
        );
        assert_eq!(
            t.assign(60_000),
            Window {
                start: 60_000,
                end: 120_000
            }
        );
        assert_eq!(
            t.assign(-1),
            Window {
                start: -60_000,
                end: 0
            }
        );
    }

    #[test]
    fn hopping_assigns_every_covering_window() {
        let h = Hopping::new(60, 20).unwrap();
        let ws: Vec<Window> = h.assign(45).collect();
        assert_eq!(
            ws,
            vec![
                Window { start: 0, end: 60 },
                Window { start: 20, end: 80 },
                Window {
                    start: 40,
                    end: 100
                },
            ]
        );
        for w in &ws {
            assert!(w.start <= 45 && 45 < w.end);
        }
        assert!(Hopping::new(60, 25).is_err());
    }

    #[test]
    fn store_closes_only_windows_the_watermark_passed_in_order() {
        let t = Tumbling::new(10);
        let mut s: WindowStore<String, u32> = WindowStore::new();
        for (ts, key) in [(3, "b"), (5, "a"), (12, "a"), (25, "c"), (7, "b")] {
            *s.entry(t.assign(ts), key.to_string(), || 0) += 1;
        }
        assert!(
            s.close(9).is_empty(),
            "window [0,10) is open until the watermark reaches 10"
        );
        let closed = s.close(20);
        let got: Vec<(i64, &str, u32)> = closed
            .iter()
            .map(|(w, k, a)| (w.start, k.as_str(), *a))
            .collect();
        assert_eq!(got, vec![(0, "a", 1), (0, "b", 2), (10, "a", 1)]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn close_by_orders_keys_within_each_window_only() {
        let t = Tumbling::new(10);
        let mut s: WindowStore<u32, ()> = WindowStore::new();
        for (ts, key) in [(15, 1), (1, 1), (2, 3), (12, 2), (3, 2)] {
            s.entry(t.assign(ts), key, || ());
        }
        let got: Vec<(i64, u32)> = (s.close_by(20, |a, b| b.cmp(a)).iter())
            .map(|(w, k, _)| (w.start, *k))
            .collect();
        assert_eq!(got, vec![(0, 3), (0, 2), (0, 1), (10, 2), (10, 1)]);
        assert!(s.is_empty());
    }

    #[test]
    fn store_survives_serialisation() {
        let t = Tumbling::new(10);
        let mut s: WindowStore<(String, String), f64> = WindowStore::new();
        *s.entry(t.assign(1), ("s1".into(), "p1".into()), || 0.0) += 2.5;
        let json = serde_json::to_string(&s).unwrap();
        let mut back: WindowStore<(String, String), f64> = serde_json::from_str(&json).unwrap();
        let closed = back.close(10);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].2, 2.5);
    }
}
