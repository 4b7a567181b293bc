//! De-duplication of event ids within a bounded window, for cleaners: an id seen again within
//! `horizon_ms` of event time (and among the last `max_ids` ids) is a duplicate.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{Params, Timestamp};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecentIds {
    horizon_ms: i64,
    max_ids: usize,
    /// Ids in arrival order with their event time.
    order: VecDeque<(Timestamp, String)>,
    /// Id -> event time of its first sighting.
    seen: HashMap<String, Timestamp>,
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
        let newest = self.order.back().map_or(ts, |(t, _)| (*t).max(ts));
        while let Some((t, _)) = self.order.front() {
            if self.order.len() >= self.max_ids || *t < newest - self.horizon_ms {
                let (_, old) = self.order.pop_front().expect("front exists");
                self.seen.remove(&old);
            } else {
                break;
            }
        }
        if let Some(first) = self.seen.get(id) {
            return Some(*first);
        }
        self.seen.insert(id.to_string(), ts);
        self.order.push_back((ts, id.to_string()));
        None
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
        match self.check(id, ts) {
            Some(first) => Err(format!(
                "duplicate: {id} was already seen (event time {first} ms)"
            )),
            None => Ok(()),
        }
    }

    /// Snapshot bytes for `Plugin::snapshot`.
    pub fn snapshot(&self) -> Vec<u8> {
        crate::state::encode(&(&self.order, &self.seen))
    }

    /// Load ids saved by [`RecentIds::snapshot`] under state version `current`; an empty
    /// snapshot (a version that kept no ids) starts empty. The window settings stay as
    /// configured.
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
        let (order, seen) = crate::state::decode(plugin, version, &[current], data)?;
        self.order = order;
        self.seen = seen;
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
        back.restore("p", 2, 2, &ids.snapshot()).unwrap();
        let err = back.reject_repeat("a", 6).unwrap_err();
        assert!(
            err.contains("duplicate: a") && err.contains("5 ms"),
            "{err}"
        );
        assert!(back.reject_repeat("b", 6).is_ok());
        assert!(back.restore("p", 1, 2, b"").is_ok());
        assert!(back.restore("p", 1, 2, b"[]").is_err());
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
