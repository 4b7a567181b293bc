//! `sql/schema.sql` applied to a server (idempotent), and the dimension tables loaded.

use std::time::Duration;

use clickhouse::Client;
use serde_json::json;

use super::rows::product_key;
use crate::sources::Dimensions;

/// The schema, applied by `host migrate` and at start.
pub const SCHEMA: &str = include_str!("../../../../sql/schema.sql");

/// Apply `sql/schema.sql` (idempotent) to `database` (the schema's `retail`, or another name,
/// e.g. one per test).
pub async fn migrate(client: &Client, database: &str) -> Result<usize, clickhouse::error::Error> {
    let mut applied = 0;
    for statement in statements(SCHEMA) {
        let statement = statement
            .replace("retail.", &format!("{database}."))
            .replace(
                "DATABASE IF NOT EXISTS retail",
                &format!("DATABASE IF NOT EXISTS {database}"),
            );
        client.query(&statement).execute().await?;
        applied += 1;
        // A table made by an older schema may lack columns added since: add them.
        if let Some((table, columns)) = table_columns(&statement) {
            let sql = format!(
                "SELECT name FROM system.columns WHERE database = '{database}' AND table = '{table}'"
            );
            let names = client
                .query(&sql)
                .fetch_bytes("TabSeparated")?
                .collect()
                .await?;
            let existing: Vec<&str> = std::str::from_utf8(&names).unwrap_or("").lines().collect();
            for (name, definition) in &columns {
                if !existing.contains(&name.as_str()) {
                    tracing::info!(table, column = %name, "adding a column the table lacks");
                    let alter = format!("ALTER TABLE {database}.{table} ADD COLUMN {definition}");
                    client.query(&alter).execute().await?;
                    applied += 1;
                }
            }
            // A sorting key cannot change in place: rebuild a table whose key lacks `_partition`.
            if sorting_key(&statement).contains("_partition") {
                let sql = format!(
                    "SELECT engine_full FROM system.tables WHERE database = '{database}' AND name = '{table}'"
                );
                let engine = client
                    .query(&sql)
                    .fetch_bytes("TabSeparated")?
                    .collect()
                    .await?;
                if !sorting_key(&String::from_utf8_lossy(&engine)).contains("_partition") {
                    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
                    rebuild(client, &statement, database, &table, &names).await?;
                    applied += 1;
                }
            }
        }
    }
    Ok(applied)
}

/// Re-create `table` with the sorting key of `statement` (its `CREATE TABLE`), copying every
/// row; the old table stays as `{table}_before_partition_key`.
async fn rebuild(
    client: &Client,
    statement: &str,
    database: &str,
    table: &str,
    columns: &[&str],
) -> Result<(), clickhouse::error::Error> {
    let (old, new, backup) = (
        format!("{database}.{table}"),
        format!("{database}.{table}_rebuilt"),
        format!("{database}.{table}_before_partition_key"),
    );
    tracing::warn!(table = %old, %backup, "rebuilding a table whose sorting key lacks _partition (rows are copied; the old table is kept)");
    client
        .query(&format!("DROP TABLE IF EXISTS {new}"))
        .execute()
        .await?;
    let create = statement.replacen(&format!("{old}\n"), &format!("{new}\n"), 1);
    if create == statement {
        return Err(clickhouse::error::Error::Custom(format!(
            "rebuilding {old}: unexpected CREATE statement"
        )));
    }
    client.query(&create).execute().await?;
    let list = columns.join(", ");
    client
        .query(&format!(
            "INSERT INTO {new} ({list}) SELECT {list} FROM {old}"
        ))
        .execute()
        .await?;
    client
        .query(&format!("RENAME TABLE {old} TO {backup}, {new} TO {old}"))
        .execute()
        .await?;
    Ok(())
}

/// A table of `sql/schema.sql`: its columns (name, type) and its identity (the sorting key of
/// its ReplacingMergeTree: rows with equal keys are one row).
#[derive(Debug, Clone)]
pub struct TableShape {
    pub name: String,
    pub columns: Vec<(String, String)>,
    pub key: Vec<String>,
}

