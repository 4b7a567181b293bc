//! A plugin that returns a malformed batch (offsets out of order or past the end, bytes that are
//! not UTF-8, ids outside the dictionary, columns of different lengths, cleaner origins and
//! rejections that name no record) fails that batch like a trap: dead letters with the reason, a
//! fresh instance from the last good state, quarantine after repeats. The host's validation is
//! also fed many thousands of random batches: it never panics, and what it accepts can be read.

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use shelfstream::harness::PluginHarness;
use shelfstream::pipeline::{DeadLetterKind, Status};
use shelfstream::plugin::bindings::{Blobs, Columns, CustomerEvents, MetricRows, Sales};
use shelfstream::plugin::{validate, Event, EventBatch, Limits};

const TRIGGER: &str = "SKU-66666";

const PROCESS_MODES: [(&str, &str); 8] = [
    ("offsets-decrease", "dictionary: offsets decrease"),
    ("offsets-past-end", "dictionary: offsets end at"),
    ("first-offset", "dictionary: the first offset is 1"),
    ("not-utf8", "dictionary: value 0 is not UTF-8"),
    (
        "id-outside",
        "sales store-id: id 3 at 0 is outside the dictionary of 3 strings",
    ),
    ("short-column", "sales quantity: 0 values, expected 1"),
    ("metric-width", "metrics dimensions: 1 values, expected 2"),
    (
        "product-offsets",
        "customers product-ids: 1 values, expected 5",
    ),
];

const CLEAN_MODES: [(&str, &str); 4] = [
    ("origins-count", "2 origins for 1 events"),
    (
        "origin-outside",
        "origin 2 of event 0 is not one of the 2 records",
    ),
    ("origins-decrease", "origins decrease at event 1"),
    ("rejection-outside", "rejected record 2 of 2"),
];

fn harness(mode: &str, max_failures: u32) -> PluginHarness {
    PluginHarness::builder(fixture("malformed"))
        .param("mode", mode)
        .limits(Limits {
            memory_bytes: 16 << 20,
            deadline: Duration::from_secs(2),
        })
        .allowed_lateness_ms(i64::MAX / 4)
        .checkpoint_every(2)
        .max_failures(max_failures)
        .start()
        .unwrap()
}

fn normal(n: usize, ts: i64) -> Vec<Event> {
    (0..n)
        .map(|i| sale(&format!("T{ts}-{i}"), "S001", "SKU-00001", 1, 1.0, ts))
        .collect()
}

fn poisoned(ts: i64) -> Vec<Event> {
    let mut batch = normal(2, ts);
    batch.push(sale("BAD", "S001", TRIGGER, 1, 1.0, ts));
    batch
}

fn seen(h: &mut PluginHarness) -> u64 {
    let saved = h.snapshot().unwrap();
    u64::from_le_bytes(saved.state.try_into().expect("8-byte counter"))
}

#[test]
fn every_malformed_batch_fails_only_its_call() {
    if !components_built() {
        return;
    }
    for (mode, why) in PROCESS_MODES {
        let mut h = harness(mode, 3);
        assert_eq!(
            h.process(normal(3, 1)).len(),
            3,
            "{mode}: passes good batches"
        );
        assert_eq!(h.process(normal(2, 2)).len(), 2);
        assert_eq!(h.process(normal(1, 3)).len(), 1);
        assert!(
            h.process(poisoned(4)).is_empty(),
            "{mode}: nothing of the bad batch"
        );
        let dead = h.take_dead_letters();
        assert_eq!(dead.len(), 3, "{mode}: the whole batch is dead-lettered");
        for d in &dead {
            assert_eq!(d.kind, DeadLetterKind::PluginFailure, "{mode}");
            assert!(
                d.reason.contains("returned a malformed batch") && d.reason.contains(why),
                "{mode}: {:?} should say {why:?}",
                d.reason
            );
        }
        assert_eq!(h.process(normal(4, 5)).len(), 4, "{mode}: goes on");
        assert_eq!(
            seen(&mut h),
            3 + 2 + 1 + 4,
            "{mode}: state of the good batches, once"
        );
        assert_eq!(h.stage().status(), Status::Running);
    }
}

#[test]
fn a_cleaner_whose_origins_or_rejections_name_no_record_fails_its_batch() {
    if !components_built() {
        return;
    }
    for (mode, why) in CLEAN_MODES {
        let mut h = harness(mode, 3);
        assert_eq!(
            h.clean_payloads("t", &["a", "b"]).len(),
            1,
            "{mode}: well-formed"
        );
        assert!(
            h.clean_payloads("t", &["a", "MALFORMED"]).is_empty(),
            "{mode}"
        );
        let dead = h.take_dead_letters();
        assert_eq!(dead.len(), 2, "{mode}: both records dead-lettered");
        for d in &dead {
            assert_eq!(d.kind, DeadLetterKind::PluginFailure, "{mode}");
            assert!(
                d.reason.contains(why),
                "{mode}: {:?} should say {why:?}",
                d.reason
            );
        }
        assert_eq!(h.clean_payloads("t", &["c"]).len(), 1, "{mode}: goes on");
    }
}

