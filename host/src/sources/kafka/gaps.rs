//! Reading again offsets a broker skipped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;

/// The retail topics are neither compacted nor transactional, so every offset of a partition
/// holds a message, and the next message after offset `o` is `o + 1`. A message with a higher
/// offset means the broker skipped one: a broker can make a later write visible before an
/// earlier one (tansu does under concurrent produce and fetch). The guard then seeks back to the
/// missing offset and reads again, for up to `PATIENCE`, before accepting the gap with a warning.
pub(super) struct GapGuard {
    /// Next expected offset per (topic, partition); unknown when starting at the beginning.
    expected: BTreeMap<(String, i32), i64>,
    /// Since when each partition has been waiting for its missing offset, and how many times it
    /// read again.
    waiting: BTreeMap<(String, i32), (Instant, u32)>,
    pub(super) patience: Duration,
}

/// How long to keep reading again before accepting that offsets are gone.
pub(super) const PATIENCE: Duration = Duration::from_secs(10);

impl GapGuard {
    pub(super) fn new() -> Self {
        GapGuard {
            expected: BTreeMap::new(),
            waiting: BTreeMap::new(),
            patience: PATIENCE,
        }
    }

    /// A partition starts at `next` (`None`: at the beginning, whatever offset comes first).
    pub(super) fn start(&mut self, topic: &str, partition: i32, next: Option<i64>) {
        let key = (topic.to_string(), partition);
        self.waiting.remove(&key);
        match next {
            Some(next) => self.expected.insert(key, next),
            None => self.expected.remove(&key),
        };
    }

    /// The next offset to read from a partition, if known (not before the first message of a
    /// partition read from its beginning).
    pub(super) fn next(&self, topic: &str, partition: i32) -> Option<i64> {
        self.expected.get(&(topic.to_string(), partition)).copied()
    }

    /// The partition was revoked.
    pub(super) fn forget(&mut self, partition: i32) {
        self.expected.retain(|(_, p), _| *p != partition);
        self.waiting.retain(|(_, p), _| *p != partition);
    }

    /// Whether to take the message at `offset`; `false` after seeking back to a missing one.
    pub(super) fn accept(
        &mut self,
        consumer: &BaseConsumer<impl ConsumerContext>,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> bool {
        let key = (topic.to_string(), partition);
        match self.expected.get(&key).copied() {
            Some(expected) if offset < expected => return false, // before a seek took effect
            Some(expected) if offset > expected => {
                let (since, tries) = self
                    .waiting
                    .entry(key.clone())
                    .or_insert_with(|| (Instant::now(), 0));
                *tries += 1;
                if since.elapsed() < self.patience {
                    // Read again from the missing offset, then from further back: a broker may
                    // skip the first offset of a fetch (those before it are dropped above).
                    let back = if *tries == 1 {
                        0
                    } else {
                        1i64 << (*tries - 2).min(10)
                    };
                    let from = (expected - back).max(0);
                    tracing::debug!(
                        topic,
                        partition,
                        expected,
                        got = offset,
                        from,
                        "offset gap; reading again"
                    );
                    if let Err(error) = consumer.seek(
                        topic,
                        partition,
                        Offset::Offset(from),
                        Duration::from_secs(5),
                    ) {
                        tracing::warn!(topic, partition, expected, %error, "seeking back to a missing offset failed");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    return false;
                }
                tracing::warn!(
                    topic,
                    partition,
                    missing_from = expected,
                    missing_to = offset - 1,
                    "the broker never delivered these offsets; continuing after them"
                );
            }
            _ => {}
        }
        if let Some((since, _)) = self.waiting.remove(&key) {
            tracing::info!(
                topic,
                partition,
                offset,
                waited_ms = since.elapsed().as_millis() as u64,
                "a skipped offset arrived on reading again"
            );
        }
        self.expected.insert(key, offset + 1);
        true
    }
}
