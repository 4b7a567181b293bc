//! Hostile input into the four cleaners, compiled natively: 100,000 generated messages per run
//! (25,000 per cleaner), each a simulator message with one field, key or byte range replaced by
//! something hostile: huge numbers, NaN and infinities, lone surrogates, control characters,
//! invalid UTF-8, 1 MB strings, duplicate keys, deep nesting, timestamps far in the past and
//! future, truncation. No cleaner may panic; every record it does not turn into events is
//! rejected with a reason; nothing is amplified (a message of n bytes gives a bounded output).
//! A panic here would be a trap in the component: the whole batch dead-lettered.
//! Each cleaner reads plain payloads with the SDK's scanner and the rest with serde_json:
//! wherever a scanner reads a message, it must read what serde_json reads.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use shelfstream::sim::{Simulator, SimulatorConfig};
use shelfstream::topics::{CUSTOMERS, INVENTORY, PRICES, SALES};
use shelfstream_sdk as sdk;

/// One valid message of each topic, from the simulator.
fn samples() -> Vec<(&'static str, serde_json::Value)> {
    let mut sim = Simulator::new(&SimulatorConfig::default(), 1_793_520_000_000);
    let mut out: Vec<(&'static str, serde_json::Value)> = Vec::new();
    while out.len() < 4 {
        for r in sim.step() {
            let topic = [SALES, INVENTORY, PRICES, CUSTOMERS]
                .into_iter()
                .find(|t| *t == r.topic)
                .unwrap();
            if out.iter().all(|(t, _)| *t != topic) {
                if let Ok(value) = serde_json::from_slice(&r.payload) {
                    out.push((topic, value));
                }
            }
        }
    }
    out
}

/// Raw JSON text (not always valid JSON) put where a value was.
fn hostile_value() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"1e400",
        b"-1e400",
        b"123456789012345678901234567890",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"9223372036854775807",
        b"-0",
        b"0.0000000000000000000000001",
        b"NaN",
        b"Infinity",
        b"\"NaN\"",
        b"\"Infinity\"",
        b"\"-inf\"",
        b"\"1e400\"",
        b"\"\\ud800\"",
        b"\"\\udfff\\ud800\"",
        b"\"\\u0000\\u001f\\u007f\"",
        b"\"a\\u0007b\\nc\"",
        b"\"\xff\xfe\"",
        b"\"\xc3\"",
        b"\"\xed\xa0\x80\"",
        b"\"\"",
        b"\"   \"",
        b"\"0001-01-01T00:00:00Z\"",
        b"\"9999-12-31T23:59:59.999Z\"",
        b"\"+275760-09-13T00:00:00Z\"",
        b"\"2026-13-45T25:61:61Z\"",
        b"-62135596800000",
        b"253402300799999",
        b"null",
        b"true",
        b"[]",
        b"{}",
        b"[1,2,3]",
        b"{\"a\":{\"b\":{}}}",
    ];
    prop_oneof![
        8 => proptest::sample::select(fixed).prop_map(<[u8]>::to_vec),
        1 => (1usize..3000).prop_map(|n| [vec![b'['; n], vec![b']'; n]].concat()),
        1 => Just([b"\"".as_slice(), &vec![b'x'; 1 << 20], b"\""].concat()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}").into_bytes()),
        1 => any::<i64>().prop_map(|i| i.to_string().into_bytes()),
        2 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| [b"\"".as_slice(), &b, b"\""].concat()),
    ]
}

/// Every place a value sits in `v`, as a path of keys and indexes.
fn paths(v: &serde_json::Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                at.push(k.clone());
                out.push(at.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i.to_string());
                out.push(at.clone());
                paths(x, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut serde_json::Value, path: &[String]) -> &'a mut serde_json::Value {
    path.iter().fold(v, |v, k| match v {
        serde_json::Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        v => &mut v[k.as_str()],
    })
}

const MARK: &str = "__hostile__";

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value at path number `which` (modulo the paths) with raw text.
    Value(usize, Vec<u8>),
    /// The same key again at the start of the object holding path `which`, with raw text.
    DuplicateKey(usize, Vec<u8>),
    /// The message inside `n` arrays, or the message cut after `n` bytes.
    Nest(usize),
    Truncate(usize),
    /// Bytes replaced at a position (as a share of the length).
    Bytes(f64, Vec<u8>),
    /// Not the message at all.
    Whole(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        10 => (any::<usize>(), hostile_value()).prop_map(|(i, v)| Mutation::Value(i, v)),
        3 => (any::<usize>(), hostile_value()).prop_map(|(i, v)| Mutation::DuplicateKey(i, v)),
        1 => (1usize..5000).prop_map(Mutation::Nest),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        3 => (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| Mutation::Bytes(at, b)),
        1 => hostile_value().prop_map(Mutation::Whole),
    ]
}

