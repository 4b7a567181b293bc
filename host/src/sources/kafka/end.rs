//! A bounded read: the source stops once it has read every assigned partition up to an end
//! offset that someone sets while it runs (`host demo` sets the topics' end offsets once its
//! producer has finished). Unlike an idle limit it neither stops early, while a slow broker or
//! producer is yet to deliver, nor waits on after the input is complete.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use super::gaps::GapGuard;
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

/// Whether every assigned partition of `topics` has been read up to `ends` (nothing assigned:
/// not yet, the group is still handing partitions out; `ends` empty: yes). Positions are the gap
/// guard's next expected offsets; a partition read from its beginning with no message yet counts
/// as at the broker's low watermark.
pub(super) fn reached(
    ends: &Offsets,
    assigned: &BTreeSet<i32>,
    topics: &[String],
    gaps: &GapGuard,
    consumer: &BaseConsumer<impl ConsumerContext>,
) -> bool {
    if ends.is_empty() {
        return true;
    }
    !assigned.is_empty()
        && behind(ends, assigned, topics, gaps).all(|(topic, partition, end)| {
            // Retention may have removed the partition's first offsets: a read from the
            // beginning starts at the low watermark at the earliest.
            gaps.next(topic, partition).is_none()
                && match consumer.fetch_watermarks(topic, partition, Duration::from_secs(2)) {
                    Ok((low, _)) => low >= end,
                    Err(e) => {
                        tracing::debug!(%topic, partition, error = %e, "low watermark unknown");
                        false
                    }
                }
        })
}

/// The assigned topic-partitions short of their end, as `(topic, partition, end)`; a partition
/// with no known position is short unless its end is 0.
pub(super) fn behind<'a>(
    ends: &'a Offsets,
    assigned: &'a BTreeSet<i32>,
    topics: &'a [String],
    gaps: &'a GapGuard,
) -> impl Iterator<Item = (&'a str, i32, i64)> + 'a {
    topics.iter().flat_map(move |topic| {
        assigned.iter().filter_map(move |&partition| {
            let end = *ends.get(&TopicPartition::new(topic.as_str(), partition))?;
            (gaps.next(topic, partition).unwrap_or(0) < end).then_some((
                topic.as_str(),
                partition,
                end,
            ))
        })
    })
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
        let topics = ["a".to_string(), "b".to_string()];
        let mut gaps = GapGuard::new();
        let mut assigned = BTreeSet::new();
        let reached = |assigned: &BTreeSet<i32>, gaps: &GapGuard| {
            super::reached(&end, assigned, &topics, gaps, &consumer)
        };
        assert!(!reached(&assigned, &gaps), "nothing assigned yet");
        assert!(
            super::reached(&Offsets::new(), &assigned, &topics, &gaps, &consumer),
            "no end known"
        );
        assigned.insert(0);
        gaps.start("a", 0, Some(7));
        gaps.start("b", 0, Some(3));
        assert!(!reached(&assigned, &gaps));
        let short: Vec<_> = behind(&end, &assigned, &topics, &gaps).collect();
        assert_eq!(short, [("a", 0, 10)]);
        assert!(gaps.accept(&consumer, "a", 0, 7) && gaps.accept(&consumer, "a", 0, 8));
        assert!(!reached(&assigned, &gaps));
        assert!(gaps.accept(&consumer, "a", 0, 9));
        assert!(reached(&assigned, &gaps), "a:1 is another member's");
        assigned.insert(1);
        gaps.start("a", 1, Some(0));
        gaps.start("b", 1, Some(0)); // no end for b:1: nothing to wait for
        assert!(!reached(&assigned, &gaps));
        assigned.remove(&1);
        gaps.forget(1);
        assert!(reached(&assigned, &gaps));
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
