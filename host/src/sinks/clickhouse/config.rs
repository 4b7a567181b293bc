//! The `[clickhouse]` section of the pipeline config.

use std::collections::BTreeMap;

use clickhouse::Client;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Insert when this many rows are buffered.
    pub batch_rows: usize,
    /// ... or when the oldest buffered row is this old.
    pub flush_interval: String,
    /// Which table each metric family goes to.
    pub metric_tables: BTreeMap<String, String>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "retail".into(),
            user: "default".into(),
            password: String::new(),
            batch_rows: 50_000,
            flush_interval: "1s".into(),
            metric_tables: BTreeMap::from([
                ("sales_1m".into(), "spark_sales_metrics".into()),
                ("inventory_1m".into(), "spark_inventory_metrics".into()),
                ("sales_1h".into(), "sales_rollups".into()),
                ("sales_1h_hopping".into(), "sales_rollups".into()),
                ("sales_1d".into(), "sales_rollups".into()),
                ("sales_daily_store".into(), "sales_rollups".into()),
                ("sales_daily_category".into(), "sales_rollups".into()),
                ("stock_plan".into(), "stock_plans".into()),
                ("slow_movers".into(), "slow_movers".into()),
                ("cross_sell".into(), "cross_sell".into()),
            ]),
        }
    }
}

impl ClickHouseConfig {
    pub fn client(&self) -> Client {
        Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            .with_validation(false)
            .with_compression(clickhouse::Compression::None)
            .with_setting("input_format_skip_unknown_fields", "1")
    }
}
