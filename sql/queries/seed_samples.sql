-- The sample queries of the original project's README ("Query ClickHouse" and "Sample Queries"),
-- unmodified. Run them after `USE retail` (or `clickhouse-client --database retail`).
-- tests/clickhouse.rs runs every one of them after a demo run and checks each returns rows.
-- Tables are ReplacingMergeTree: before background merges, a re-delivered row can appear twice;
-- add FINAL after a table name (or run OPTIMIZE TABLE ... FINAL) for exactly-once results.

-- name: sales_metrics
SELECT * FROM spark_sales_metrics LIMIT 10;

-- name: inventory_alerts
SELECT * FROM spark_inventory_metrics WHERE stock_status != 'IN_STOCK' LIMIT 10;

-- name: top_selling_products
SELECT
    p.product_name,
    COUNT(s.sale_id) as transaction_count,
    SUM(s.total_amount) as total_revenue
FROM fact_sales s
JOIN dim_product p ON s.product_key = p.product_key
WHERE s.transaction_time >= today()
GROUP BY p.product_name
ORDER BY total_revenue DESC
LIMIT 10;

-- name: sales_by_hour
SELECT
    window_start,
    store_id,
    total_revenue,
    transaction_count
FROM spark_sales_metrics
ORDER BY window_start DESC
LIMIT 10;

-- name: current_hour_sales
SELECT
    store_id,
    SUM(total_revenue) as hourly_revenue,
    SUM(transaction_count) as hourly_transactions,
    AVG(avg_unit_price) as avg_price
FROM spark_sales_metrics
WHERE window_start >= now() - INTERVAL 1 HOUR
GROUP BY store_id
ORDER BY hourly_revenue DESC;

-- name: inventory_status_dashboard
SELECT
    store_id,
    COUNT(*) as products,
    SUM(CASE WHEN stock_status = 'OUT_OF_STOCK' THEN 1 ELSE 0 END) as out_of_stock,
    SUM(CASE WHEN stock_status = 'LOW_STOCK' THEN 1 ELSE 0 END) as low_stock,
    AVG(stock_percentage) as avg_stock_level
FROM spark_inventory_metrics
WHERE window_start >= now() - INTERVAL 1 HOUR
GROUP BY store_id
ORDER BY out_of_stock DESC;

-- name: product_performance
-- Three tables in one query: current ClickHouse only. ClickHouse 18.16 answers "Support for more
-- than one JOIN in query is not implemented"; use product_performance_18 there.
SELECT
    p.product_name,
    p.category,
    sm.total_revenue,
    sm.transaction_count,
    im.latest_stock,
    im.stock_status
FROM spark_sales_metrics sm
JOIN spark_inventory_metrics im ON sm.store_id = im.store_id AND sm.product_id = im.product_id
JOIN dim_product p ON sm.product_id = p.sku
WHERE sm.window_start >= now() - INTERVAL 1 DAY
ORDER BY sm.total_revenue DESC
LIMIT 20;

-- name: product_performance_18
-- The same result with one JOIN per query level (runs on ClickHouse 18.16 and current).
SELECT product_name, category, total_revenue, transaction_count, latest_stock, stock_status
FROM
(
    SELECT
        sm.product_id AS sku,
        sm.total_revenue AS total_revenue,
        sm.transaction_count AS transaction_count,
        im.latest_stock AS latest_stock,
        im.stock_status AS stock_status
    FROM spark_sales_metrics sm
    JOIN spark_inventory_metrics im ON sm.store_id = im.store_id AND sm.product_id = im.product_id
    WHERE sm.window_start >= now() - INTERVAL 1 DAY
) AS x
JOIN dim_product p ON x.sku = p.sku
ORDER BY total_revenue DESC
LIMIT 20;
