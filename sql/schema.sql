-- shelfstream ClickHouse schema. Applied idempotently by `host migrate` (and by `host run` when a
-- [clickhouse] section is configured): every statement is CREATE ... IF NOT EXISTS.
--
-- Portability: this file runs unchanged on ClickHouse 18.16 (the only server Debian bookworm
-- ships, used by the tests here) and on current ClickHouse (docker-compose.yml). It therefore
-- avoids what 18.16 lacks: DateTime64, LowCardinality, window functions, insert deduplication
-- tokens, and more than one JOIN per query (see sql/queries/).
--
-- Exactly-once: a crash between a write and the source's commit re-delivers messages, and the
-- host writes their outputs again. Every table is a ReplacingMergeTree whose sorting key is the
-- row's deterministic identity (a sale line, a window of a store and product, an alert, ...), so
-- repeated rows collapse on merge. Read with FINAL (or after OPTIMIZE ... FINAL) to see each
-- row once; count() = uniqExact(identity) then holds.
--
-- Provenance: rows written by plugins carry the stage, plugin name and plugin version (hash), and
-- the source offsets they came from: facts their own record (_source_topic, _source_partition,
-- _source_offset); derived rows (windows, alerts, forecasts, plans) the highest offset read per
-- topic:partition when they were emitted (_source_offsets, a JSON object).
--
-- Upgrades: `host migrate` (and `host run`) add columns that a table created by an older version
-- of this file lacks (ALTER TABLE ... ADD COLUMN; 18.16 has no ADD COLUMN IF NOT EXISTS).
-- A sorting key cannot change in place: a table whose ORDER BY lacks `_partition` where this
-- file has it is rebuilt (rows copied into a new table; the old one is kept as
-- `<table>_before_partition_key`).
--
-- Shards: with a Kafka source, each partition runs its own plugin chain (so partitions can move
-- between hosts of a consumer group). Rows keyed by store and product come from one shard;
-- rollups over several products (per store, per category, cross-sell) are per shard and carry
-- `_partition` in their identity.

CREATE DATABASE IF NOT EXISTS retail;

CREATE TABLE IF NOT EXISTS retail.dim_store
(
    store_key UInt32,
    store_id String,
    store_name String,
    city String
)
ENGINE = ReplacingMergeTree()
ORDER BY store_key;

CREATE TABLE IF NOT EXISTS retail.dim_product
(
    product_key UInt32,
    sku String,
    product_name String,
    category String,
    base_price Float64
)
ENGINE = ReplacingMergeTree()
ORDER BY product_key;

