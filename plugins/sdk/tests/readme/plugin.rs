use shelfstream_sdk::*;

pub struct BigDiscount {
    max_cut: f64,
}

impl Plugin for BigDiscount {
    const NAME: &'static str = "my-rule";
    const KIND: PluginKind = PluginKind::AlertRule;

    fn new(params: &mut Params) -> Result<Self, String> {
        Ok(BigDiscount {
            max_cut: params.number("max_cut", 0.3, 0.0, 1.0)?,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Emit) {
        for p in batch.prices() {
            if p.new_price() < p.old_price() * (1.0 - self.max_cut) {
                let message = format!("{} -> {}", p.old_price(), p.new_price());
                let evidence = [("old_price", p.old_price()), ("new_price", p.new_price())];
                let (shelf, at) = ((p.store_id(), p.product_id()), p.timestamp());
                out.alert(alert(
                    "big_discount",
                    Severity::Warning,
                    shelf,
                    (at, at),
                    message,
                    &evidence,
                ));
            }
        }
    }
}

export_plugin!(BigDiscount);
