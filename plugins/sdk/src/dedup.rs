//! De-duplication of event ids within a bounded window, for cleaners: an id seen again within
//! `horizon_ms` of event time (and among the last `max_ids` ids) is a duplicate.
//!
//! Ids are kept as 64-bit FNV-1a hashes, not text: a cleaner checks every record, and hashing
//! costs no allocation. Two different ids collide with probability about n²/2⁶⁵ (under 10⁻⁹ for
//! the default 100,000 ids); a collision would reject one record as a duplicate, to the
//! dead letters, with its reason.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::hash::Hasher;

use crate::hash::{FastMap, Fnv64};
use crate::{Params, Timestamp};

/// The state version in which the shipped cleaners kept ids as text: [`RecentIds::restore`]
/// reads it (hashing the ids) besides the current layout.
pub const TEXT_IDS_VERSION: u32 = 2;

#[derive(Debug, Clone, Default)]
pub struct RecentIds {
    horizon_ms: i64,
    max_ids: usize,
    /// Id hashes in arrival order with their event time.
    order: VecDeque<(Timestamp, u64)>,
    /// Id hash -> event time of its first sighting.
    seen: FastMap<u64, Timestamp>,
}

/// The hash an id is kept under.
pub fn id_hash(id: &str) -> u64 {
    let mut h = Fnv64::default();
    h.write(id.as_bytes());
    h.finish()
}

impl RecentIds {
    pub fn new(horizon_ms: i64, max_ids: usize) -> Self {
        RecentIds {
            horizon_ms,
            max_ids: max_ids.max(1),
            ..RecentIds::default()
        }
    }

    /// Record `id` at event time `ts`. Returns the time of the earlier sighting if `id` was seen
    /// within the window (a duplicate), else `None` (and remembers it).
    pub fn check(&mut self, id: &str, ts: Timestamp) -> Option<Timestamp> {
        self.check_hash(id_hash(id), ts)
    }

    /// [`RecentIds::check`] for an id already hashed with [`id_hash`] (or fed to an
    /// [`Fnv64`] piece by piece, which gives the same hash as the concatenated text).
    pub fn check_hash(&mut self, hash: u64, ts: Timestamp) -> Option<Timestamp> {
        let newest = self.order.back().map_or(ts, |(t, _)| (*t).max(ts));
        while let Some((t, old)) = self.order.front() {
            if self.order.len() >= self.max_ids || *t < newest - self.horizon_ms {
                let old = *old;
                self.order.pop_front();
                self.seen.remove(&old);
            } else {
                break;
            }
        }
        match self.seen.entry(hash) {
            Entry::Occupied(first) => Some(*first.get()),
            Entry::Vacant(slot) => {
                slot.insert(ts);
                self.order.push_back((ts, hash));
                None
            }
        }
    }

    /// From the cleaner parameters `dedup_window` (event time, default `10m`) and
    /// `dedup_max_ids` (default 100000).
    pub fn from_params(params: &mut Params) -> Result<Self, String> {
        let horizon = params.duration_ms("dedup_window", 10 * crate::MINUTE_MS)?;
        let max = params.number("dedup_max_ids", 100_000.0, 1.0, 10_000_000.0)?;
        Ok(RecentIds::new(horizon, max as usize))
    }

    /// `Err` with the rejection reason when `id` is a repeat within the window.
    pub fn reject_repeat(&mut self, id: &str, ts: Timestamp) -> Result<(), String> {
        self.reject_repeat_hash(id_hash(id), ts, || id.to_string())
    }

    /// [`RecentIds::reject_repeat`] for a hashed id; `id` spells it out for the reason only.
    pub fn reject_repeat_hash(
        &mut self,
        hash: u64,
        ts: Timestamp,
        id: impl FnOnce() -> String,
    ) -> Result<(), String> {
        match self.check_hash(hash, ts) {
            Some(first) => Err(format!(
                "duplicate: {} was already seen (event time {first} ms)",
                id()
            )),
            None => Ok(()),
        }
    }

    /// Snapshot bytes for `Plugin::snapshot`: the hashes in arrival order with their times.
    pub fn snapshot(&self) -> Vec<u8> {
        crate::state::encode(&self.order)
    }

    /// Load ids saved by [`RecentIds::snapshot`] under state version `current`, or the text ids
    /// of [`TEXT_IDS_VERSION`]; an empty snapshot (a version that kept no ids) starts empty. The
    /// window settings stay as configured.
    pub fn restore(
        &mut self,
        plugin: &str,
        version: u32,
        current: u32,
        data: &[u8],
    ) -> Result<(), String> {
        if data.is_empty() {
            return Ok(());
        }
        let order: VecDeque<(Timestamp, u64)> = if version == TEXT_IDS_VERSION && current != version
        {
            let (order, _seen): (VecDeque<(Timestamp, String)>, serde::de::IgnoredAny) =
                crate::state::decode(plugin, version, &[version], data)?;
            order.into_iter().map(|(t, id)| (t, id_hash(&id))).collect()
        } else {
            crate::state::decode(plugin, version, &[current], data)?
        };
        self.seen = FastMap::default();
        for (t, h) in &order {
            self.seen.entry(*h).or_insert(*t);
        }
        self.order = order;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_horizon_are_duplicates() {
        let mut ids = RecentIds::new(1_000, 100);
        assert_eq!(ids.check("a", 0), None);
        assert_eq!(ids.check("b", 500), None);
        assert_eq!(ids.check("a", 900), Some(0));
        // 2_000 pushes "a" (t=0) and "b" (t=500) out of the 1 s horizon.
        assert_eq!(ids.check("c", 2_000), None);
        assert_eq!(ids.check("a", 2_001), None);
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn survives_a_snapshot_and_reads_as_a_rejection() {
        let mut ids = RecentIds::new(1_000, 10);
        ids.check("a", 5);
        let mut back = RecentIds::new(1_000, 10);
        back.restore("p", 3, 3, &ids.snapshot()).unwrap();
        let err = back.reject_repeat("a", 6).unwrap_err();
        assert!(
            err.contains("duplicate: a") && err.contains("5 ms"),
            "{err}"
        );
        assert!(back.reject_repeat("b", 6).is_ok());
        assert!(back.restore("p", 1, 3, b"").is_ok());
        assert!(back.restore("p", 1, 3, b"[]").is_err());
    }

    #[test]
    fn text_ids_of_state_version_2_are_read_and_hashed() {
        let v2 = br#"[[[5,"a"],[7,"b"]],{"a":5,"b":7}]"#;
        let mut ids = RecentIds::new(1_000, 10);
        ids.restore("p", TEXT_IDS_VERSION, 3, v2).unwrap();
        assert_eq!(ids.check("b", 8), Some(7));
        assert_eq!(ids.check("c", 8), None);
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn hashes_fed_in_pieces_match_the_whole_id() {
        let mut h = Fnv64::default();
        h.write(b"T1");
        h.write(b"#0");
        assert_eq!(h.finish(), id_hash("T1#0"));
    }

    #[test]
    fn the_id_count_is_bounded() {
        let mut ids = RecentIds::new(i64::MAX / 4, 3);
        for id in ["a", "b", "c", "d"] {
            assert_eq!(ids.check(id, 0), None);
        }
        assert_eq!(ids.len(), 3);
        assert_eq!(ids.check("a", 0), None, "forgotten: only 3 ids are kept");
        assert_eq!(ids.check("d", 0), Some(0));
    }
}
