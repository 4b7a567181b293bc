//! The shelfstream plugin SDK.
//!
//! A plugin is a type implementing [`Plugin`] plus one line, [`export_plugin!`]. The SDK turns it
//! into the component exports that the WIT contract in `wit/` asks for, keeps the one instance the
//! host talks to, and gives every kind of plugin what it needs:
//!
//! - [`Params`]: typed, strict access to the parameters from the pipeline config;
//! - [`window`]: tumbling and hopping window assignment and a keyed window store that emits
//!   windows when the watermark passes them;
//! - [`state`]: versioned snapshot encoding so that state survives a hot swap and a restart;
//! - [`batch`] and [`emit`]: row views over the columnar batches the host sends, and builders
//!   for the ones a plugin returns (plugin code never sees offsets or dictionaries);
//! - [`log`] and [`current_watermark`]: the two things the host offers a plugin.
//!
//! Everything here also compiles natively, so plugin logic can be unit-tested with `cargo test`
//! and benchmarked against its WebAssembly build.
//!
//! ```ignore
//! use shelfstream_sdk::*;
//!
//! struct BigSales;
//! impl Plugin for BigSales {
//!     const NAME: &'static str = "big-sales";
//!     const KIND: PluginKind = PluginKind::Aggregator;
//!     fn new(_params: &mut Params) -> Result<Self, String> { Ok(BigSales) }
//!     fn process(&mut self, batch: &Batch, out: &mut Emit) {
//!         for sale in batch.sales().filter(|s| s.quantity() > 100) {
//!             let dims = [("store_id", sale.store_id())];
//!             out.metric("big_sales", (sale.timestamp(), sale.timestamp()), &dims, &[("units", sale.quantity() as f64)]);
//!         }
//!     }
//! }
//! export_plugin!(BigSales);
//! ```

#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: alloc::SizeClasses<talc::wasm::WasmDynamicTalc> =
    alloc::SizeClasses::new(talc::wasm::new_wasm_dynamic_allocator());

pub mod alloc;
pub mod batch;
pub mod dedup;
pub mod emit;
pub mod hash;
pub mod json;
pub mod mem;
pub mod params;
pub mod state;
pub mod stats;
pub mod time;
pub mod window;

#[doc(hidden)]
pub mod rt;

/// The generated bindings of the WIT world `shelfstream-plugin`.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "shelfstream-plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "shelfstream_sdk::bindings",
    });
}

pub use batch::{
    raw_batch, Batch, CustomerView, InventoryView, MetricView, PriceView, Record, SaleView, View,
    NONE,
};
pub use bindings::shelfstream::plugin::types::{
    Alert, Cleaned, EventBatch, Forecast, PluginInfo, PluginKind, RawBatch, Severity, State,
    Timestamp,
};
pub use emit::{CustomerEvent, Emit, InventoryUpdate, PriceChange, Sale};
pub use params::Params;
pub use window::{Hopping, Tumbling, Window, WindowStore};

/// One minute, one hour and one day in event-time milliseconds.
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Business logic of one plugin. Implement the methods your kind needs; the defaults do nothing
/// (a cleaner-only method rejects, so a misconfigured pipeline shows up in the dead letters).
pub trait Plugin: Sized + 'static {
    const NAME: &'static str;
    const KIND: PluginKind;
    const DESCRIPTION: &'static str = "";
    /// Bump when the layout of [`Plugin::snapshot`] changes.
    const STATE_VERSION: u32 = 1;

    /// Build the instance from its parameters. Read every parameter you accept from `params`;
    /// the SDK rejects any the plugin did not read, naming it.
    fn new(params: &mut Params) -> Result<Self, String>;

    /// Cleaners: parse one raw record and emit its events into `out`, or say why it is
    /// rejected (whatever it emitted before failing is dropped).
    fn clean(&mut self, _record: Record<'_>, _out: &mut Emit) -> Result<(), String> {
        Err(format!("{} is not a cleaner", Self::NAME))
    }

    /// Aggregators, alert rules, forecasters: a batch in, any events out.
    fn process(&mut self, _batch: &Batch, _out: &mut Emit) {}

    /// The watermark advanced: emit whatever it completes (closed windows, due forecasts).
    fn on_watermark(&mut self, _watermark: Timestamp, _out: &mut Emit) {}

    /// State to carry across a hot swap or a restart; see [`state::encode`].
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Load state written by [`Plugin::snapshot`] of `version` (possibly an older plugin).
    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        if data.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} keeps no state but was given {} bytes of version {version}",
                Self::NAME,
                data.len()
            ))
        }
    }
}