CREATE TABLE IF NOT EXISTS retail.fact_sales
(
    sale_id String,
    transaction_id String,
    line UInt32,
    store_id String,
    product_id String,
    product_key UInt32,
    quantity Int32,
    unit_price Float64,
    total_amount Float64,
    customer_id String,
    payment_method String,
    transaction_time DateTime('UTC'),
    transaction_date Date,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String,
    _source_topic String,
    _source_partition Int32,
    _source_offset Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(transaction_date)
ORDER BY sale_id;

CREATE TABLE IF NOT EXISTS retail.fact_inventory
(
    update_id String,
    store_id String,
    product_id String,
    product_key UInt32,
    quantity_change Int32,
    stock_level Int32,
    capacity Int32,
    reason String,
    update_time DateTime('UTC'),
    update_date Date,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String,
    _source_topic String,
    _source_partition Int32,
    _source_offset Int64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(update_date)
ORDER BY update_id;

-- Windowed sales metrics per store and product (the seed's Spark output, same name and columns).
CREATE TABLE IF NOT EXISTS retail.spark_sales_metrics
(
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    store_id String,
    product_id String,
    total_revenue Float64,
    units_sold Float64,
    transaction_count UInt64,
    avg_unit_price Float64,
    metric String,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (metric, store_id, product_id, window_start);

-- Windowed inventory metrics per store and product.
CREATE TABLE IF NOT EXISTS retail.spark_inventory_metrics
(
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    store_id String,
    product_id String,
    latest_stock Float64,
    capacity Float64,
    stock_percentage Float64,
    stock_status String,
    metric String,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (metric, store_id, product_id, window_start);

CREATE TABLE IF NOT EXISTS retail.streaming_alerts
(
    alert_time DateTime('UTC'),
    rule String,
    severity String,
    store_id String,
    product_id String,
    message String,
    evidence String,
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(alert_time)
ORDER BY (rule, store_id, product_id, alert_time, window_start);

CREATE TABLE IF NOT EXISTS retail.demand_forecasts
(
    forecast_time DateTime('UTC'),
    model String,
    store_id String,
    product_id String,
    target_start DateTime('UTC'),
    target_end DateTime('UTC'),
    predicted Float64,
    lower Float64,
    upper Float64,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(target_start)
ORDER BY (model, store_id, product_id, target_start, forecast_time);

-- Dead letters: what the pipeline could not process, with the reason and the stage and plugin
-- version involved. A raw record's keeps the original message (record = the payload; key and
-- payload in base64 when not UTF-8, then key_base64 / payload_base64 = 1; headers as a JSON list
-- of {name, value, base64}), so `host replay --dead-letters clickhouse` can re-drive it.
CREATE TABLE IF NOT EXISTS retail.dead_letters
(
    dead_letter_id String,
    kind String,
    reason String,
    stage String,
    plugin String,
    plugin_version String,
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    record String,
    recorded_date Date,
    payload_base64 UInt8,
    record_key String,
    key_base64 UInt8,
    headers String,
    recorded_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(recorded_date)
ORDER BY dead_letter_id;

-- Hourly and daily sales rollups of the exercise suite (revenue-aggregator configured by `by`):
-- sales_1h, sales_1h_hopping (the last hour every 15 minutes), sales_1d (per store and product),
-- sales_daily_store, sales_daily_category. Columns a grouping does not use stay empty.
-- Per store or per category, a row is the part computed by one shard (_partition: the Kafka
-- partition; -1 for unpartitioned sources): sum the rows of a window (sql/queries/).
CREATE TABLE IF NOT EXISTS retail.sales_rollups
(
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    metric String,
    store_id String,
    product_id String,
    category String,
    total_revenue Float64,
    units_sold Float64,
    transaction_count UInt64,
    avg_unit_price Float64,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String,
    _partition Int32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, store_id, category, product_id, window_start, window_end, _partition);

-- Reorder point, safety stock and order quantity per shelf, each time a new forecast arrives.
CREATE TABLE IF NOT EXISTS retail.stock_plans
(
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    metric String,
    store_id String,
    product_id String,
    stock_level Float64,
    lead_time_demand Float64,
    safety_stock Float64,
    reorder_point Float64,
    order_quantity Float64,
    service_level Float64,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, store_id, product_id, window_start);

-- Daily slow-mover labels (DEAD, SLOW, NORMAL, FAST) over the lookback window ending window_end.
CREATE TABLE IF NOT EXISTS retail.slow_movers
(
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    metric String,
    store_id String,
    product_id String,
    label String,
    units_sold Float64,
    avg_daily_units Float64,
    stock_level Float64,
    days_of_cover Float64,
    sell_through Float64,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(window_end)
ORDER BY (metric, store_id, product_id, window_end);

-- Cross-sell recommendations: the top partners of each product by lift, refreshed daily.
-- Each shard (_partition) mines the baskets of its own partition: merge them (sql/queries/).
CREATE TABLE IF NOT EXISTS retail.cross_sell
(
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    metric String,
    product_id String,
    recommended_product_id String,
    rank UInt8,
    support Float64,
    confidence Float64,
    lift Float64,
    pair_count Float64,
    baskets Float64,
    _stage String,
    _plugin String,
    _plugin_version String,
    _source_offsets String,
    _partition Int32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(window_end)
ORDER BY (metric, product_id, window_end, recommended_product_id, _partition);