/// Every table of `sql/schema.sql`.
pub fn table_shapes() -> Vec<TableShape> {
    statements(SCHEMA)
        .iter()
        .filter_map(|statement| {
            let (name, columns) = table_columns(statement)?;
            let key = sorting_key(statement)
                .trim_start_matches("ORDER BY")
                .trim()
                .trim_matches(|c| c == '(' || c == ')')
                .split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect();
            let columns = (columns.into_iter())
                .map(|(n, def)| {
                    let ty = def.split_whitespace().nth(1).unwrap_or("").to_string();
                    (n, ty)
                })
                .collect();
            Some(TableShape { name, columns, key })
        })
        .collect()
}

/// The `ORDER BY (...)` part of a table definition (empty if none).
fn sorting_key(definition: &str) -> &str {
    definition
        .find("ORDER BY")
        .map(|i| {
            let rest = &definition[i..];
            &rest[..rest.find(')').map_or(rest.len(), |j| j + 1)]
        })
        .unwrap_or("")
}

/// The table name and the (name, definition) of each column of a `CREATE TABLE` statement.
fn table_columns(statement: &str) -> Option<(String, Vec<(String, String)>)> {
    let rest = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ")?;
    let name = rest.split_whitespace().next()?;
    let table = name.rsplit('.').next()?.to_string();
    let body = &rest[rest.find('(')? + 1..rest.find("ENGINE")?];
    let body = body.trim().strip_suffix(')')?;
    let columns = body
        .split(",\n")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter_map(|c| Some((c.split_whitespace().next()?.to_string(), c.to_string())))
        .collect();
    Some((table, columns))
}

/// [`migrate`], waiting for a server that cannot be reached (down, restarting) with backoff, as
/// the sink does for inserts; a server that answers with an error fails at once.
pub async fn migrate_when_reachable(
    client: &Client,
    database: &str,
    url: &str,
) -> Result<usize, clickhouse::error::Error> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match migrate(client, database).await {
            Err(
                error @ (clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut),
            ) => {
                tracing::warn!(url, error = ?error, retry_in_ms = backoff.as_millis() as u64,
                    "ClickHouse unreachable at start; waiting for it");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Load a source's stores and products into `dim_store` and `dim_product` (idempotent:
/// ReplacingMergeTree on the keys).
pub async fn load_dimensions(
    client: &Client,
    database: &str,
    dims: &Dimensions,
) -> Result<(usize, usize), clickhouse::error::Error> {
    let mut stores = Vec::new();
    for (i, s) in dims.stores.iter().enumerate() {
        let row = json!({"store_key": i + 1, "store_id": s.id, "store_name": format!("{} {}", s.city, s.id), "city": s.city});
        serde_json::to_writer(&mut stores, &row).expect("serialise");
        stores.push(b'\n');
    }
    let mut products = Vec::new();
    for p in &dims.products {
        let row = json!({"product_key": product_key(&p.sku), "sku": p.sku, "product_name": p.name,
            "category": p.category, "base_price": p.base_price});
        serde_json::to_writer(&mut products, &row).expect("serialise");
        products.push(b'\n');
    }
    for (table, body) in [("dim_store", stores), ("dim_product", products)] {
        let mut insert = client
            .insert_formatted_with(format!("INSERT INTO {database}.{table} FORMAT JSONEachRow"));
        insert.send(bytes::Bytes::from(body)).await?;
        insert.end().await?;
    }
    Ok((dims.stores.len(), dims.products.len()))
}

/// The statements of a SQL file: `;`-terminated, `--` comments removed.
pub fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_statements_list_their_columns() {
        let sales = statements(SCHEMA)
            .into_iter()
            .find(|s| s.contains("retail.fact_sales"))
            .unwrap();
        let (table, columns) = table_columns(&sales).unwrap();
        assert_eq!(table, "fact_sales");
        assert_eq!(
            columns[0],
            ("sale_id".to_string(), "sale_id String".to_string())
        );
        assert!(columns.contains(&(
            "_source_offset".to_string(),
            "_source_offset Int64".to_string()
        )));
        assert!(columns
            .iter()
            .any(|(n, d)| n == "transaction_time" && d == "transaction_time DateTime('UTC')"));
        assert!(table_columns("CREATE DATABASE IF NOT EXISTS retail").is_none());
    }

    #[test]
    fn schema_splits_into_statements() {
        let s = statements(SCHEMA);
        assert!(s[0].starts_with("CREATE DATABASE IF NOT EXISTS retail"));
        assert!(s.iter().all(|x| x.starts_with("CREATE")));
        assert!(s.iter().any(|x| x.contains("retail.spark_sales_metrics")));
    }
}