fn apply(base: &serde_json::Value, m: &Mutation) -> Vec<u8> {
    let text = |v: &serde_json::Value| serde_json::to_vec(v).unwrap();
    let mut v = base.clone();
    let mut all = Vec::new();
    paths(&v, &mut Vec::new(), &mut all);
    let splice = |v: &serde_json::Value, raw: &[u8]| {
        let t = text(v);
        let mark = format!("\"{MARK}\"");
        let i = (t.windows(mark.len()).position(|w| w == mark.as_bytes())).expect("marked");
        [&t[..i], raw, &t[i + mark.len()..]].concat()
    };
    match m {
        Mutation::Value(i, raw) => {
            *at_path(&mut v, &all[i % all.len()]) = MARK.into();
            splice(&v, raw)
        }
        Mutation::DuplicateKey(i, raw) => {
            let path = &all[i % all.len()];
            let (key, parent) = path.split_last().unwrap();
            match at_path(&mut v, parent) {
                serde_json::Value::Object(_) => {
                    // The marker goes in as an extra key; the real key stays too.
                    let t = text(&v);
                    let key = serde_json::to_string(key).unwrap();
                    let parent_text = text(at_path(&mut v, parent));
                    let at = t
                        .windows(parent_text.len())
                        .position(|w| w == &parent_text[..]);
                    let at = at.expect("the object is in the text") + 1;
                    [&t[..at], key.as_bytes(), b":", raw, b",", &t[at..]].concat()
                }
                _ => {
                    *at_path(&mut v, path) = MARK.into();
                    splice(&v, raw)
                }
            }
        }
        Mutation::Nest(n) => [vec![b'['; *n], text(&v), vec![b']'; *n]].concat(),
        Mutation::Truncate(n) => {
            let t = text(&v);
            t[..n % (t.len() + 1)].to_vec()
        }
        Mutation::Bytes(at, bytes) => {
            let mut t = text(&v);
            let i = ((t.len() as f64 * at) as usize).min(t.len());
            let end = (i + bytes.len()).min(t.len());
            t.splice(i..end, bytes.iter().copied());
            t
        }
        Mutation::Whole(raw) => raw.clone(),
    }
}

/// Clean one message with a fresh cleaner (no dedup state, so every parsing path is reached).
fn clean(topic: &str, payload: &[u8]) -> sdk::Cleaned {
    fn with<P: sdk::Plugin>(batch: &sdk::RawBatch) -> sdk::Cleaned {
        let mut cleaner: P = sdk::rt::new_plugin(Vec::new()).unwrap();
        sdk::rt::clean(&mut cleaner, batch)
    }
    let batch = sdk::raw_batch(topic, [payload]);
    match topic {
        SALES => with::<sales_cleaner::SalesCleaner>(&batch),
        INVENTORY => with::<inventory_cleaner::InventoryCleaner>(&batch),
        PRICES => with::<price_cleaner::PriceCleaner>(&batch),
        _ => with::<customer_cleaner::CustomerCleaner>(&batch),
    }
}

fn check(topic: &str, payload: &[u8]) -> Result<(), TestCaseError> {
    if let (SALES, Some(scanned)) = (topic, sales_cleaner::scan(payload)) {
        prop_assert_eq!(Ok(scanned), sales_cleaner::parse(payload));
    }
    if let (INVENTORY, Some(scanned)) = (topic, inventory_cleaner::scan(payload)) {
        prop_assert_eq!(Ok(scanned), inventory_cleaner::parse(payload));
    }
    if let (PRICES, Some(scanned)) = (topic, price_cleaner::scan(payload)) {
        prop_assert_eq!(Ok(scanned), price_cleaner::parse(payload));
    }
    if let (CUSTOMERS, Some(scanned)) = (topic, customer_cleaner::scan(payload)) {
        prop_assert_eq!(Ok(scanned), customer_cleaner::parse(payload));
    }
    let out = clean(topic, payload);
    let events = out.origins.len();
    prop_assert!(
        events > 0 || out.rejections.len() == 1,
        "{topic}: neither events nor a rejection for {:?}",
        String::from_utf8_lossy(&payload[..payload.len().min(300)])
    );
    for r in &out.rejections {
        prop_assert!(
            !r.reason.trim().is_empty(),
            "{topic}: a rejection without a reason"
        );
        prop_assert!(
            r.reason.len() <= 4096,
            "{topic}: a {} byte reason",
            r.reason.len()
        );
    }
    let dictionary = out.events.dictionary.bytes.len();
    prop_assert!(
        events <= 1000 && dictionary <= 2 * payload.len() + 1024,
        "{topic}: {events} events and {dictionary} dictionary bytes from {} bytes",
        payload.len()
    );
    Ok(())
}

