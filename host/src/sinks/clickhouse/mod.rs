//! The ClickHouse sink: plugin outputs and dead letters into the `retail` tables of `sql/schema.sql`.
//!
//! Rows are buffered per table as JSONEachRow and inserted when `batch_rows` rows are waiting or
//! `flush_interval` has passed, and on every `flush`. Inserts run in the background, several at
//! once (at most `MAX_IN_FLIGHT`); `flush` (the checkpoint) waits until every one is accepted. A
//! failed insert is retried with exponential backoff for as long as it takes: the in-flight
//! limit then holds the pipeline thread, sources block on the full channel, and nothing is
//! dropped (backpressure). Tables are ReplacingMergeTree keyed by each row's
//! deterministic identity, so rows written again after a crash collapse (see `sql/schema.sql`).

//!
//! - [`config`]: the `[clickhouse]` section;
//! - [`schema`]: applying `sql/schema.sql` (adding columns, rebuilding tables whose key changed)
//!   and loading the dimension tables;
//! - [`rows`]: one JSONEachRow row per event, with its provenance columns;
//! - [`sink`]: buffering, background inserts, retries.

mod config;
mod rows;
mod schema;
mod sink;

pub use config::ClickHouseConfig;
pub use rows::{dead_letter_row, product_key, table_row};
pub use schema::{
    load_dimensions, migrate, migrate_when_reachable, statements, table_shapes, TableShape, SCHEMA,
};
pub use sink::ClickHouseSink;