#[test]
fn repeated_malformed_batches_quarantine_the_plugin() {
    if !components_built() {
        return;
    }
    let mut h = harness("id-outside", 2);
    h.process(poisoned(1));
    h.process(poisoned(2));
    assert_eq!(h.stage().status(), Status::Quarantined);
    h.take_dead_letters();
    assert!(h.process(normal(2, 3)).is_empty());
    assert!(h
        .take_dead_letters()
        .iter()
        .all(|d| d.kind == DeadLetterKind::Quarantined));
}

// ---- random batches into the validation --------------------------------------------------

fn small_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..8, Just(u32::MAX), any::<u32>()]
}

fn blobs() -> impl Strategy<Value = Blobs> {
    let offsets = prop_oneof![
        // Mostly well-formed: increasing offsets over the bytes.
        proptest::collection::vec(0u32..6, 0..6).prop_map(|lens| {
            let mut at = 0;
            std::iter::once(0)
                .chain(lens.into_iter().map(|l| {
                    at += l;
                    at
                }))
                .collect::<Vec<u32>>()
        }),
        proptest::collection::vec(0u32..40, 0..6),
    ];
    (offsets, proptest::collection::vec(any::<u8>(), 0..30))
        .prop_map(|(offsets, bytes)| Blobs { offsets, bytes })
}

fn column<T: Arbitrary>(n: usize) -> impl Strategy<Value = Vec<T>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<T>(), n..=n),
        1 => proptest::collection::vec(any::<T>(), 0..5),
    ]
}

/// Finite money and values (a NaN is never equal to itself, so rows could not be compared).
fn floats(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        4 => proptest::collection::vec(-1e9f64..1e9, n..=n),
        1 => proptest::collection::vec(-1e9f64..1e9, 0..5),
    ]
}

fn ids(n: usize) -> impl Strategy<Value = Vec<u32>> {
    prop_oneof![
        4 => proptest::collection::vec(small_u32(), n..=n),
        1 => proptest::collection::vec(small_u32(), 0..5),
    ]
}

fn part() -> impl Strategy<Value = Columns> {
    (0usize..4).prop_flat_map(|n| {
        prop_oneof![
            (
                (blobs(), column::<u32>(n), ids(n), ids(n), ids(n)),
                (column::<i32>(n), floats(n), floats(n)),
                (
                    ids(n),
                    ids(n),
                    proptest::collection::vec(any::<i64>(), n..=n)
                ),
            )
                .prop_map(
                    |((t, line, store, product, category), (q, up, ta), (c, pm, ts))| {
                        Columns::Sales(Sales {
                            transaction_id: t,
                            line,
                            store_id: store,
                            product_id: product,
                            category,
                            quantity: q,
                            unit_price: up,
                            total_amount: ta,
                            customer_id: c,
                            payment_method: pm,
                            timestamp: ts,
                        })
                    }
                ),
            (
                small_u32(),
                ids(2),
                ids(1),
                column::<i64>(n),
                ids(n * 2),
                floats(n),
                proptest::collection::vec(any::<i64>(), n..=n),
            )
                .prop_map(|(metric, d, v, start, dims, values, end)| {
                    Columns::Metrics(MetricRows {
                        metric,
                        dimension_names: d,
                        value_names: v,
                        window_start: start,
                        window_end: end,
                        dimensions: dims,
                        values,
                    })
                }),
            (
                (ids(n), ids(n), ids(n)),
                (proptest::collection::vec(0u32..4, 0..6), ids(3)),
                proptest::collection::vec(any::<i64>(), n..=n),
            )
                .prop_map(|((c, s, e), (po, p), ts)| {
                    Columns::Customers(CustomerEvents {
                        customer_id: c,
                        store_id: s,
                        event_type: e,
                        product_offsets: po,
                        product_ids: p,
                        timestamp: ts,
                    })
                }),
        ]
    })
}

fn batch() -> impl Strategy<Value = EventBatch> {
    (blobs(), proptest::collection::vec(part(), 0..3))
        .prop_map(|(dictionary, parts)| EventBatch { dictionary, parts })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Validation never panics, and a batch it accepts is read, selected and appended without
    /// panicking, into batches that validate again with the same rows.
    #[test]
    fn validation_guards_every_read(b in batch()) {
        if validate::batch(&b).is_ok() {
            let rows = b.rows();
            prop_assert_eq!(rows.len(), b.len());
            let keep = vec![true; b.len()];
            let same = b.select(&keep);
            prop_assert!(validate::batch(&same).is_ok());
            prop_assert_eq!(same.rows(), rows.clone());
            let mut twice = b.clone();
            twice.append(b.clone());
            prop_assert!(validate::batch(&twice).is_ok());
            prop_assert_eq!(twice.rows().len(), 2 * rows.len());
            let rebuilt = EventBatch::from_rows(&rows);
            prop_assert!(validate::batch(&rebuilt).is_ok());
            prop_assert_eq!(rebuilt.rows(), rows);
        }
    }
}
