//! The context of leadflow's producers (`leadflow produce`, dead letters):
//! librdkafka's log through `tracing`, and a count of the messages the
//! brokers refused with the first reason, checked after a flush.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};

use super::log_librdkafka;

#[derive(Default)]
pub(crate) struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    /// How many messages were refused, and why the first was, if any was.
    pub(crate) fn refused(&self) -> Option<(u64, String)> {
        let failed = self.failed.load(Ordering::Relaxed);
        (failed > 0).then(|| {
            let first = self.first_error.lock().expect("first error").clone();
            (failed, first.unwrap_or_default())
        })
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.first_error
                .lock()
                .expect("first error")
                .get_or_insert_with(|| error.to_string());
        }
    }
}
