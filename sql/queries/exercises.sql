-- The seed's five learning exercises, answered against the tables the exercise suite fills.
-- Run one with `clickhouse-client --database retail --query "$(...)"`, or all of them with
-- `host demo`; tests/clickhouse.rs runs every one after three simulated weeks and checks each
-- returns rows. They run on ClickHouse 18.16 and current servers (one JOIN per query). Times are
-- relative to the newest data, not to now(), so they also work on a replayed history.
-- Every table is a ReplacingMergeTree that collapses rows written again after a crash on merge:
-- the queries read with FINAL so that sums and counts see each row once.

-- name: ex1_stock_dashboard
-- Exercise 1, real-time dashboard: each store's shelves by status in the newest inventory window.
SELECT
    store_id,
    count() AS products,
    sum(status = 'OUT_OF_STOCK') AS out_of_stock,
    sum(status = 'LOW_STOCK') AS low_stock,
    round(avg(pct), 1) AS avg_stock_pct
FROM
(
    SELECT store_id, product_id,
        argMax(stock_status, window_start) AS status,
        argMax(stock_percentage, window_start) AS pct
    FROM spark_inventory_metrics FINAL
    GROUP BY store_id, product_id
)
GROUP BY store_id
ORDER BY out_of_stock DESC, low_stock DESC, store_id;

-- name: ex2_daily_sales_trend
-- Exercise 2, sales analytics: revenue per day and its change on the day before (the first
-- day's change is 0).
SELECT
    day,
    revenue,
    runningDifference(revenue) AS change_vs_previous_day
FROM
(
    SELECT toDate(window_start) AS day, round(sum(total_revenue), 2) AS revenue
    FROM sales_rollups FINAL
    WHERE metric = 'sales_daily_store'
    GROUP BY day
    ORDER BY day
);

-- name: ex2_best_categories
-- Exercise 2: categories ranked by revenue over the whole history.
SELECT
    category,
    round(sum(total_revenue), 2) AS revenue,
    sum(units_sold) AS units,
    sum(transaction_count) AS transactions
FROM sales_rollups FINAL
WHERE metric = 'sales_daily_category'
GROUP BY category
ORDER BY revenue DESC;

-- name: ex2_demand_forecast
-- Exercise 2: the next seven days of forecast demand per store (Holt-Winters, 95% interval).
SELECT
    store_id,
    toDate(target_start) AS day,
    round(sum(predicted), 1) AS units,
    round(sum(lower), 1) AS units_low,
    round(sum(upper), 1) AS units_high
FROM demand_forecasts FINAL
WHERE model LIKE 'holt-winters%'
  AND forecast_time = (SELECT max(forecast_time) FROM demand_forecasts FINAL WHERE model LIKE 'holt-winters%')
GROUP BY store_id, day
ORDER BY store_id, day;

-- name: ex3_slow_movers
-- Exercise 3, stock optimisation: shelves labelled DEAD or SLOW on the newest day.
SELECT store_id, product_id, label, units_sold, stock_level, days_of_cover, round(sell_through, 3) AS sell_through
FROM slow_movers FINAL
WHERE window_end = (SELECT max(window_end) FROM slow_movers FINAL)
  AND label IN ('DEAD', 'SLOW')
ORDER BY label, days_of_cover DESC, store_id, product_id;

-- name: ex3_reorder_quantities
-- Exercise 3: what to order now: the newest plan of each shelf that needs an order.
SELECT
    store_id,
    product_id,
    argMax(stock_level, window_start) AS stock,
    round(argMax(reorder_point, window_start), 1) AS reorder_point,
    round(argMax(safety_stock, window_start), 1) AS safety_stock,
    argMax(order_quantity, window_start) AS order_quantity
FROM stock_plans FINAL
GROUP BY store_id, product_id
HAVING order_quantity > 0
ORDER BY order_quantity DESC, store_id, product_id
LIMIT 50;

-- name: ex4_pipeline_provenance
-- Exercise 4, Kafka -> ClickHouse -> object store: which plugin version wrote how many rows, and
-- what was turned away (dead letters keep the source topic/partition/offset; the raw batches of
-- those offsets are in the object store under raw/<topic>/date=/partition=/).
SELECT 'fact_sales' AS table, _plugin AS plugin, _plugin_version AS version, count() AS rows
FROM fact_sales FINAL GROUP BY plugin, version
UNION ALL
SELECT 'fact_inventory', _plugin, _plugin_version, count() FROM fact_inventory FINAL GROUP BY _plugin, _plugin_version
UNION ALL
SELECT 'streaming_alerts', _plugin, _plugin_version, count() FROM streaming_alerts FINAL GROUP BY _plugin, _plugin_version;

-- name: ex4_dead_letters
-- Exercise 4: dead letters by kind, source topic and the start of the reason.
SELECT kind, source_topic, substring(reason, 1, 40) AS reason_start, count() AS messages,
    min(source_offset) AS first_offset, max(source_offset) AS last_offset
FROM dead_letters FINAL
GROUP BY kind, source_topic, reason_start
ORDER BY messages DESC;

-- name: ex5_anomalies
-- Exercise 5, anomaly detection: alerts per rule and severity per day, with a typical score.
SELECT
    toDate(alert_time) AS day,
    rule,
    severity,
    count() AS alerts,
    round(avg(visitParamExtractFloat(evidence, 'robust_z')), 1) AS avg_sales_z,
    round(avg(visitParamExtractFloat(evidence, 'missing_units')), 1) AS avg_missing_units,
    round(avg(visitParamExtractFloat(evidence, 'change')), 2) AS avg_price_change
FROM streaming_alerts FINAL
WHERE rule IN ('sales_anomaly', 'price_anomaly', 'shrinkage')
GROUP BY day, rule, severity
ORDER BY day, rule, severity;

-- name: ex5_cross_sell
-- The recommendation use case: each product's three best partners on the newest refresh. With a
-- Kafka source each partition (_partition) mines its own baskets: pair counts add up, and lift
-- and confidence are averaged weighted by pair count.
SELECT
    product_id,
    recommended_product_id,
    round(sum(lift * pair_count) / sum(pair_count), 2) AS lift,
    round(sum(confidence * pair_count) / sum(pair_count), 3) AS confidence,
    sum(pair_count) AS pairs
FROM cross_sell FINAL
WHERE window_end = (SELECT max(window_end) FROM cross_sell)
GROUP BY product_id, recommended_product_id
ORDER BY product_id, lift DESC, recommended_product_id
LIMIT 3 BY product_id;
