//! Data quality of a replayed range, as the seed's daily checks count it: per topic and day
//! (of the record's timestamp), messages, rejections by reason, duplicates dropped and late
//! events.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::pipeline::{DeadLetterKind, Outputs};
use crate::plugin::RawRecord;

/// What the counts need of a record (taken before the pipeline consumes the batch).
pub struct Seen {
    topic: String,
    /// `(partition, offset, timestamp)` per record.
    records: Vec<(i32, i64, i64)>,
}

impl Seen {
    pub fn of(records: &[RawRecord]) -> Self {
        Seen {
            topic: records.first().map(|r| r.topic.clone()).unwrap_or_default(),
            records: (records.iter())
                .map(|r| (r.partition, r.offset, r.timestamp))
                .collect(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayQuality {
    pub messages: u64,
    /// Messages the cleaner accepted (one or more events each).
    pub accepted: u64,
    /// Rejected messages by reason (the reason's text before its first `:`).
    pub rejected: BTreeMap<String, u64>,
    /// Repeats of a message the cleaner had already seen (dropped, with a `duplicate` dead
    /// letter or without).
    pub duplicates: u64,
    /// Events that arrived after their stage's watermark (any stage).
    pub late: u64,
    /// Messages a plugin failure sent to the dead letters.
    pub failed: u64,
}

impl DayQuality {
    fn add(&mut self, other: DayQuality) {
        self.messages += other.messages;
        self.accepted += other.accepted;
        for (reason, n) in other.rejected {
            *self.rejected.entry(reason).or_default() += n;
        }
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.failed += other.failed;
    }
}

/// `topic -> day -> counts`.
pub type Quality = BTreeMap<String, BTreeMap<String, DayQuality>>;

/// Count what one push of `records` (one topic) produced; `cleaners` are the stages that read
/// the topic.
pub fn count(quality: &mut Quality, seen: &Seen, outputs: &Outputs, cleaners: &[&str]) {
    let Some(&(_, _, first_ms)) = seen.records.first() else {
        return;
    };
    // Days as numbers while counting (a date's text once per day, not per message).
    let day_number = |ms: i64| ms.div_euclid(86_400_000);
    let day_of: HashMap<(i32, i64), i64> = (seen.records.iter())
        .map(|&(p, o, ms)| ((p, o), day_number(ms)))
        .collect();
    let name = seen.topic.as_str();
    let batch_day = day_number(first_ms);
    let mut days: BTreeMap<i64, DayQuality> = BTreeMap::new();
    for day in day_of.values() {
        days.entry(*day).or_default().messages += 1;
    }
    let mut accounted: HashSet<(i32, i64)> = HashSet::new();
    for batch in &outputs.batches {
        if !cleaners.contains(&&*batch.provenance.stage) {
            continue;
        }
        for origin in &batch.provenance.origins {
            let key = (origin.partition, origin.offset);
            if origin.topic.as_ref() == name && accounted.insert(key) {
                if let Some(day) = day_of.get(&key) {
                    days.entry(*day).or_default().accepted += 1;
                }
            }
        }
    }
    for dead in &outputs.dead_letters {
        let source = dead.source.as_ref().filter(|s| s.topic.as_ref() == name);
        let key = source.map(|s| (s.partition, s.offset));
        let day = key.and_then(|k| day_of.get(&k)).unwrap_or(&batch_day);
        let counts = days.entry(*day).or_default();
        match dead.kind {
            DeadLetterKind::Late => counts.late += 1,
            _ if key.is_none_or(|k| !accounted.insert(k)) => {}
            _ if dead.is_duplicate() => counts.duplicates += 1,
            DeadLetterKind::Rejected | DeadLetterKind::Malformed => {
                let reason = dead.reason.split(':').next().unwrap_or("").trim();
                *counts.rejected.entry(reason.to_string()).or_default() += 1;
            }
            _ => counts.failed += 1,
        }
    }
    // What the cleaners neither emitted nor rejected: dropped as repeats.
    if !cleaners.is_empty() {
        for (key, day) in &day_of {
            if !accounted.contains(key) {
                days.entry(*day).or_default().duplicates += 1;
            }
        }
    }
    let topic = quality.entry(seen.topic.clone()).or_default();
    for (day, q) in days {
        topic
            .entry(crate::units::date(day * 86_400_000))
            .or_default()
            .add(q);
    }
}
