//! The dead-letter topic: a message that cannot be a lead is sent there as
//! it came (key, payload, headers), with headers saying why and from where.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::deliveries::Deliveries;
use crate::error::{Error, Result};

/// How long a flush may wait for the brokers to take what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Header names of a dead letter; the originals are kept beside them.
pub const REASON_HEADER: &str = "leadflow.reason";
pub const TOPIC_HEADER: &str = "leadflow.topic";
pub const PARTITION_HEADER: &str = "leadflow.partition";
pub const OFFSET_HEADER: &str = "leadflow.offset";

pub(crate) struct DeadLetters {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    /// Sent since the last flush.
    unflushed: bool,
}

impl DeadLetters {
    pub(crate) fn new(client: &ClientConfig, topic: &str) -> Result<Self> {
        let producer = client
            .clone()
            // Every dead letter once, in order, or the flush fails.
            .set("enable.idempotence", "true")
            .create_with_context(Deliveries::default())
            .map_err(|e| Error::Usage(format!("creating the dead-letter producer: {e}")))?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
            unflushed: false,
        })
    }

    /// Sends `message` to the dead-letter topic with `reason`.
    pub(crate) fn send(&mut self, message: &BorrowedMessage<'_>, reason: &str) -> Result<()> {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        headers = headers
            .insert(Header {
                key: REASON_HEADER,
                value: Some(reason),
            })
            .insert(Header {
                key: TOPIC_HEADER,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: PARTITION_HEADER,
                value: Some(&partition),
            })
            .insert(Header {
                key: OFFSET_HEADER,
                value: Some(&offset),
            });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    return Err(Error::Unavailable(format!(
                        "sending a dead letter to `{}`: {e}",
                        self.topic
                    )));
                }
            }
        }
        self.unflushed = true;
        Ok(())
    }

    /// Waits until the brokers hold every dead letter sent so far: their
    /// messages' offsets may be committed after this.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if !self.unflushed {
            return Ok(());
        }
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| {
            Error::Unavailable(format!("delivering dead letters to `{}`: {e}", self.topic))
        })?;
        if let Some((failed, first)) = self.producer.context().refused() {
            return Err(Error::Unavailable(format!(
                "{failed} dead letters were not delivered to `{}`: {first}",
                self.topic
            )));
        }
        self.unflushed = false;
        Ok(())
    }
}
