//! Rows to columns and back: [`row`] reads one event of a run, the rest builds runs from rows.

use super::{Interner, NONE};
use crate::plugin::bindings::{
    Blobs, Columns, CustomerEvents, InventoryUpdates, MetricRows, PriceChanges, Sales,
};
use crate::plugin::rows::{CustomerEvent, Event, InventoryUpdate, MetricRow, PriceChange, Sale};

fn text(dict: &Blobs, id: u32) -> String {
    dict.text(id as usize).to_string()
}

fn opt_text(dict: &Blobs, id: u32) -> Option<String> {
    (id != NONE).then(|| text(dict, id))
}

/// Event `i` of one run, as a row.
pub fn row(dict: &Blobs, part: &Columns, i: usize) -> Event {
    let t = |id: u32| text(dict, id);
    match part {
        Columns::Sales(c) => Event::Sale(Sale {
            transaction_id: c.transaction_id.text(i).to_string(),
            line: c.line[i],
            store_id: t(c.store_id[i]),
            product_id: t(c.product_id[i]),
            category: opt_text(dict, c.category[i]),
            quantity: c.quantity[i],
            unit_price: c.unit_price[i],
            total_amount: c.total_amount[i],
            customer_id: opt_text(dict, c.customer_id[i]),
            payment_method: t(c.payment_method[i]),
            timestamp: c.timestamp[i],
        }),
        Columns::Inventory(c) => Event::Inventory(InventoryUpdate {
            update_id: c.update_id.text(i).to_string(),
            store_id: t(c.store_id[i]),
            product_id: t(c.product_id[i]),
            quantity_change: c.quantity_change[i],
            stock_level: c.stock_level[i],
            capacity: c.capacity[i],
            reason: t(c.reason[i]),
            timestamp: c.timestamp[i],
        }),
        Columns::Prices(c) => Event::Price(PriceChange {
            store_id: t(c.store_id[i]),
            product_id: t(c.product_id[i]),
            old_price: c.old_price[i],
            new_price: c.new_price[i],
            timestamp: c.timestamp[i],
        }),
        Columns::Customers(c) => {
            let products = c.product_offsets[i] as usize..c.product_offsets[i + 1] as usize;
            Event::Customer(CustomerEvent {
                customer_id: t(c.customer_id[i]),
                store_id: t(c.store_id[i]),
                event_type: t(c.event_type[i]),
                product_ids: c.product_ids[products].iter().map(|&p| t(p)).collect(),
                timestamp: c.timestamp[i],
            })
        }
        Columns::Metrics(c) => {
            let (d, v) = (c.dimension_names.len(), c.value_names.len());
            Event::Metric(MetricRow {
                metric: t(c.metric),
                window_start: c.window_start[i],
                window_end: c.window_end[i],
                dimensions: (c.dimension_names.iter())
                    .zip(&c.dimensions[i * d..(i + 1) * d])
                    .map(|(&n, &id)| (t(n), t(id)))
                    .collect(),
                values: (c.value_names.iter())
                    .zip(&c.values[i * v..(i + 1) * v])
                    .map(|(&n, &x)| (t(n), x))
                    .collect(),
            })
        }
        Columns::Alerts(c) => Event::Alert(c[i].clone()),
        Columns::Forecasts(c) => Event::Forecast(c[i].clone()),
    }
}

pub(super) fn same_run(part: &Columns, row: &Event, dict: &mut Interner) -> bool {
    match (part, row) {
        (Columns::Sales(_), Event::Sale(_))
        | (Columns::Inventory(_), Event::Inventory(_))
        | (Columns::Prices(_), Event::Price(_))
        | (Columns::Customers(_), Event::Customer(_))
        | (Columns::Alerts(_), Event::Alert(_))
        | (Columns::Forecasts(_), Event::Forecast(_)) => true,
        (Columns::Metrics(c), Event::Metric(m)) => {
            c.metric == dict.id(&m.metric)
                && c.dimension_names.len() == m.dimensions.len()
                && c.value_names.len() == m.values.len()
                && (c.dimension_names.iter().zip(&m.dimensions)).all(|(&n, (k, _))| n == dict.id(k))
                && (c.value_names.iter().zip(&m.values)).all(|(&n, (k, _))| n == dict.id(k))
        }
        _ => false,
    }
}