/// An alert for the shelf `(store, product)` about `window` (start, end), stamped with the
/// window's end; `evidence` is the numbers that triggered it. Emit it with [`Emit::alert`].
pub fn alert(
    rule: &str,
    severity: Severity,
    (store, product): (&str, &str),
    (window_start, window_end): (Timestamp, Timestamp),
    message: String,
    evidence: &[(&str, f64)],
) -> Alert {
    Alert {
        rule: rule.into(),
        severity,
        store_id: store.into(),
        product_id: product.into(),
        message,
        evidence: evidence.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        window_start,
        window_end,
        timestamp: window_end,
    }
}

/// Logging into the host's tracing output, tagged with the plugin's name.
/// Natively (unit tests, benchmarks) messages go nowhere.
pub mod log {
    #[cfg(target_arch = "wasm32")]
    fn emit(level: crate::bindings::shelfstream::plugin::host::LogLevel, message: &str) {
        crate::bindings::shelfstream::plugin::host::log(level, message);
    }

    macro_rules! level_fn {
        ($name:ident, $level:ident) => {
            pub fn $name(message: &str) {
                #[cfg(target_arch = "wasm32")]
                emit(
                    crate::bindings::shelfstream::plugin::host::LogLevel::$level,
                    message,
                );
                #[cfg(not(target_arch = "wasm32"))]
                let _ = message;
            }
        };
    }
    level_fn!(trace, Trace);
    level_fn!(debug, Debug);
    level_fn!(info, Info);
    level_fn!(warn, Warn);
    level_fn!(error, Error);
}

/// The watermark of this plugin's input as the host sees it. Natively it is whatever the SDK
/// last passed to [`Plugin::on_watermark`] through [`rt`].
pub fn current_watermark() -> Timestamp {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::shelfstream::plugin::host::watermark()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        rt::native_watermark()
    }
}

/// Export a [`Plugin`] as the component's implementation of the WIT world.
///
/// Only WebAssembly builds export anything, so several plugins can be linked into one native
/// binary (tests, the native baseline of the benchmark).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::exports::shelfstream::plugin::plugin::Guest;
            use $crate::{Cleaned, EventBatch, PluginInfo, RawBatch, State, Timestamp};

            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<$crate::rt::Slot<$plugin>> =
                    ::std::cell::RefCell::new($crate::rt::Slot::empty());
            }

            struct Component;

            impl Guest for Component {
                fn info() -> PluginInfo {
                    $crate::rt::info::<$plugin>()
                }
                fn configure(params: ::std::vec::Vec<(String, String)>) -> Result<(), String> {
                    INSTANCE.with_borrow_mut(|slot| slot.configure(params))
                }
                fn clean(batch: RawBatch) -> Cleaned {
                    INSTANCE.with_borrow_mut(|slot| $crate::rt::clean(slot.get(), &batch))
                }
                fn process(batch: EventBatch) -> EventBatch {
                    INSTANCE.with_borrow_mut(|slot| $crate::rt::process(slot.get(), batch))
                }
                fn on_watermark(watermark: Timestamp) -> EventBatch {
                    INSTANCE.with_borrow_mut(|slot| $crate::rt::on_watermark(slot.get(), watermark))
                }
                fn snapshot() -> State {
                    INSTANCE.with_borrow_mut(|slot| slot.snapshot())
                }
                fn restore(state: State) -> Result<(), String> {
                    INSTANCE.with_borrow_mut(|slot| slot.restore(state))
                }
            }

    $crate::bindings::export_bindings!(Component with_types_in $crate::bindings);
        };
    };
}

/// Normalisation shared by cleaners: identifiers, money and time.
pub mod clean {
    use crate::time::parse_rfc3339_ms;
    use crate::Timestamp;

    /// `text` without leading and trailing whitespace, as [`str::trim`] gives it, with ASCII's
    /// whitespace (the common case) trimmed without decoding characters.
    pub fn trim(text: &str) -> &str {
        let t = text.trim_ascii();
        // Unicode whitespace beyond ASCII's starts or ends in a byte of 0x80 and up; `str::trim`
        // also trims the vertical tab, which `trim_ascii` keeps.
        match (t.as_bytes().first(), t.as_bytes().last()) {
            (Some(&a), Some(&z)) if a >= 0x80 || z >= 0x80 || a == 0x0b || z == 0x0b => t.trim(),
            _ => t,
        }
    }

