//! Where a source is: the typed positions that checkpoints save and sources resume from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One partition of one topic. Written `topic:partition` (in checkpoints, logs and the
/// `_source_offsets` provenance column), parsed back from the same form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.topic, self.partition)
    }
}

/// In logs too: `retail-sales-transactions:0`, as checkpoints and the offsets column write it.
impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not `topic:partition`")]
pub struct BadTopicPartition(String);

impl FromStr for TopicPartition {
    type Err = BadTopicPartition;

    /// The partition is after the last `:` (topic names may not contain one in Kafka, but the
    /// split does not depend on it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (topic, partition) = s
            .rsplit_once(':')
            .ok_or_else(|| BadTopicPartition(s.to_string()))?;
        let partition = partition
            .parse()
            .map_err(|_| BadTopicPartition(s.to_string()))?;
        Ok(TopicPartition::new(topic, partition))
    }
}

impl Serialize for TopicPartition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TopicPartition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Next offsets (or newest timestamps) per topic-partition.
pub type Offsets = std::collections::BTreeMap<TopicPartition, i64>;

/// Where a source resumes after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Count-based sources (simulator steps, file lines): resume after this many.
    Count(u64),
    /// Offset-based sources (Kafka): the next offset to read of one topic-partition.
    Offset {
        partition: TopicPartition,
        next: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_partition_is_written_and_read_as_topic_colon_partition() {
        let tp = TopicPartition::new("retail-sales-transactions", 2);
        assert_eq!(tp.to_string(), "retail-sales-transactions:2");
        assert_eq!(format!("{tp:?}"), "retail-sales-transactions:2");
        assert_eq!(
            "retail-sales-transactions:2"
                .parse::<TopicPartition>()
                .unwrap(),
            tp
        );
        assert!("no-partition".parse::<TopicPartition>().is_err());
        assert!("t:x".parse::<TopicPartition>().is_err());
        let offsets: Offsets = [(tp.clone(), 7)].into();
        let json = serde_json::to_string(&offsets).unwrap();
        assert_eq!(json, r#"{"retail-sales-transactions:2":7}"#);
        assert_eq!(serde_json::from_str::<Offsets>(&json).unwrap(), offsets);
    }
}
