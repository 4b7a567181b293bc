//! The README's "Writing a plugin" example, compiled and run natively: `readme/plugin.rs` must
//! be the README's code block verbatim (checked here), so the example keeps compiling and doing
//! what the guide says.

include!("readme/plugin.rs");

#[test]
fn the_readme_example_is_this_file_verbatim() {
    let readme = include_str!("../../../README.md");
    let marker = "`plugins/my-rule/src/lib.rs`, an alert rule on price changes:\n\n```rust\n";
    let start = readme.find(marker).expect("the README's example") + marker.len();
    let block = &readme[start..][..readme[start..].find("```\n").unwrap()];
    assert_eq!(block, include_str!("readme/plugin.rs"));
}

#[test]
fn the_readme_example_alerts_on_a_cut_beyond_max_cut_only() {
    let params = vec![("max_cut".to_string(), "0.3".to_string())];
    let mut rule: BigDiscount = shelfstream_sdk::rt::new_plugin(params).unwrap();
    let mut input = Emit::new();
    for (product, old_price, new_price) in [("SKU-00001", 10.0, 5.0), ("SKU-00002", 10.0, 8.0)] {
        input.price(&PriceChange {
            store_id: "S001",
            product_id: product,
            old_price,
            new_price,
            timestamp: 60_000,
        });
    }
    let out = Batch::new(shelfstream_sdk::rt::process(&mut rule, input.finish()));
    let alerts: Vec<&Alert> = out.alerts().collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, "big_discount");
    assert_eq!(alerts[0].product_id, "SKU-00001");
    assert_eq!(alerts[0].message, "10 -> 5");
    let unknown = vec![("max_cutt".to_string(), "0.3".to_string())];
    assert!(shelfstream_sdk::rt::new_plugin::<BigDiscount>(unknown).is_err());
}