pub(super) fn new_part(row: &Event, dict: &mut Interner) -> Columns {
    match row {
        Event::Sale(_) => Columns::Sales(Sales {
            transaction_id: Blobs::new(),
            line: vec![],
            store_id: vec![],
            product_id: vec![],
            category: vec![],
            quantity: vec![],
            unit_price: vec![],
            total_amount: vec![],
            customer_id: vec![],
            payment_method: vec![],
            timestamp: vec![],
        }),
        Event::Inventory(_) => Columns::Inventory(InventoryUpdates {
            update_id: Blobs::new(),
            store_id: vec![],
            product_id: vec![],
            quantity_change: vec![],
            stock_level: vec![],
            capacity: vec![],
            reason: vec![],
            timestamp: vec![],
        }),
        Event::Price(_) => Columns::Prices(PriceChanges {
            store_id: vec![],
            product_id: vec![],
            old_price: vec![],
            new_price: vec![],
            timestamp: vec![],
        }),
        Event::Customer(_) => Columns::Customers(CustomerEvents {
            customer_id: vec![],
            store_id: vec![],
            event_type: vec![],
            product_offsets: vec![0],
            product_ids: vec![],
            timestamp: vec![],
        }),
        Event::Metric(m) => Columns::Metrics(MetricRows {
            metric: dict.id(&m.metric),
            dimension_names: m.dimensions.iter().map(|(k, _)| dict.id(k)).collect(),
            value_names: m.values.iter().map(|(k, _)| dict.id(k)).collect(),
            window_start: vec![],
            window_end: vec![],
            dimensions: vec![],
            values: vec![],
        }),
        Event::Alert(_) => Columns::Alerts(vec![]),
        Event::Forecast(_) => Columns::Forecasts(vec![]),
    }
}

pub(super) fn push_row(part: &mut Columns, row: &Event, dict: &mut Interner) {
    match (part, row) {
        (Columns::Sales(c), Event::Sale(s)) => {
            c.transaction_id.push(s.transaction_id.as_bytes());
            c.line.push(s.line);
            c.store_id.push(dict.id(&s.store_id));
            c.product_id.push(dict.id(&s.product_id));
            c.category.push(dict.opt(s.category.as_deref()));
            c.quantity.push(s.quantity);
            c.unit_price.push(s.unit_price);
            c.total_amount.push(s.total_amount);
            c.customer_id.push(dict.opt(s.customer_id.as_deref()));
            c.payment_method.push(dict.id(&s.payment_method));
            c.timestamp.push(s.timestamp);
        }
        (Columns::Inventory(c), Event::Inventory(u)) => {
            c.update_id.push(u.update_id.as_bytes());
            c.store_id.push(dict.id(&u.store_id));
            c.product_id.push(dict.id(&u.product_id));
            c.quantity_change.push(u.quantity_change);
            c.stock_level.push(u.stock_level);
            c.capacity.push(u.capacity);
            c.reason.push(dict.id(&u.reason));
            c.timestamp.push(u.timestamp);
        }
        (Columns::Prices(c), Event::Price(p)) => {
            c.store_id.push(dict.id(&p.store_id));
            c.product_id.push(dict.id(&p.product_id));
            c.old_price.push(p.old_price);
            c.new_price.push(p.new_price);
            c.timestamp.push(p.timestamp);
        }
        (Columns::Customers(c), Event::Customer(e)) => {
            c.customer_id.push(dict.id(&e.customer_id));
            c.store_id.push(dict.id(&e.store_id));
            c.event_type.push(dict.id(&e.event_type));
            c.product_ids
                .extend(e.product_ids.iter().map(|p| dict.id(p)));
            c.product_offsets.push(c.product_ids.len() as u32);
            c.timestamp.push(e.timestamp);
        }
        (Columns::Metrics(c), Event::Metric(m)) => {
            c.window_start.push(m.window_start);
            c.window_end.push(m.window_end);
            c.dimensions
                .extend(m.dimensions.iter().map(|(_, v)| dict.id(v)));
            c.values.extend(m.values.iter().map(|(_, v)| *v));
        }
        (Columns::Alerts(c), Event::Alert(a)) => c.push(a.clone()),
        (Columns::Forecasts(c), Event::Forecast(f)) => c.push(f.clone()),
        _ => unreachable!("a run holds one kind"),
    }
}
