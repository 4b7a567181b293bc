//! Kafka credentials that do not work: librdkafka reports a rejected login or a missing
//! permission through its error callback and then keeps retrying, which looks like a hang. The
//! source, the sinks and the tools remember such an error ([`AuthWatch`], or the consumer group's
//! context) and stop with it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Whether retrying cannot help: the broker rejected the credentials or the permissions, or
/// the security settings do not match the broker's.
pub fn is_fatal(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Authentication
                | SaslAuthenticationFailed
                | TopicAuthorizationFailed
                | GroupAuthorizationFailed
                | ClusterAuthorizationFailed
                | UnsupportedSASLMechanism
                | IllegalSASLState
                | SSL
        )
    )
}

/// The message an operator sees: what failed, with librdkafka's reason (it never contains the
/// password) and which settings to look at.
pub fn describe(brokers: &str, reason: &str) -> String {
    format!(
        "Kafka at {brokers} refused this client: {reason} (check security.protocol, sasl.mechanism, sasl.username and sasl.password in the properties)"
    )
}

/// Connect and read the cluster's metadata, retrying for up to `patience`: refused credentials
/// fail here with the reason, a broker that does not answer with librdkafka's error. `poll`
/// serves the client's events (its context hears of errors only then) and returns what the
/// context remembered.
pub fn connect<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    poll: impl Fn() -> Option<String>,
    brokers: &str,
    patience: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    loop {
        let attempt = client.fetch_metadata(None, Duration::from_secs(2));
        if let Some(reason) = poll() {
            return Err(describe(brokers, &reason));
        }
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("connecting to Kafka at {brokers}: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A client context that remembers the first fatal error.
#[derive(Default)]
pub struct AuthWatch {
    failure: Mutex<Option<String>>,
}

impl AuthWatch {
    /// librdkafka's reason for the first fatal error, if one happened.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for AuthWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_fatal(&error) {
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| reason.to_string());
        }
        tracing::error!(%error, reason, "librdkafka error");
    }
}

/// Producers with this context report deliveries as the default context does (not at all: the
/// sinks wait with `flush`).
impl rdkafka::producer::ProducerContext for AuthWatch {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl rdkafka::consumer::ConsumerContext for AuthWatch {}
