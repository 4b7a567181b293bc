//! Shared helpers for the integration tests: where the built components are, and event builders.
#![allow(dead_code)]

use std::path::PathBuf;

use shelfstream::plugin::bindings::{Event, InventoryUpdate, MetricRow, Sale};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: build the components first with `plugins/build.sh --fixtures` (tests/run.sh does)",
        path.display()
    );
    path
}

/// A shipped plugin component, e.g. `plugin("revenue-aggregator")`.
pub fn plugin(name: &str) -> PathBuf {
    existing(repo().join("plugins").join(format!("{name}.wasm")))
}

/// A deliberately bad plugin from `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    existing(repo().join("tests/fixtures/wasm").join(format!("{name}.wasm")))
}

/// The same component with a different version hash (an extra custom section, same behaviour).
pub fn new_version_of(path: &std::path::Path, tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let name = b"shelfstream-test-version";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section id
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}

pub const MIN: i64 = 60_000;

pub fn sale(tx: &str, store: &str, product: &str, quantity: i32, price: f64, ts: i64) -> Event {
    Event::Sale(Sale {
        transaction_id: tx.into(),
        line: 0,
        store_id: store.into(),
        product_id: product.into(),
        quantity,
        unit_price: price,
        total_amount: (price * quantity as f64 * 100.0).round() / 100.0,
        customer_id: None,
        payment_method: "card".into(),
        timestamp: ts,
    })
}

pub fn stock(store: &str, product: &str, level: i32, capacity: i32, ts: i64) -> Event {
    Event::Inventory(InventoryUpdate {
        update_id: format!("U{ts}"),
        store_id: store.into(),
        product_id: product.into(),
        quantity_change: 0,
        stock_level: level,
        capacity,
        reason: "sale".into(),
        timestamp: ts,
    })
}

pub fn units_row(store: &str, product: &str, units: f64, start: i64) -> Event {
    Event::Metric(MetricRow {
        metric: "sales_1m".into(),
        window_start: start,
        window_end: start + MIN,
        dimensions: vec![("store_id".into(), store.into()), ("product_id".into(), product.into())],
        values: vec![("units_sold".into(), units)],
    })
}

/// The value column `name` of a metric row.
pub fn value(event: &Event, name: &str) -> f64 {
    let Event::Metric(m) = event else { panic!("not a metric row: {event:?}") };
    m.values.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no {name} in {m:?}")).1
}
