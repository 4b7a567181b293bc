//! The batches of one shard, rebuilt from the archive in the order the live run processed them.
//!
//! Each topic-partition of the shard is a [`Cursor`] over its objects (in offset order, read one
//! object at a time). Lines tagged with their live batch are regrouped into that batch (across
//! partitions for the local shard, whose live batches mixed them) in batch order; objects
//! written before the tags existed are cut into batches of `batch_size`, oldest record first.

use std::collections::VecDeque;

use crate::archive::{ArchiveObject, ArchiveReader, ObjectRecords, Range, Tagged};
use crate::plugin::RawRecord;

/// One topic-partition's records in offset order, loaded an object at a time and decoded a chunk
/// at a time.
pub struct Cursor {
    objects: VecDeque<ArchiveObject>,
    /// The object being decoded.
    current: Option<ObjectRecords>,
    records: VecDeque<Tagged>,
    /// Objects read so far.
    loaded: usize,
}

impl Cursor {
    pub fn new(objects: Vec<ArchiveObject>) -> Self {
        Cursor {
            objects: objects.into(),
            current: None,
            records: VecDeque::new(),
            loaded: 0,
        }
    }

    /// The next record, loading objects as needed.
    async fn head(
        &mut self,
        reader: &ArchiveReader,
    ) -> Result<Option<&Tagged>, crate::archive::ReadError> {
        while self.records.is_empty() {
            if let Some(current) = &mut self.current {
                match current.next_chunk()? {
                    Some(chunk) => self.records.extend(chunk),
                    None => self.current = None,
                }
                continue;
            }
            let Some(object) = self.objects.pop_front() else {
                return Ok(None);
            };
            self.current = Some(reader.records(&object).await?);
            self.loaded += 1;
        }
        Ok(self.records.front())
    }
}

/// Where a record sorts among the shard's records: its live batch and place in it, or (untagged)
/// its timestamp.
fn order(t: &Tagged) -> (i64, i64) {
    match t.1 {
        Some(tag) => (tag.batch, tag.index as i64),
        None => (t.0.timestamp.saturating_mul(1000), t.0.offset),
    }
}

/// A shard's cursors, giving out its batches in live order.
pub struct ShardBatches {
    pub cursors: Vec<Cursor>,
    pub batch_size: usize,
    pub range: Range,
    /// Records skipped for being outside the range.
    pub skipped: u64,
}

impl ShardBatches {
    /// Objects read so far.
    pub fn objects_read(&self) -> usize {
        self.cursors.iter().map(|c| c.loaded).sum()
    }

    /// The next batch (one topic), or `None` at the end. Records outside the range are skipped.
    pub async fn next(
        &mut self,
        reader: &ArchiveReader,
    ) -> Result<Option<(String, Vec<RawRecord>)>, crate::archive::ReadError> {
        loop {
            // The cursor whose head comes first.
            let mut first: Option<(usize, (i64, i64))> = None;
            for (i, cursor) in self.cursors.iter_mut().enumerate() {
                let head = cursor.head(reader).await?.map(order);
                if let Some(key) = head {
                    if first.is_none_or(|(_, k)| key < k) {
                        first = Some((i, key));
                    }
                }
            }
            let Some((i, _)) = first else {
                return Ok(None);
            };
            let (head, tag) = self.cursors[i].records.front().expect("has a head").clone();
            let topic = head.topic.clone();
            let mut batch: Vec<Tagged> = Vec::new();
            match tag {
                // Every record of that live batch, from every cursor of the topic.
                Some(tag) => {
                    for cursor in &mut self.cursors {
                        loop {
                            let Some(t) = cursor.head(reader).await? else {
                                break;
                            };
                            if t.0.topic != topic || t.1.map(|x| x.batch) != Some(tag.batch) {
                                break;
                            }
                            batch.push(cursor.records.pop_front().expect("has a head"));
                        }
                    }
                    batch.sort_by_key(|t| t.1.map(|x| x.index));
                }
                None => {
                    let cursor = &mut self.cursors[i];
                    while batch.len() < self.batch_size {
                        match cursor.head(reader).await? {
                            Some(t) if t.1.is_none() => {
                                batch.push(cursor.records.pop_front().expect("has a head"))
                            }
                            _ => break,
                        }
                    }
                }
            }
            let before = batch.len();
            let records: Vec<RawRecord> = batch
                .into_iter()
                .map(|(r, _)| r)
                .filter(|r| self.range.contains(r.timestamp))
                .collect();
            self.skipped += (before - records.len()) as u64;
            if !records.is_empty() {
                return Ok(Some((topic, records)));
            }
        }
    }
}
