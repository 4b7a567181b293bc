//! Unit tests of the Kafka source.

use super::gaps::PATIENCE;
use super::*;

#[test]
fn properties_add_to_the_consumer_settings_but_not_to_the_fixed_ones() {
    let mut c = KafkaSourceConfig::default();
    c.properties
        .insert("fetch.wait.max.ms".into(), "100".into());
    c.properties
        .insert("session.timeout.ms".into(), "30000".into());
    let client = consumer_config(&c).unwrap();
    assert_eq!(client.get("fetch.wait.max.ms"), Some("100"));
    assert_eq!(client.get("session.timeout.ms"), Some("30000"));
    assert_eq!(client.get("enable.auto.commit"), Some("false"));
    c.properties
        .insert("enable.auto.commit".into(), "true".into());
    let err = consumer_config(&c).unwrap_err().to_string();
    assert!(err.contains("enable.auto.commit"), "{err}");
    let toml = "properties = { \"security.protocol\" = \"ssl\" }";
    let parsed: KafkaSourceConfig = toml::from_str(toml).unwrap();
    assert_eq!(parsed.properties["security.protocol"], "ssl");
}

#[test]
fn a_skipped_offset_is_read_again_and_nothing_is_taken_twice() {
    // No broker: seeks fail (and are logged); the bookkeeping is what is tested.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:1")
        .create()
        .unwrap();
    let mut guard = GapGuard::new();
    guard.start("t", 0, Some(5));
    assert!(guard.accept(&consumer, "t", 0, 5));
    assert!(
        !guard.accept(&consumer, "t", 0, 7),
        "6 is missing: read again"
    );
    assert!(
        !guard.accept(&consumer, "t", 0, 4),
        "before the expected offset: taken already"
    );
    assert!(
        guard.accept(&consumer, "t", 0, 6),
        "the missing offset arrives"
    );
    assert!(guard.accept(&consumer, "t", 0, 7));
    // A partition read from the beginning takes its first offset as it comes.
    assert!(guard.accept(&consumer, "t", 1, 40));
    // A gap that never fills is accepted once patience runs out.
    guard.patience = Duration::ZERO;
    assert!(guard.accept(&consumer, "t", 1, 45));
    assert!(guard.accept(&consumer, "t", 1, 46));
    // A revoked partition is forgotten; assigned again at an offset, it expects that one.
    guard.patience = PATIENCE;
    guard.forget(0);
    assert!(
        guard.accept(&consumer, "t", 0, 3),
        "after forget: any offset"
    );
    guard.start("t", 0, Some(10));
    assert!(
        !guard.accept(&consumer, "t", 0, 12),
        "10 and 11 are missing"
    );
    guard.start("t", 0, None);
    assert!(
        guard.accept(&consumer, "t", 0, 12),
        "from the beginning: any offset"
    );
}
