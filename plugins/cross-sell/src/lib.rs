//! Cross-sell recommendations from basket co-occurrence in `checkout` customer events. For
//! products a and b over all baskets seen: support = n(a,b) / N, confidence = n(a,b) / n(a),
//! lift = confidence / (n(b) / N). Every `refresh` of event time it emits, per product, the
//! `top_n` partners by lift among pairs seen at least `min_pairs` times, as `cross_sell` rows
//! (dimensions product_id and recommended_product_id; rank 1 is the best).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shelfstream_sdk::*;

#[derive(Clone, Default, Serialize, Deserialize)]
struct Counts {
    baskets: u64,
    items: BTreeMap<String, u64>,
    pairs: BTreeMap<(String, String), u64>,
    /// End of the last refresh period emitted.
    emitted: Option<Timestamp>,
}

pub struct CrossSell {
    top_n: usize,
    min_pairs: u64,
    refresh: i64,
    c: Counts,
}

/// (lift, confidence, support, pair count, partner) of one candidate.
type Partner<'a> = (f64, f64, f64, u64, &'a str);

impl CrossSell {
    fn recommendations(&self, start: Timestamp, end: Timestamp, out: &mut Emit) {
        let n = self.c.baskets.max(1) as f64;
        let mut by_product: BTreeMap<&str, Vec<Partner>> = BTreeMap::new();
        for ((a, b), &ab) in &self.c.pairs {
            if ab < self.min_pairs {
                continue;
            }
            let confidence = ab as f64 / self.c.items[a] as f64;
            let lift = confidence / (self.c.items[b] as f64 / n);
            by_product
                .entry(a)
                .or_default()
                .push((lift, confidence, ab as f64 / n, ab, b));
        }
        for (a, mut partners) in by_product {
            partners.sort_by(|x, y| {
                y.0.total_cmp(&x.0)
                    .then(y.1.total_cmp(&x.1))
                    .then(x.4.cmp(y.4))
            });
            for (rank, (lift, confidence, support, ab, b)) in
                partners.into_iter().take(self.top_n).enumerate()
            {
                let values = [
                    ("rank", (rank + 1) as f64),
                    ("support", support),
                    ("confidence", confidence),
                    ("lift", lift),
                    ("pair_count", ab as f64),
                    ("baskets", n),
                ];
                let dims = [("product_id", a), ("recommended_product_id", b)];
                out.metric("cross_sell", (start, end), &dims, &values);
            }
        }
    }
}

impl Plugin for CrossSell {
    const NAME: &'static str = "cross-sell";
    const KIND: PluginKind = PluginKind::Aggregator;
    const DESCRIPTION: &'static str = "Top-N products bought together (support, confidence, lift)";

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(CrossSell {
            top_n: params.number("top_n", 3.0, 1.0, 100.0)? as usize,
            min_pairs: params.number("min_pairs", 5.0, 1.0, 1e9)? as u64,
            refresh: params.duration_ms("refresh", DAY_MS)?,
            c: Counts::default(),
        })
    }

    fn process(&mut self, batch: &Batch, _out: &mut Emit) {
        for e in batch.customers() {
            if e.event_type() != "checkout" {
                continue;
            }
            let basket: BTreeSet<String> = e.product_ids().map(String::from).collect();
            self.c.baskets += 1;
            for a in &basket {
                *self.c.items.entry(a.clone()).or_default() += 1;
                for b in basket.iter().filter(|b| *b != a) {
                    *self.c.pairs.entry((a.clone(), b.clone())).or_default() += 1;
                }
            }
            if self.c.emitted.is_none() {
                self.c.emitted = Some(e.timestamp().div_euclid(self.refresh) * self.refresh);
            }
        }
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Emit) {
        let Some(last) = self.c.emitted else {
            return;
        };
        let end = watermark.div_euclid(self.refresh) * self.refresh;
        if end <= last {
            return;
        }
        self.c.emitted = Some(end);
        self.recommendations(last, end, out)
    }

    fn snapshot(&self) -> Vec<u8> {
        // Pairs as a list: JSON object keys must be strings.
        let pairs: Vec<_> = self.c.pairs.iter().collect();
        state::encode(&(self.c.baskets, &self.c.items, pairs, self.c.emitted))
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        type Saved = (
            u64,
            BTreeMap<String, u64>,
            Vec<((String, String), u64)>,
            Option<Timestamp>,
        );
        let (baskets, items, pairs, emitted): Saved =
            state::decode(Self::NAME, version, &[1], data)?;
        self.c = Counts {
            baskets,
            items,
            pairs: pairs.into_iter().collect(),
            emitted,
        };
        Ok(())
    }
}

export_plugin!(CrossSell);
