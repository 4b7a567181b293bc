//! Raw batches to object storage (S3, MinIO, or a local folder): every batch consumed from a
//! partitioned source is written as consumed, before cleaning, as gzip-compressed NDJSON at
//!
//! `{prefix}/{topic}/date={YYYY-MM-DD}/partition={p}/{first:020}-{last:020}.ndjson.gz`
//!
//! (the date of the first record's timestamp). Each line holds partition, offset, key, timestamp
//! and payload. An object holds the batches a partition delivered between two checkpoints (at most
//! about 8 MiB of NDJSON). Uploads run in the background and complete before the checkpoint that
//! lets the source move past them; a failed upload is retried until it succeeds (the pipeline
//! waits, nothing is lost).
//! After a crash, objects beyond the saved offsets were never checkpointed: [`RawStore::discard_after`]
//! deletes them at start, so every offset lies in exactly one object.

mod format;
mod read;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;

use crate::meter::SinkMeter;
use crate::plugin::RawRecord;
use format::{encode_line, gzip};

pub use format::{decode, encode, BatchTag, DecodeError, Tagged};
pub use read::{ArchiveObject, ArchiveReader, ObjectRecords, Range, ReadError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStoreConfig {
    /// `s3` (S3 or MinIO) or `local` (a folder: `path`).
    pub kind: String,
    /// Local folder (kind = local). Default: `<data_dir>/raw`.
    pub path: Option<std::path::PathBuf>,
    /// S3 endpoint, e.g. `http://127.0.0.1:9010`; default from AWS_ENDPOINT, else AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Default from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Key prefix of every object.
    pub prefix: String,
}

impl Default for RawStoreConfig {
    fn default() -> Self {
        RawStoreConfig {
            kind: "local".into(),
            path: None,
            endpoint: None,
            bucket: "retail-data".into(),
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            prefix: "raw".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RawStoreError {
    #[error("raw store configuration: {0}")]
    Config(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

pub struct RawStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Handle,
    /// Uploads under way, oldest first (at most [`MAX_IN_FLIGHT`]).
    pending: std::collections::VecDeque<tokio::task::JoinHandle<()>>,
    /// Per topic-partition: consecutive batches not uploaded yet, as NDJSON.
    open: std::collections::BTreeMap<(String, i32), OpenObject>,
    /// Counts records (stored when their object is).
    meter: Arc<SinkMeter>,
    /// The id of the last batch written (see [`RawStore::write`]).
    last_batch: i64,
}

/// The next object of a topic-partition, growing until a checkpoint (or [`OBJECT_BYTES`]).
struct OpenObject {
    ndjson: Vec<u8>,
    first: i64,
    last: i64,
    first_ts: i64,
}

/// An object is uploaded once this much NDJSON is waiting, even before the next checkpoint.
const OBJECT_BYTES: usize = 8 << 20;

/// Raw batches uploading at once; one more waits for the oldest (bounded memory; a store
/// outage holds the pipeline).
const MAX_IN_FLIGHT: usize = 16;

impl RawStore {
    pub fn new(
        config: &RawStoreConfig,
        data_dir: &std::path::Path,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, RawStoreError> {
        Ok(RawStore {
            store: open_store(config, data_dir)?,
            prefix: config.prefix.trim_matches('/').to_string(),
            runtime,
            pending: std::collections::VecDeque::new(),
            open: std::collections::BTreeMap::new(),
            meter: SinkMeter::new("object_store"),
            last_batch: 0,
        })
    }

    pub fn meter(&self) -> Arc<SinkMeter> {
        self.meter.clone()
    }

    /// [`RawStore::discard_after`], from a thread outside the runtime.
    pub fn discard_after_blocking(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
        since_ms: Option<i64>,
    ) -> Result<usize, RawStoreError> {
        self.runtime
            .block_on(self.discard_after(topic, partition, next, since_ms))
    }

    /// The object name of a batch of one topic-partition.
    pub fn object_path(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
        last: i64,
        first_ts: i64,
    ) -> Path {
        let date = &crate::units::date(first_ts);
        Path::from(format!(
            "{}/{topic}/date={date}/partition={partition}/{first:020}-{last:020}.ndjson.gz",
            self.prefix
        ))
    }

    /// Take a source batch (records of one topic, in the order the pipeline gets them).
    /// Consecutive batches of a partition go into one object, uploaded in the background at the
    /// next [`RawStore::wait`] (every checkpoint calls it before it covers the batches) or once
    /// it holds [`OBJECT_BYTES`]; uploads retry until they succeed.
    ///
    /// Every line is tagged with the batch's id (microseconds since the epoch at arrival, made
    /// strictly increasing on this host) and its index in the batch, so a replay rebuilds the
    /// batches and their order.
    pub fn write(&mut self, records: &[RawRecord]) {
        self.meter.queued(records.len());
        let batch = crate::units::now_us().max(self.last_batch + 1);
        self.last_batch = batch;
        for (index, r) in records.iter().enumerate() {
            let tag = BatchTag {
                batch,
                index: index as u32,
            };
            let key = (r.topic.clone(), r.partition);
            let object = self.open.entry(key.clone()).or_insert_with(|| OpenObject {
                ndjson: Vec::with_capacity(64 << 10),
                first: r.offset,
                last: r.offset,
                first_ts: r.timestamp,
            });
            encode_line(&mut object.ndjson, r, Some(tag));
            object.last = r.offset;
            if object.ndjson.len() >= OBJECT_BYTES {
                self.upload(&key);
            }
        }
    }

    /// Start uploading the open object of `key`.
    fn upload(&mut self, key: &(String, i32)) {
        let Some(object) = self.open.remove(key) else {
            return;
        };
        let path = self.object_path(&key.0, key.1, object.first, object.last, object.first_ts);
        let body = bytes::Bytes::from(gzip(&object.ndjson));
        let waited = std::time::Instant::now();
        while self.pending.len() >= MAX_IN_FLIGHT {
            let oldest = self.pending.pop_front().expect("not empty");
            let _ = self.runtime.block_on(oldest);
        }
        self.meter.held(waited.elapsed());
        let (store, meter) = (self.store.clone(), self.meter.clone());
        let records = (object.last - object.first + 1) as usize;
        self.pending.push_back(self.runtime.spawn(async move {
            let started = std::time::Instant::now();
            let mut backoff = Duration::from_millis(100);
            let mut attempt = 1u32;
            loop {
                match store.put(&path, PutPayload::from(body.clone())).await {
                    Ok(_) => {
                        meter.written(records, started.elapsed());
                        if attempt > 1 {
                            tracing::info!(%path, attempt, "raw batch stored after retries");
                        }
                        return;
                    }
                    Err(error) => {
                        meter.retry();
                        tracing::warn!(%path, attempt, retry_in_ms = backoff.as_millis() as u64, %error,
                            "storing a raw batch failed; retrying (the pipeline waits, nothing is dropped)");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        attempt += 1;
                    }
                }
            }
        }));
    }

    /// Upload every open object; the returned wait is for everything written so far.
    /// Drop what was read from `partition` and not uploaded yet (the partition was lost to
    /// another host, which reads it again from the last checkpoint). Returns how many records.
    pub fn forget(&mut self, partition: i32) -> usize {
        let mut dropped = 0;
        self.open.retain(|(_, p), object| {
            if *p == partition {
                dropped += (object.last - object.first + 1) as usize;
            }
            *p != partition
        });
        self.meter.forgotten(dropped);
        dropped
    }

    pub fn start_wait(&mut self) -> crate::sinks::Pending {
        let keys: Vec<(String, i32)> = self.open.keys().cloned().collect();
        for key in &keys {
            self.upload(key);
        }
        let uploads = std::mem::take(&mut self.pending);
        let runtime = self.runtime.clone();
        Box::new(move || {
            for upload in uploads {
                let _ = runtime.block_on(upload);
            }
        })
    }

    /// Upload every open object and wait until everything written so far is stored.
    pub fn wait(&mut self) {
        let keys: Vec<(String, i32)> = self.open.keys().cloned().collect();
        for key in &keys {
            self.upload(key);
        }
        while let Some(upload) = self.pending.pop_front() {
            let _ = self.runtime.block_on(upload);
        }
    }

    /// Delete objects of `topic`/`partition` whose first offset is `>= next` (written after the
    /// last checkpoint, before a crash). Returns how many were deleted.
    ///
    /// Objects are dated by their first record's timestamp. `since_ms` (the newest record the
    /// checkpoint covers) limits the search to dates from the day before it on, so a restart
    /// looks through a day or two of the partition's objects, not the topic's history; without
    /// it every date is searched. Within a date only names after `{next:020}` are listed.
    pub async fn discard_after(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
        since_ms: Option<i64>,
    ) -> Result<usize, RawStoreError> {
        let topic_prefix = Path::from(format!("{}/{topic}", self.prefix));
        let dates = self
            .store
            .list_with_delimiter(Some(&topic_prefix))
            .await?
            .common_prefixes;
        let from = since_ms.map(|ms| crate::units::date(ms - DAY_MS));
        let mut deleted = 0;
        for date_prefix in dates {
            let Some(date) = date_prefix.filename().and_then(|d| d.strip_prefix("date=")) else {
                continue;
            };
            if from.as_deref().is_some_and(|from| date < from) {
                continue;
            }
            let dir = date_prefix.clone().join(format!("partition={partition}"));
            let after = dir.clone().join(format!("{next:020}"));
            let objects: Vec<_> = self
                .store
                .list_with_offset(Some(&dir), &after)
                .try_collect()
                .await?;
            for meta in objects {
                let first = meta
                    .location
                    .filename()
                    .and_then(|f| f.split('-').next())
                    .and_then(|n| n.parse::<i64>().ok());
                if first.is_some_and(|f| f >= next) {
                    self.store.delete(&meta.location).await?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Delete the objects of `topics` from each topic-partition's offset in `archived` on (from
    /// 0 where it has none): what a local run stored after its last saved state, which the
    /// next run reads and stores again. Returns how many were deleted.
    pub async fn discard_beyond(
        &self,
        topics: &[String],
        archived: &crate::sources::Offsets,
    ) -> Result<usize, RawStoreError> {
        let mut deleted = 0;
        for topic in topics {
            let dir = Path::from(format!("{}/{topic}", self.prefix));
            let metas: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
            for meta in metas {
                let Some(object) = read::parse_object(topic, "", meta.location) else {
                    continue;
                };
                let tp = crate::sources::TopicPartition::new(topic.as_str(), object.partition);
                if object.first >= archived.get(&tp).copied().unwrap_or(0) {
                    self.store.delete(&object.path).await?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }
}

const DAY_MS: i64 = 86_400_000;

/// The object store a config names: a local folder (default `<data_dir>/raw`) or S3.
pub fn open_store(
    config: &RawStoreConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn ObjectStore>, RawStoreError> {
    Ok(match config.kind.as_str() {
        "local" => {
            let dir = config.path.clone().unwrap_or_else(|| data_dir.join("raw"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| RawStoreError::Config(format!("{}: {e}", dir.display())))?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir)?)
        }
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&config.bucket)
                .with_region(&config.region);
            if let Some(e) = &config.endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            if let Some(k) = &config.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &config.secret_access_key {
                b = b.with_secret_access_key(k);
            }
            Arc::new(b.build()?)
        }
        other => {
            return Err(RawStoreError::Config(format!(
                "kind {other:?} is not s3 or local"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_through_gzip_ndjson() {
        let records: Vec<RawRecord> = (5..8)
            .map(|o| RawRecord {
                topic: "t".into(),
                partition: 2,
                offset: o,
                key: Some(b"k".to_vec()),
                payload: b"{\"a\":1}".to_vec(),
                timestamp: 0,
                headers: Vec::new(),
            })
            .collect();
        let decoded = decode("t", &encode(&records)).unwrap();
        assert_eq!(decoded, records);
        let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![5, 6, 7]);
    }

    #[test]
    fn a_forgotten_partition_uploads_nothing_of_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut store =
            RawStore::new(&RawStoreConfig::default(), dir.path(), rt.handle().clone()).unwrap();
        let records: Vec<RawRecord> = (0..6)
            .map(|o| RawRecord {
                topic: "t".into(),
                partition: (o % 2) as i32,
                offset: o / 2,
                key: None,
                payload: b"{}".to_vec(),
                timestamp: 0,
                headers: Vec::new(),
            })
            .collect();
        store.write(&records);
        assert_eq!(store.forget(0), 3);
        store.wait();
        let names: Vec<String> = rt
            .block_on(store.store.list(None).try_collect::<Vec<_>>())
            .unwrap()
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        assert_eq!(names, vec![store.object_path("t", 1, 0, 2, 0).to_string()]);
    }

    #[test]
    fn discard_removes_only_the_partitions_objects_from_the_offset_on() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store =
            RawStore::new(&RawStoreConfig::default(), dir.path(), rt.handle().clone()).unwrap();
        const DAY: i64 = DAY_MS;
        // (partition, first, last, day): day 0 is long ago, days 10 and 11 are recent.
        let objects = [
            (0, 0, 9, 0),
            (0, 10, 19, 0), // after the checkpoint but dated long before it
            (0, 10, 19, 10),
            (0, 20, 29, 11),
            (1, 10, 19, 11), // another partition
            (0, 5, 9, 10),   // before the checkpoint
        ];
        for (p, first, last, day) in objects {
            let path = store.object_path("t", p, first, last, day * DAY);
            rt.block_on(store.store.put(&path, b"x".to_vec().into()))
                .unwrap();
        }
        let names = |store: &RawStore| -> Vec<String> {
            let mut v: Vec<String> = rt
                .block_on(store.store.list(None).try_collect::<Vec<_>>())
                .unwrap()
                .into_iter()
                .map(|m| m.location.to_string())
                .collect();
            v.sort();
            v
        };
        let all = names(&store);
        // The checkpoint covers offsets < 10, its newest record on day 10: days 9 on are searched.
        let deleted = store
            .discard_after_blocking("t", 0, 10, Some(10 * DAY + 5))
            .unwrap();
        assert_eq!(deleted, 2);
        let left = names(&store);
        let gone: Vec<String> = all.into_iter().filter(|n| !left.contains(n)).collect();
        let expected = [
            store.object_path("t", 0, 10, 19, 10 * DAY).to_string(),
            store.object_path("t", 0, 20, 29, 11 * DAY).to_string(),
        ];
        assert_eq!(gone, expected);
        // Without a bound every date is searched.
        assert_eq!(store.discard_after_blocking("t", 0, 10, None).unwrap(), 1);
        assert_eq!(store.discard_after_blocking("t", 1, 10, None).unwrap(), 1);
        assert_eq!(names(&store).len(), 2);
    }
}
