//! A bounded read: the source stops once it has read every assigned partition up to an end
//! offset that someone sets while it runs (`host demo` sets the topics' end offsets once its
//! producer has finished). Unlike an idle limit it neither stops early, while a slow broker or
//! producer is yet to deliver, nor waits on after the input is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::sources::{Offsets, TopicPartition};

/// Where a bounded read ends: the next offset after the last message to read, per
/// topic-partition. Set once; clones share it. Partitions it does not name have no end to wait
/// for, so an empty mark stops the read at once (whoever could not find the end offsets).
#[derive(Debug, Clone, Default)]
pub struct EndMark(Arc<OnceLock<Offsets>>);

impl EndMark {
    /// Set the end; `false` if it was already set (the first one stays).
    pub fn set(&self, ends: Offsets) -> bool {
        self.0.set(ends).is_ok()
    }

    pub fn get(&self) -> Option<&Offsets> {
        self.0.get()
    }
}

/// The next offset the source will read, per assigned topic-partition.
#[derive(Default)]
pub(super) struct Progress {
    /// `None`: the partition starts at its beginning, offset unknown until a message comes.
    next: BTreeMap<(String, i32), Option<i64>>,
}

impl Progress {
    pub(super) fn assigned(&mut self, topic: &str, partition: i32, next: Option<i64>) {
        self.next.insert((topic.to_string(), partition), next);
    }

    pub(super) fn revoked(&mut self, partitions: &BTreeSet<i32>) {
        self.next.retain(|(_, p), _| !partitions.contains(p));
    }

    pub(super) fn read(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(next) = self.next.get_mut(&(topic.to_string(), partition)) {
            *next = Some(offset + 1);
        }
    }

    /// Whether every assigned partition has been read up to `ends` (nothing assigned: not yet,
    /// the group is still handing partitions out; `ends` empty: yes). A partition read from
    /// its beginning with no message yet counts as at the broker's low watermark, asked once.
    pub(super) fn reached(
        &mut self,
        ends: &Offsets,
        consumer: &BaseConsumer<impl ConsumerContext>,
    ) -> bool {
        if ends.is_empty() {
            return true;
        }
        if self.next.is_empty() {
            return false;
        }
        self.next.iter_mut().all(|((topic, partition), next)| {
            let Some(&end) = ends.get(&TopicPartition::new(topic.as_str(), *partition)) else {
                return true;
            };
            if next.is_none() && end > 0 {
                // Retention may have removed the partition's first offsets: the read starts at
                // the low watermark at the earliest.
                match consumer.fetch_watermarks(topic, *partition, Duration::from_secs(2)) {
                    Ok((low, _)) => *next = Some(low),
                    Err(e) => {
                        tracing::debug!(%topic, partition, error = %e, "low watermark unknown yet");
                        return false;
                    }
                }
            }
            next.unwrap_or(0) >= end
        })
    }

    /// The partitions still short of `ends`, for the log.
    pub(super) fn behind(&self, ends: &Offsets) -> BTreeSet<String> {
        self.next
            .iter()
            .filter(|((t, p), next)| {
                ends.get(&TopicPartition::new(t.as_str(), *p))
                    .is_some_and(|&end| next.unwrap_or(0) < end)
            })
            .map(|((t, p), _)| format!("{t}:{p}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;

    fn ends(list: &[(&str, i32, i64)]) -> Offsets {
        list.iter()
            .map(|&(t, p, o)| (TopicPartition::new(t, p), o))
            .collect()
    }

    #[test]
    fn reached_once_every_assigned_partition_is_read_to_its_end() {
        // Never asked for watermarks here: every partition has a known position.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let end = ends(&[("a", 0, 10), ("a", 1, 5), ("b", 0, 3)]);
        let mut progress = Progress::default();
        assert!(!progress.reached(&end, &consumer), "nothing assigned yet");
        assert!(progress.reached(&Offsets::new(), &consumer), "no end known");
        progress.assigned("a", 0, Some(7));
        progress.assigned("b", 0, Some(3));
        assert!(!progress.reached(&end, &consumer));
        assert_eq!(progress.behind(&end), ["a:0".to_string()].into());
        progress.read("a", 0, 8);
        assert!(!progress.reached(&end, &consumer));
        progress.read("a", 0, 9);
        assert!(progress.reached(&end, &consumer), "a:1 is another member's");
        progress.assigned("a", 1, Some(0));
        assert!(!progress.reached(&end, &consumer));
        progress.revoked(&[1].into());
        assert!(progress.reached(&end, &consumer));
        progress.read("c", 0, 100); // not assigned: ignored
        assert!(progress.behind(&end).is_empty());
    }

    #[test]
    fn the_first_mark_stays() {
        let mark = EndMark::default();
        let clone = mark.clone();
        assert!(mark.get().is_none());
        assert!(clone.set(ends(&[("a", 0, 1)])));
        assert!(!mark.set(Offsets::new()));
        assert_eq!(mark.get(), Some(&ends(&[("a", 0, 1)])));
    }
}