#[test]
fn the_cleaners_reject_hostile_messages_with_a_reason_and_never_panic() {
    let samples = samples();
    for (topic, base) in &samples {
        // The unmutated sample is accepted: the mutations start from a valid message.
        let valid = clean(topic, &serde_json::to_vec(base).unwrap());
        assert!(!valid.origins.is_empty(), "{topic}: {:?}", valid.rejections);
        let mut runner = TestRunner::new(Config {
            cases: 25_000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&mutation(), |m| check(topic, &apply(base, &m)))
            .unwrap_or_else(|e| panic!("{topic}: {e}"));
    }
}

/// The scanners read every sale, inventory update, price change and customer event the
/// simulator writes, as serde_json does.
#[test]
fn the_scanners_read_simulated_messages_as_serde_json_does() {
    let config = SimulatorConfig {
        malformed_rate: 0.0,
        ..SimulatorConfig::default()
    };
    let mut sim = Simulator::new(&config, 1_793_520_000_000);
    let (mut sales, mut updates, mut visits) = (0, 0, 0);
    while sales < 5_000 || updates < 5_000 || visits < 5_000 {
        for r in sim.step() {
            match r.topic.as_str() {
                SALES => same(
                    &r.payload,
                    sales_cleaner::scan,
                    sales_cleaner::parse,
                    &mut sales,
                ),
                INVENTORY => same(
                    &r.payload,
                    inventory_cleaner::scan,
                    inventory_cleaner::parse,
                    &mut updates,
                ),
                PRICES => same(
                    &r.payload,
                    price_cleaner::scan,
                    price_cleaner::parse,
                    &mut 0,
                ),
                CUSTOMERS => same(
                    &r.payload,
                    customer_cleaner::scan,
                    customer_cleaner::parse,
                    &mut visits,
                ),
                _ => {}
            }
        }
    }
}

/// `scan` reads `payload` (counted in `read`), and as `parse` does.
fn same<'a, T: PartialEq + std::fmt::Debug>(
    payload: &'a [u8],
    scan: fn(&'a [u8]) -> Option<T>,
    parse: fn(&'a [u8]) -> Result<T, String>,
    read: &mut usize,
) {
    let text = String::from_utf8_lossy(payload);
    let scanned = scan(payload);
    assert!(scanned.is_some(), "not scanned: {text}");
    assert_eq!(scanned.ok_or(()), parse(payload).map_err(|_| ()), "{text}");
    *read += 1;
}

/// Inputs the generator found to break a cleaner, kept as fixed cases.
#[test]
fn known_hostile_messages() {
    let cases: [(&str, &[u8]); 6] = [
        (SALES, b"{\"transaction_id\":\"T1\",\"store_id\":\"S001\",\"timestamp\":\"+275760-09-13T00:00:00Z\",\"items\":[{\"product_id\":\"SKU-00001\",\"quantity\":1,\"unit_price\":1.0}]}"),
        (SALES, b"{\"transaction_id\":\"T1\",\"store_id\":\"S001\",\"timestamp\":9223372036854775807,\"items\":[{\"product_id\":\"SKU-00001\",\"quantity\":2147483647,\"unit_price\":1e308,\"unit\":\"case-10000\"}]}"),
        (INVENTORY, b"{\"update_id\":\"\\ud800\",\"store_id\":\"S001\"}"),
        (PRICES, b"{\"store_id\":\"S001\",\"product_id\":\"SKU-00001\",\"old_price\":1e400,\"new_price\":-0}"),
        (CUSTOMERS, b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
        (SALES, b"\xff\xfe\x00"),
    ];
    for (topic, payload) in cases {
        check(topic, payload).unwrap();
    }
}
