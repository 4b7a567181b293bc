//! Reading the archive back: which objects hold a topic's records in a time range, and their
//! records with the batch each arrived in ([`crate::replay`] reads through this).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::format::{Records, Tagged};
use super::{open_store, DecodeError, RawStoreConfig, RawStoreError};

/// A half-open range of record timestamps, `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl Range {
    pub fn contains(&self, ms: i64) -> bool {
        self.from_ms.is_none_or(|f| ms >= f) && self.to_ms.is_none_or(|t| ms < t)
    }
}

/// One stored object: the records `first..=last` of a topic-partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveObject {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    pub date: String,
    pub path: Path,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] RawStoreError),
    #[error("reading {path}: {source}")]
    Get {
        path: Path,
        source: object_store::Error,
    },
    #[error("raw object {path}: {source}")]
    Decode { path: Path, source: DecodeError },
}

impl From<object_store::Error> for ReadError {
    fn from(e: object_store::Error) -> Self {
        ReadError::Store(RawStoreError::Store(e))
    }
}

/// The archive of raw batches, read-only.
pub struct ArchiveReader {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl ArchiveReader {
    pub fn open(config: &RawStoreConfig, data_dir: &std::path::Path) -> Result<Self, ReadError> {
        Ok(ArchiveReader {
            store: open_store(config, data_dir)?,
            prefix: config.prefix.trim_matches('/').to_string(),
        })
    }

    /// Where the objects are (for messages): `s3://bucket/prefix` or the folder.
    pub fn describe(config: &RawStoreConfig, data_dir: &std::path::Path) -> String {
        match config.kind.as_str() {
            "s3" => format!("s3://{}/{}", config.bucket, config.prefix),
            _ => format!(
                "{}/{}",
                config
                    .path
                    .clone()
                    .unwrap_or_else(|| data_dir.join("raw"))
                    .display(),
                config.prefix
            ),
        }
    }

    /// The topics that have objects.
    pub async fn topics(&self) -> Result<Vec<String>, ReadError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&Path::from(self.prefix.as_str())))
            .await?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// The objects of `topic` that may hold records in `range`, per partition in offset order
    /// (only `partitions`, when given). Objects are dated by their first record; the last
    /// object of a partition dated before the range is included too, since it may run into it.
    pub async fn objects(
        &self,
        topic: &str,
        partitions: Option<&[i32]>,
        range: Range,
    ) -> Result<BTreeMap<i32, Vec<ArchiveObject>>, ReadError> {
        let topic_dir = Path::from(format!("{}/{topic}", self.prefix));
        let mut dates: Vec<String> = (self.store.list_with_delimiter(Some(&topic_dir)).await?)
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix("date=").map(str::to_string))
            .collect();
        dates.sort();
        let from = range.from_ms.map(crate::units::date);
        let to = range.to_ms.map(|t| crate::units::date(t - 1));
        let (before, within): (Vec<String>, Vec<String>) = dates
            .into_iter()
            .filter(|d| to.as_ref().is_none_or(|to| d <= to))
            .partition(|d| from.as_ref().is_some_and(|from| d < from));
        let mut out: BTreeMap<i32, Vec<ArchiveObject>> = BTreeMap::new();
        for date in &within {
            for object in self.objects_of_date(&topic_dir, topic, date).await? {
                if partitions.is_none_or(|ps| ps.contains(&object.partition)) {
                    out.entry(object.partition).or_default().push(object);
                }
            }
        }
        // The newest object before the range, per partition (searching back one date at a time).
        let mut earlier: BTreeMap<i32, ArchiveObject> = BTreeMap::new();
        for date in before.iter().rev() {
            for object in self.objects_of_date(&topic_dir, topic, date).await? {
                if partitions.is_none_or(|ps| ps.contains(&object.partition)) {
                    let newest = earlier.entry(object.partition).or_insert(object.clone());
                    if object.first > newest.first {
                        *newest = object;
                    }
                }
            }
            if partitions.is_some_and(|ps| ps.iter().all(|p| earlier.contains_key(p))) {
                break;
            }
        }
        for (partition, object) in earlier {
            out.entry(partition).or_default().push(object);
        }
        for objects in out.values_mut() {
            objects.sort_by_key(|o| o.first);
            objects.dedup_by_key(|o| o.first);
        }
        Ok(out)
    }

    async fn objects_of_date(
        &self,
        topic_dir: &Path,
        topic: &str,
        date: &str,
    ) -> Result<Vec<ArchiveObject>, ReadError> {
        let dir = topic_dir.clone().join(format!("date={date}"));
        let metas: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| parse_object(topic, date, m.location))
            .collect())
    }

    /// An object's records (in offset order) with the batch each arrived in.
    pub async fn read(&self, object: &ArchiveObject) -> Result<Vec<Tagged>, ReadError> {
        let mut records = self.records(object).await?;
        let mut all = Vec::new();
        while let Some(chunk) = records.next_chunk()? {
            all.extend(chunk);
        }
        Ok(all)
    }

    /// An object's records as [`ObjectRecords`]: fetched whole, inflated and decoded a chunk at a
    /// time.
    pub async fn records(&self, object: &ArchiveObject) -> Result<ObjectRecords, ReadError> {
        let bytes = self.fetch(object).await?;
        Ok(ObjectRecords {
            path: object.path.clone(),
            records: Records::new(&object.topic, bytes::Buf::reader(bytes)),
        })
    }

    async fn fetch(&self, object: &ArchiveObject) -> Result<bytes::Bytes, ReadError> {
        let get = |source| ReadError::Get {
            path: object.path.clone(),
            source,
        };
        self.store
            .get(&object.path)
            .await
            .map_err(get)?
            .bytes()
            .await
            .map_err(get)
    }
}

/// The records of one object, a chunk of lines at a time.
pub struct ObjectRecords {
    path: Path,
    records: Records<bytes::buf::Reader<bytes::Bytes>>,
}

impl ObjectRecords {
    /// The next records in offset order, or `None` after the last.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<Tagged>>, ReadError> {
        self.records
            .next_chunk()
            .map_err(|source| ReadError::Decode {
                path: self.path.clone(),
                source,
            })
    }
}

/// `.../partition={p}/{first:020}-{last:020}.ndjson.gz`
pub(super) fn parse_object(topic: &str, date: &str, path: Path) -> Option<ArchiveObject> {
    let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_string()).collect();
    let [.., dir, name] = parts.as_slice() else {
        return None;
    };
    let partition = dir.strip_prefix("partition=")?.parse().ok()?;
    let (first, last) = name.strip_suffix(".ndjson.gz")?.split_once('-')?;
    Some(ArchiveObject {
        topic: topic.to_string(),
        partition,
        first: first.parse().ok()?,
        last: last.parse().ok()?,
        date: date.to_string(),
        path,
    })
}
