//! `leadflow produce`: leads from files (CSV, NDJSON, Parquet; local or S3)
//! onto a Kafka topic, one JSON message per lead keyed by `lead_id`,
//! through the same reader as `leadflow run`: a record that cannot be a
//! lead is reported, not sent.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int32Type, TimestampMicrosecondType};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::sinks::rejects::Reject;
use crate::sources::SourceProgress;
use crate::sources::files::{FileSource, FileSourceConfig};
use crate::sources::kafka::Deliveries;

/// How long the end of a run may wait for the brokers to take the rest.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where to send leads.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    pub source: FileSourceConfig,
    pub brokers: String,
    pub topic: String,
    /// Further librdkafka properties, applied last.
    pub options: Vec<(String, String)>,
}

/// What a produce run did.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    pub sent: u64,
    pub rejects: Vec<Reject>,
}

/// Reads `config.source` and sends every lead; fails unless every lead
/// sent was delivered.
pub async fn produce(config: ProduceConfig) -> Result<Produced> {
    let source = FileSource::open(config.source.clone()).await?;
    let (lead_tx, lead_rx) = mpsc::channel(2);
    let (reject_tx, mut reject_rx) = mpsc::channel(1024);
    let progress = Arc::new(SourceProgress::default());
    let reader = tokio::task::spawn_blocking(move || source.read_all(lead_tx, reject_tx, progress));
    let rejects = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(r) = reject_rx.recv().await {
            all.push(r);
        }
        all
    });
    let sender = tokio::task::spawn_blocking(move || send_all(&config, lead_rx));
    let sent = sender
        .await
        .map_err(|e| Error::Internal(format!("producer thread: {e}")))?;
    reader
        .await
        .map_err(|e| Error::Internal(format!("reader thread: {e}")))??;
    let sent = sent?;
    Ok(Produced {
        sent,
        rejects: rejects
            .await
            .map_err(|e| Error::Internal(format!("reject task: {e}")))?,
    })
}

/// The librdkafka properties `leadflow produce` sets itself (see
/// [`crate::sources::kafka::STREAM_OWNED_OPTIONS`]); `linger.ms` and
/// `client.id` are only defaults and stay the user's to tune.
pub const PRODUCE_OWNED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "use --brokers"),
    ("metadata.broker.list", "use --brokers"),
    (
        "enable.idempotence",
        "leadflow sends each lead once, in order",
    ),
];

fn send_all(config: &ProduceConfig, mut leads: mpsc::Receiver<Result<RecordBatch>>) -> Result<u64> {
    crate::sources::kafka::refuse_owned_options(&config.options, PRODUCE_OWNED_OPTIONS)?;
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", concat!("leadflow/", env!("CARGO_PKG_VERSION")))
        .set("enable.idempotence", "true")
        // A misspelt topic is an error, not a new topic (the user may say
        // otherwise with --kafka allow.auto.create.topics=true).
        .set("allow.auto.create.topics", "false")
        .set("linger.ms", "20");
    for (k, v) in &config.options {
        client.set(k, v);
    }
    let producer: BaseProducer<Deliveries> = client
        .create_with_context(Deliveries::default())
        .map_err(|e| Error::Usage(format!("creating the Kafka producer: {e}")))?;
    // Fail now, not after librdkafka's delivery timeout, when nothing answers
    // or the topic is not there (a misspelt topic is the user's to fix).
    let metadata = producer
        .client()
        .fetch_metadata(Some(&config.topic), Duration::from_secs(10))
        .map_err(|e| Error::Unavailable(format!("Kafka at {}: {e}", config.brokers)))?;
    let missing = metadata.topics().first().is_none_or(|t| {
        t.error().map(RDKafkaErrorCode::from) == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            || (t.error().is_none() && t.partitions().is_empty())
    });
    if missing {
        return Err(Error::Usage(format!(
            "Kafka topic `{}` does not exist at {}",
            config.topic, config.brokers
        )));
    }
    let mut sent = 0u64;
    let mut payload = Vec::new();
    while let Some(batch) = leads.blocking_recv() {
        let batch = batch?;
        let lead_id = batch.schema().index_of("lead_id").ok();
        for row in 0..batch.num_rows() {
            payload.clear();
            serde_json::to_writer(&mut payload, &lead_json(&batch, row))
                .map_err(|e| Error::Internal(format!("encoding a lead: {e}")))?;
            let key = lead_id.and_then(|i| {
                let ids = batch.column(i).as_string::<i32>();
                ids.is_valid(row).then(|| ids.value(row))
            });
            let mut record: BaseRecord<'_, str, [u8]> =
                BaseRecord::to(&config.topic).payload(&payload[..]);
            if let Some(key) = key {
                record = record.key(key);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        return Err(Error::Unavailable(format!(
                            "sending to `{}` at {}: {e}",
                            config.topic, config.brokers
                        )));
                    }
                }
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(FLUSH_TIMEOUT).map_err(|e| {
        Error::Unavailable(format!(
            "delivering to `{}` at {}: {e}",
            config.topic, config.brokers
        ))
    })?;
    if let Some((failed, first)) = producer.context().refused() {
        return Err(Error::Unavailable(format!(
            "{failed} of {sent} leads were not delivered to `{}`: {first}",
            config.topic
        )));
    }
    Ok(sent)
}

/// One lead as its JSON message: nulls left out, `user_tier` a number,
/// `received_at` RFC 3339.
fn lead_json(batch: &RecordBatch, row: usize) -> Value {
    let mut object = Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if column.is_null(row) {
            continue;
        }
        let value = match column.data_type() {
            DataType::Utf8 => Value::from(column.as_string::<i32>().value(row)),
            DataType::Int32 => Value::from(column.as_primitive::<Int32Type>().value(row)),
            DataType::Timestamp(_, _) => {
                let micros = column.as_primitive::<TimestampMicrosecondType>().value(row);
                match chrono::DateTime::from_timestamp_micros(micros) {
                    Some(t) => Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                    None => continue,
                }
            }
            _ => continue,
        };
        object.insert(field.name().clone(), value);
    }
    Value::Object(object)
}
