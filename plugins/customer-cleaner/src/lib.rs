//! Cleaner for `retail-customer-events`: visits, product views, baskets and checkouts with
//! normalised store and product ids; repeats of an event id within the dedup window are dropped.

use serde::Deserialize;
use shelfstream_sdk::*;

use std::borrow::Cow;

// Text fields borrow from the payload (`Cow`: owned only when JSON escapes force a copy).
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct Event<'a> {
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    customer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    store_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    product_ids: Vec<Cow<'a, str>>,
    timestamp: Option<clean::Time>,
}

const TYPES: [&str; 4] = ["visit", "view", "basket", "checkout"];

pub struct CustomerCleaner {
    seen: dedup::RecentIds,
}

impl Plugin for CustomerCleaner {
    const NAME: &'static str = "customer-cleaner";
    const KIND: PluginKind = PluginKind::Cleaner;
    const DESCRIPTION: &'static str = "Validates and normalises customer events";
    const STATE_VERSION: u32 = 3;

    fn new(params: &mut Params) -> Result<Self, String> {
        let seen = dedup::RecentIds::from_params(params)?;
        Ok(CustomerCleaner { seen })
    }

    fn clean(&mut self, record: Record<'_>, out: &mut Emit) -> Result<(), String> {
        let payload = record.payload();
        let e = match scan(payload) {
            Some(e) => e,
            None => parse(payload)?,
        };
        let customer_id = e
            .customer_id
            .filter(|c| !c.trim().is_empty())
            .ok_or("customer_id: missing")?;
        let event_type = clean::lowercase(e.event_type.as_deref().ok_or("event_type: missing")?);
        if !TYPES.contains(&&*event_type) {
            return Err(format!(
                "event_type: {event_type:?} is not one of {TYPES:?}"
            ));
        }
        let product_ids = (e.product_ids.iter().enumerate())
            .map(|(i, p)| clean::sku(p).map_err(|why| format!("product_ids[{i}]: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        if matches!(&*event_type, "basket" | "checkout") && product_ids.is_empty() {
            return Err(format!(
                "product_ids: a {event_type} needs at least one product"
            ));
        }
        let timestamp = clean::Time::get(e.timestamp)?;
        let id = e
            .event_id
            .unwrap_or_else(|| format!("{customer_id}:{event_type}@{timestamp}").into());
        self.seen.reject_repeat(&id, timestamp)?;
        let products: Vec<&str> = product_ids.iter().map(clean::Id::as_str).collect();
        out.customer(&CustomerEvent {
            customer_id: &customer_id,
            store_id: &clean::store_id(e.store_id.as_deref().ok_or("store_id: missing")?)?,
            event_type: &event_type,
            product_ids: &products,
            timestamp,
        });
        Ok(())
    }

    fn snapshot(&self) -> Vec<u8> {
        self.seen.snapshot()
    }

    fn restore(&mut self, version: u32, data: &[u8]) -> Result<(), String> {
        self.seen
            .restore(Self::NAME, version, Self::STATE_VERSION, data)
    }
}

/// The event as serde_json reads it, or why it cannot.
pub fn parse(payload: &[u8]) -> Result<Event<'_>, String> {
    serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))
}

/// The same for plain payloads, read by the SDK's JSON reader (`None`: anything else, which
/// [`parse`] then reads or words; a null list or product id included, which serde_json refuses).
pub fn scan(payload: &[u8]) -> Option<Event<'_>> {
    let mut e = Event::default();
    json::object(payload, |key, r| {
        match key {
            "event_id" => e.event_id = r.text()?,
            "customer_id" => e.customer_id = r.text()?,
            "store_id" => e.store_id = r.text()?,
            "event_type" => e.event_type = r.text()?,
            "product_ids" => e.product_ids = r.list(|r| r.text()?)??,
            "timestamp" => e.timestamp = r.text()?.map(|t| clean::Time::parse(&t)),
            _ => {}
        }
        Some(())
    })?;
    Some(e)
}

export_plugin!(CustomerCleaner);