    /// `text` in lower case, as [`str::to_lowercase`] gives it, borrowed when it already is
    /// (plain lower-case ASCII, the common case).
    pub fn lowercase(text: &str) -> std::borrow::Cow<'_, str> {
        match text.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
            true => text.to_lowercase().into(),
            false => text.into(),
        }
    }

    /// `S001`: `s1`, `S-1`, `store_1` and `S001` all name store 1.
    pub fn store_id(raw: &str) -> Result<Id, String> {
        canonical_id(raw, &["STORE", "S"], "S", 3).map_err(|why| format!("store_id: {why}"))
    }

    /// `SKU-00042`: `sku42`, `SKU_42`, `42` and `SKU-00042` all name product 42.
    pub fn sku(raw: &str) -> Result<Id, String> {
        canonical_id(raw, &["SKU", "P"], "SKU-", 5).map_err(|why| format!("product_id: {why}"))
    }

    /// A canonical identifier (a prefix and at most nine digits), kept inline: no allocation.
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Id {
        bytes: [u8; Id::MAX],
        len: u8,
    }

    impl Id {
        const MAX: usize = 16;

        pub fn as_str(&self) -> &str {
            // SAFETY: `canonical_id` writes only an ASCII prefix and ASCII digits.
            unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len as usize]) }
        }
    }

    impl std::ops::Deref for Id {
        type Target = str;
        fn deref(&self) -> &str {
            self.as_str()
        }
    }

    impl std::fmt::Debug for Id {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.as_str().fmt(f)
        }
    }

    impl std::fmt::Display for Id {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.as_str())
        }
    }

    impl PartialEq<&str> for Id {
        fn eq(&self, other: &&str) -> bool {
            self.as_str() == *other
        }
    }

    fn canonical_id(
        raw: &str,
        prefixes: &[&str],
        prefix: &str,
        width: usize,
    ) -> Result<Id, String> {
        let invalid = || format!("{raw:?} is not a valid identifier");
        let mut rest = trim(raw).as_bytes();
        for p in prefixes {
            if rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p.as_bytes()) {
                rest = &rest[p.len()..];
                break;
            }
        }
        while let [b'-' | b'_' | b' ', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() || rest.len() > 9 || !rest.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        // Leading zeros dropped, then padded to `width`: the digits as written, less zeros.
        let first = rest
            .iter()
            .position(|&d| d != b'0')
            .unwrap_or(rest.len() - 1);
        let digits = &rest[first..];
        let zeros = width.saturating_sub(digits.len());
        let len = prefix.len() + zeros + digits.len();
        debug_assert!(len <= Id::MAX, "prefixes are short and digits at most nine");
        let mut id = Id {
            bytes: [b'0'; Id::MAX],
            len: len as u8,
        };
        id.bytes[..prefix.len()].copy_from_slice(prefix.as_bytes());
        id.bytes[prefix.len() + zeros..len].copy_from_slice(digits);
        Ok(id)
    }

    /// Round money to cents, half away from zero.
    pub fn cents(amount: f64) -> f64 {
        // The epsilon absorbs binary representation error (1.005 is stored as 1.00499...).
        ((amount * 100.0) + amount.signum() * 1e-7).round() / 100.0
    }

    /// A timestamp field read straight from JSON (`#[derive(Deserialize)]` on a cleaner's input):
    /// RFC 3339 text or epoch milliseconds, to UTC milliseconds, or why it is not a time.
    /// [`Time::get`] gives the same results and messages as [`timestamp`] without building a
    /// `serde_json::Value` first.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Time(Result<Timestamp, String>);

    impl Time {
        /// A time's text read (what deserializing a JSON string gives).
        pub fn parse(text: &str) -> Time {
            Time(parse_rfc3339_ms(text).map_err(|e| format!("timestamp: {e}")))
        }

        /// The time, or `timestamp: <why>` (also when the field is missing: pass `None`).
        pub fn get(field: Option<Time>) -> Result<Timestamp, String> {
            match field {
                None => Err("timestamp: missing".into()),
                Some(Time(result)) => result,
            }
        }
    }

    impl<'de> serde::Deserialize<'de> for Time {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Time;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("RFC 3339 text or epoch milliseconds")
                }
                fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Time, E> {
                    Ok(Time::parse(s))
                }
                fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Time, E> {
                    Ok(Time(Ok(n)))
                }
                fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Time, E> {
                    Ok(Time(i64::try_from(n).map_err(|_| {
                        format!("timestamp: {n} is not whole milliseconds")
                    })))
                }
                fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Time, E> {
                    Ok(Time(Err(format!(
                        "timestamp: {n} is not whole milliseconds"
                    ))))
                }
                fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Time, E> {
                    Ok(Time(Err(format!("timestamp: {b} is not a time"))))
                }
                fn visit_unit<E: serde::de::Error>(self) -> Result<Time, E> {
                    Ok(Time(Err("timestamp: missing".into())))
                }
                fn visit_none<E: serde::de::Error>(self) -> Result<Time, E> {
                    self.visit_unit()
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Time, A::Error> {
                    while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                    Ok(Time(Err("timestamp: a list is not a time".into())))
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Time, A::Error> {
                    while a
                        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                        .is_some()
                    {}
                    Ok(Time(Err("timestamp: an object is not a time".into())))
                }
            }
            d.deserialize_any(Visit)
        }
    }

    /// A timestamp field: RFC 3339 text or epoch milliseconds, to UTC milliseconds.
    pub fn timestamp(value: Option<&serde_json::Value>) -> Result<Timestamp, String> {
        match value {
            None | Some(serde_json::Value::Null) => Err("timestamp: missing".into()),
            Some(serde_json::Value::String(s)) => {
                parse_rfc3339_ms(s).map_err(|e| format!("timestamp: {e}"))
            }
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("timestamp: {n} is not whole milliseconds")),
            Some(other) => Err(format!("timestamp: {other} is not a time")),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lowercase_is_str_to_lowercase() {
            for text in [
                "card",
                "CARD",
                "Cash",
                "",
                "\u{c9}T\u{c9}",
                "caf\u{e9}",
                "x-1 y",
            ] {
                assert_eq!(lowercase(text), text.to_lowercase(), "{text:?}");
            }
            assert!(matches!(lowercase("card"), std::borrow::Cow::Borrowed(_)));
        }

        #[test]
        fn trim_is_str_trim() {
            let ends = [
                "", " ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{85}", "\u{a0}",
            ];
            let ends = ends
                .iter()
                .chain(&["\u{2003}", "\u{3000}", "x", "\u{e9}", " \u{a0} "]);
            let ends: Vec<&str> = ends.copied().collect();
            for a in &ends {
                for z in &ends {
                    for middle in ["", "S1", " a b ", "\u{a0}"] {
                        let text = format!("{a}{middle}{z}");
                        assert_eq!(trim(&text), text.trim(), "{text:?}");
                    }
                }
            }
        }

        #[test]
        fn identifiers() {
            assert_eq!(store_id("s1").unwrap(), "S001");
            assert_eq!(store_id("STORE_12").unwrap(), "S012");
            assert_eq!(sku("sku42").unwrap(), "SKU-00042");
            assert_eq!(sku("SKU-00042").unwrap(), "SKU-00042");
            assert_eq!(sku("42").unwrap(), "SKU-00042");
            assert!(sku("SKU-").is_err());
            assert!(store_id("north").is_err());
            assert_eq!(store_id(" store 7 ").unwrap(), "S007");
            assert_eq!(
                store_id("s1234").unwrap(),
                "S1234",
                "wider than the padding"
            );
            assert_eq!(sku("p0").unwrap(), "SKU-00000");
            assert_eq!(sku("SKU-000000042").unwrap(), "SKU-00042");
            assert_eq!(sku("sku 123456789").unwrap(), "SKU-123456789");
            assert_eq!(store_id("S-0").unwrap(), "S000");
            assert!(sku("SKU-1234567890").is_err(), "more than 9 digits");
            assert!(sku("SKU-1a").is_err());
            assert!(store_id("ßtore1").is_err());
        }

        #[test]
        fn time_fields_read_from_json_like_timestamp_reads_values() {
            #[derive(serde::Deserialize)]
            struct Row {
                timestamp: Option<Time>,
            }
            let cases = [
                r#"{"timestamp":"2026-11-22T10:00:00+01:00"}"#,
                r#"{"timestamp":1000}"#,
                r#"{"timestamp":1.5}"#,
                r#"{"timestamp":"soon"}"#,
                r#"{"timestamp":null}"#,
                r#"{"timestamp":true}"#,
                r#"{"timestamp":18446744073709551615}"#,
                r#"{}"#,
            ];
            for json in cases {
                let row: Row = serde_json::from_str(json).unwrap();
                let value: serde_json::Value = serde_json::from_str(json).unwrap();
                assert_eq!(
                    Time::get(row.timestamp),
                    timestamp(value.get("timestamp")),
                    "{json}"
                );
            }
            let row: Row = serde_json::from_str(r#"{"timestamp":[1]}"#).unwrap();
            assert!(Time::get(row.timestamp).unwrap_err().contains("not a time"));
        }

        #[test]
        fn money() {
            assert_eq!(cents(1.005), 1.01);
            assert_eq!(cents(-1.005), -1.01);
            assert_eq!(cents(2.0 * 3.49), 6.98);
        }
    }
}
