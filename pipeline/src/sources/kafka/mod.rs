//! Kafka: a consumer in a consumer group turns each assigned partition's
//! messages into lead batches ("cuts") bounded by rows and by time, hands
//! them to the stream that owns the output, and commits a partition's
//! offsets only after the owner says the cut is written. Offsets are never
//! committed automatically. A message that cannot be a lead goes to the
//! dead-letter topic and into its cut's rejects; its offset is committed
//! like any other, so it never stalls its partition.
//!
//! The consumer is librdkafka's polled one (`BaseConsumer`) on a thread of
//! its own: rebalances run inside `poll`, on that thread, so a partition
//! being revoked is cut, written and committed before it is given up.

pub(crate) mod decode;
mod deliveries;
mod dlq;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

pub(crate) use deliveries::Deliveries;
pub use dlq::{OFFSET_HEADER, PARTITION_HEADER, REASON_HEADER, TOPIC_HEADER};

use crate::error::{Error, Result};
use crate::lead::{LeadBuilder, LeadOptions};
use crate::sinks::rejects::Reject;
use crate::telemetry;
use decode::LeadDecoder;
use dlq::DeadLetters;

/// How long `poll` waits for a message before the loop looks at the clock.
const POLL: Duration = Duration::from_millis(20);

/// Longest reject `raw` kept from a message over the size limit.
const RAW_LIMIT: usize = 4096;

/// Where to read leads from, and how to cut them.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`: host:port[,host:port…].
    pub brokers: String,
    pub topic: String,
    /// The consumer group; workers with the same group split the partitions.
    pub group: String,
    /// A cut is handed over at this many leads …
    pub batch_rows: usize,
    /// … or this long after its first message, whichever comes first.
    pub batch_time: Duration,
    /// Messages larger than this are dead letters.
    pub max_message_bytes: usize,
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// Country for leads whose `country` is blank.
    pub default_country: Option<&'static str>,
    /// Further librdkafka properties (security, timeouts, …), applied last.
    pub options: Vec<(String, String)>,
    /// The stream fails when its group has given it no assignment this
    /// long after it subscribed: a consumer that cannot join (a group of
    /// another assignor, a refused login) would otherwise wait forever.
    pub join_timeout: Duration,
}

/// One partition's messages from `first` to `last` (offsets, inclusive):
/// its leads and its rejects.
#[derive(Debug)]
pub struct Cut {
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    pub leads: RecordBatch,
    pub rejects: Vec<Reject>,
    /// The earliest producer timestamp among its messages (ms since the
    /// epoch), for the produce-to-visible latency.
    pub produced_ms: Option<i64>,
}

/// The owner's word that a cut is in the output, through `last`.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub partition: i32,
    pub last: i64,
}

/// Whoever writes the cuts: the stream.
pub trait CutOwner: Send + Sync {
    /// `partition` is now this consumer's: make its output whole (finish
    /// what a crash left) and say the highest offset it holds.
    fn assigned(&self, partition: i32) -> Result<Option<i64>>;
    /// Takes a cut; blocks while the owner is busy, which stops the fetching.
    fn take(&self, cut: Cut) -> Result<()>;
}

/// What the source did, for the summary.
#[derive(Debug, Clone, Default)]
pub struct SourceTally {
    pub messages: u64,
    pub leads: u64,
    pub dead_letters: u64,
    /// Messages at or below an offset already in the output (a replay).
    pub skipped: u64,
    pub cuts: u64,
    pub unkept_values: u64,
    pub unknown_countries: u64,
    /// Messages polled from a partition this consumer does not hold,
    /// dropped (uncommitted, so the partition's owner reads them).
    pub not_assigned: u64,
}

/// A consumer of lead messages, handing cuts to an owner.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    config: KafkaSourceConfig,
}

impl KafkaSource {
    /// Joins the consumer group (the partitions come with the first polls).
    /// Fails when the brokers cannot be reached or the topic does not exist.
    pub fn connect(
        config: KafkaSourceConfig,
        owner: Arc<dyn CutOwner>,
        written: Receiver<Result<Written>>,
    ) -> Result<Self> {
        refuse_owned_options(&config.options, STREAM_OWNED_OPTIONS)?;
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", concat!("leadflow/", env!("CARGO_PKG_VERSION")));
        let dlq = DeadLetters::new(&with_options(&client, &config.options), &config.dlq_topic)?;
        client
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A new group reads the topic from its start: leads already
            // waiting there are leads to enrich.
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000");
        let client = with_options(&client, &config.options);
        let state = State {
            owner,
            written,
            dlq,
            decoder: LeadDecoder::new(config.max_message_bytes),
            options: LeadOptions {
                batch_size: config.batch_rows,
                default_country: config.default_country,
                owner: None,
            },
            partitions: HashMap::new(),
            to_commit: BTreeMap::new(),
            failed: None,
            tally: SourceTally::default(),
            topic: config.topic.clone(),
            joined: false,
        };
        let consumer: BaseConsumer<SourceContext> = client
            .create_with_context(SourceContext {
                state: Mutex::new(state),
                errors: Mutex::new(KafkaErrors::default()),
            })
            .map_err(|e| Error::Usage(format!("creating the Kafka consumer: {e}")))?;
        let exists = |topic: &str| -> Result<bool> {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .map_err(|e| Error::Unavailable(format!("Kafka at {}: {e}", config.brokers)))?;
            Ok(metadata
                .topics()
                .first()
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()))
        };
        if !exists(&config.topic)? {
            return Err(Error::Usage(format!(
                "Kafka topic `{}` does not exist at {}",
                config.topic, config.brokers
            )));
        }
        // A bad message would otherwise wait out the producer's delivery
        // timeout before failing the stream.
        if !exists(&config.dlq_topic)? {
            return Err(Error::Usage(format!(
                "the dead-letter topic `{}` does not exist at {}: create it, or name another with --dlq-topic",
                config.dlq_topic, config.brokers
            )));
        }
        consumer
            .subscribe(&[&config.topic])
            .map_err(|e| Error::Unavailable(format!("subscribing to `{}`: {e}", config.topic)))?;
        Ok(Self { consumer, config })
    }

    /// Consumes until `stop` is set, then cuts what it holds, waits for it
    /// to be written and commits.
    pub fn run(self, stop: &AtomicBool) -> Result<SourceTally> {
        let batch_time = self.config.batch_time;
        let subscribed = Instant::now();
        let mut next_check = Instant::now() + batch_time.min(POLL * 5);
        while !stop.load(Ordering::Relaxed) {
            let polled = self.consumer.poll(POLL);
            if let Some(Err(e)) = &polled {
                self.consumer.context().report(e, None);
                if let Some((code, reason)) = self.consumer.client().fatal_error() {
                    return Err(Error::Unavailable(format!(
                        "Kafka consumer in group `{}`: fatal error {code}: {reason}",
                        self.config.group
                    )));
                }
            }
            let mut state = self.state();
            if let Some(e) = state.failed.take() {
                return Err(e);
            }
            if !state.joined && subscribed.elapsed() >= self.config.join_timeout {
                return Err(self.not_joined());
            }
            if let Some(Ok(message)) = polled {
                state.on_message(&message)?;
            }
            if Instant::now() >= next_check {
                state.cut_due(batch_time)?;
                next_check = Instant::now() + batch_time.min(POLL * 5);
            }
            state.collect_written()?;
            state.commit(&self.consumer, CommitMode::Async)?;
        }
        let mut state = self.state();
        let held: Vec<i32> = state.partitions.keys().copied().collect();
        state.drain(&self.consumer, &held)?;
        let tally = std::mem::take(&mut state.tally);
        drop(state);
        Ok(tally)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.consumer.context().state.lock().expect("source state")
    }

    /// Why the stream gives up on a group that gave it nothing.
    fn not_joined(&self) -> Error {
        let errors = self.consumer.context().errors.lock().expect("Kafka errors");
        let cause = match &errors.last {
            Some(e) => format!("the last error: {e}"),
            None => "no error was reported (is the group rebalancing without end?)".into(),
        };
        Error::Unavailable(format!(
            "consumer group `{}` gave this consumer no partitions of `{}` within {} s (--join-timeout-secs); {cause}",
            self.config.group,
            self.config.topic,
            self.config.join_timeout.as_secs()
        ))
    }
}

/// The librdkafka properties `leadflow stream` sets itself, with who owns
/// each: a `--kafka` option naming one would silently undo it (offsets
/// committed before their leads are written, another group, another
/// cluster). `client.id` is only a default and stays the user's to set.
pub const STREAM_OWNED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "use --brokers"),
    ("metadata.broker.list", "use --brokers"),
    ("group.id", "use --group"),
    (
        "enable.auto.commit",
        "leadflow commits a partition's offsets once their leads are written",
    ),
    (
        "auto.commit.enable",
        "leadflow commits a partition's offsets once their leads are written",
    ),
    (
        "enable.auto.offset.store",
        "leadflow stores a partition's offsets once their leads are written",
    ),
    (
        "auto.offset.reset",
        "a new group reads the topic from its start",
    ),
    (
        "statistics.interval.ms",
        "the consumer lag metrics read librdkafka's statistics",
    ),
    (
        "enable.idempotence",
        "the dead-letter producer sends each dead letter once, in order",
    ),
];

/// Refuses a `--kafka` option that `owned` says leadflow sets itself,
/// naming the flag (or the reason) that owns it. Checked before any client
/// is made, so nothing is contacted.
pub fn refuse_owned_options(options: &[(String, String)], owned: &[(&str, &str)]) -> Result<()> {
    for (key, _) in options {
        let key = key.trim();
        if let Some((_, owner)) = owned.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
            return Err(Error::Usage(format!(
                "--kafka {key}: set by leadflow; {owner}"
            )));
        }
    }
    Ok(())
}

fn with_options(client: &ClientConfig, options: &[(String, String)]) -> ClientConfig {
    let mut client = client.clone();
    for (k, v) in options {
        client.set(k, v);
    }
    client
}

/// The consumer's state, shared by the poll loop and the rebalance
/// callbacks (both on the consumer thread).
struct SourceContext {
    state: Mutex<State>,
    /// Its own lock: librdkafka reports errors while the state is held.
    errors: Mutex<KafkaErrors>,
}

impl SourceContext {
    /// An error of the consumer, from `poll` (a failed join, a refused
    /// commit, an unreadable partition) or from librdkafka's error
    /// callback (brokers unreachable, a failed login; `reason` says more).
    /// librdkafka reports a failing join through both, and again at every
    /// retry, every few seconds, forever: each kind of error is logged
    /// once, its repeats at counts 2, 4, 8, …, the rest at debug level.
    fn report(&self, e: &KafkaError, reason: Option<&str>) {
        let text = match reason {
            Some(reason) => format!("{e}: {reason}"),
            None => e.to_string(),
        };
        let code = e.rdkafka_error_code();
        let kind = code.map_or_else(|| text.clone(), |c| format!("{c:?}"));
        let seen = self.errors.lock().expect("Kafka errors").seen(kind, &text);
        // The connection errors librdkafka recovers from by itself.
        let transient = matches!(
            code,
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::Resolve
                    | RDKafkaErrorCode::OperationTimedOut
            )
        );
        match seen {
            1 if transient => tracing::warn!(error = %text, "Kafka consumer error"),
            1 => tracing::error!(error = %text, "Kafka consumer error"),
            n if n.is_power_of_two() && transient => {
                tracing::warn!(error = %text, repeats = n, "the same Kafka consumer error again")
            }
            n if n.is_power_of_two() => {
                tracing::error!(error = %text, repeats = n, "the same Kafka consumer error again")
            }
            n => tracing::debug!(error = %text, repeats = n, "the same Kafka consumer error again"),
        }
    }
}

/// The consumer's errors so far, by kind (error code).
#[derive(Default)]
struct KafkaErrors {
    /// The latest error, named when the stream gives up.
    last: Option<String>,
    /// How many times each kind has been reported.
    seen: HashMap<String, u64>,
}

impl KafkaErrors {
    /// Notes an error and says how many times its kind has been seen.
    fn seen(&mut self, kind: String, text: &str) -> u64 {
        self.last = Some(text.to_string());
        let n = self.seen.entry(kind).or_default();
        *n += 1;
        *n
    }
}

struct State {
    owner: Arc<dyn CutOwner>,
    written: Receiver<Result<Written>>,
    dlq: DeadLetters,
    decoder: LeadDecoder,
    options: LeadOptions,
    partitions: HashMap<i32, Partition>,
    /// Next offset to commit, per partition, not yet sent.
    to_commit: BTreeMap<i32, i64>,
    /// What went wrong inside a rebalance callback, for the loop to return.
    failed: Option<Error>,
    tally: SourceTally,
    topic: String,
    /// Whether the group has given this consumer an assignment (maybe an
    /// empty one) since it subscribed.
    joined: bool,
}

/// An assigned partition.
struct Partition {
    /// Offsets at or below this are already in the output.
    written_through: i64,
    /// Cuts handed over and not yet written.
    in_flight: usize,
    builder: LeadBuilder,
    rejects: Vec<Reject>,
    /// Offsets of the cut being built, when it holds any message.
    range: Option<(i64, i64)>,
    opened: Instant,
    produced_ms: Option<i64>,
}

impl State {
    fn on_message(&mut self, message: &BorrowedMessage<'_>) -> Result<()> {
        let (p, offset) = (message.partition(), message.offset());
        let Some(part) = self.partitions.get_mut(&p) else {
            // Once, then counted in the summary: a stream of them would
            // flood the log.
            if self.tally.not_assigned == 0 {
                tracing::warn!(
                    partition = p,
                    offset,
                    "message from a partition not assigned here (dropped; further ones are counted)"
                );
            }
            self.tally.not_assigned += 1;
            return Ok(());
        };
        self.tally.messages += 1;
        if offset <= part.written_through {
            self.tally.skipped += 1;
            telemetry::replayed(1);
            let next = self.to_commit.entry(p).or_insert(offset + 1);
            *next = (*next).max(offset + 1);
            return Ok(());
        }
        let range = part.range.get_or_insert((offset, offset));
        if range.0 == offset {
            part.opened = Instant::now();
        }
        range.1 = offset;
        if let Some(ms) = message.timestamp().to_millis() {
            part.produced_ms = Some(part.produced_ms.map_or(ms, |t| t.min(ms)));
        }
        let pushed = self
            .decoder
            .push(message.key(), message.payload(), &mut part.builder);
        telemetry::leads_in(1);
        match pushed {
            Ok(()) => self.tally.leads += 1,
            Err(reason) => {
                self.dlq.send(message, &reason)?;
                self.tally.dead_letters += 1;
                telemetry::dead_letter();
                part.rejects.push(Reject {
                    source: format!("kafka:{}/{p}", self.topic),
                    line: Some(offset),
                    raw: raw_text(message.payload().unwrap_or_default()),
                    reason,
                });
            }
        }
        if part.builder.is_full() {
            self.cut(p)?;
        }
        Ok(())
    }

    /// Cuts every partition whose cut has waited `batch_time`.
    fn cut_due(&mut self, batch_time: Duration) -> Result<()> {
        let due: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, part)| part.range.is_some() && part.opened.elapsed() >= batch_time)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            self.cut(p)?;
        }
        Ok(())
    }

    /// Hands partition `p`'s cut to the owner.
    fn cut(&mut self, p: i32) -> Result<()> {
        let part = self.partitions.get_mut(&p).expect("assigned");
        let Some((first, last)) = part.range.take() else {
            return Ok(());
        };
        self.tally.unknown_countries += std::mem::take(&mut part.builder.unknown_countries);
        let cut = Cut {
            partition: p,
            first,
            last,
            leads: part.builder.finish()?,
            rejects: std::mem::take(&mut part.rejects),
            produced_ms: part.produced_ms.take(),
        };
        part.in_flight += 1;
        self.tally.cuts += 1;
        // A dead letter is in its topic before its cut can be written and
        // its offset committed.
        if !cut.rejects.is_empty() {
            self.dlq.flush()?;
        }
        self.owner.take(cut)
    }

    /// Takes the owner's reports of written cuts, without waiting.
    fn collect_written(&mut self) -> Result<()> {
        while let Ok(written) = self.written.try_recv() {
            self.on_written(written?);
        }
        Ok(())
    }

    fn on_written(&mut self, w: Written) {
        if let Some(part) = self.partitions.get_mut(&w.partition) {
            part.in_flight -= 1;
            part.written_through = part.written_through.max(w.last);
        }
        let next = self.to_commit.entry(w.partition).or_insert(w.last + 1);
        *next = (*next).max(w.last + 1);
    }

    fn commit(&mut self, consumer: &BaseConsumer<SourceContext>, mode: CommitMode) -> Result<()> {
        if self.to_commit.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (p, next) in std::mem::take(&mut self.to_commit) {
            offsets
                .add_partition_offset(&self.topic, p, Offset::Offset(next))
                .map_err(|e| Error::Internal(format!("offset list: {e}")))?;
        }
        crate::publish::crash_point("stream_before_offset_commit");
        if let Err(e) = consumer.commit(&offsets, mode) {
            // The output is the ledger: a lost commit costs a replay that
            // skips what is written, not a duplicate.
            tracing::warn!(error = %e, "committing offsets failed; a restart will skip what is written");
        }
        Ok(())
    }

    /// Cuts `partitions`, waits until all they hold is written, commits.
    fn drain(&mut self, consumer: &BaseConsumer<SourceContext>, partitions: &[i32]) -> Result<()> {
        for &p in partitions {
            if self.partitions.contains_key(&p) {
                self.cut(p)?;
            }
        }
        while partitions
            .iter()
            .any(|p| self.partitions.get(p).is_some_and(|p| p.in_flight > 0))
        {
            match self.written.recv() {
                Ok(w) => self.on_written(w?),
                Err(_) => {
                    return Err(Error::Internal(
                        "the stream's writers stopped before writing every cut".into(),
                    ));
                }
            }
        }
        self.commit(consumer, CommitMode::Sync)
    }

    /// This topic's partitions in a rebalance's list.
    fn ours(&self, partitions: &TopicPartitionList) -> Vec<i32> {
        partitions
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }

    /// Takes on `partitions`: every partition under the eager protocol,
    /// the added ones under the cooperative one (those held stay as they are).
    fn assign(&mut self, partitions: &TopicPartitionList) -> Result<()> {
        let assigned = self.ours(partitions);
        tracing::info!(partitions = ?assigned, held = self.partitions.len(), "partitions assigned");
        if !self.joined {
            self.joined = true;
            telemetry::ready();
        }
        for p in assigned {
            let written_through = self.owner.assigned(p)?.unwrap_or(-1);
            if written_through >= 0 {
                tracing::info!(
                    partition = p,
                    written_through,
                    "partition assigned; offsets up to {written_through} are already in the output"
                );
            }
            self.partitions.insert(
                p,
                Partition {
                    written_through,
                    in_flight: 0,
                    builder: LeadBuilder::new(
                        leadflow_schemas::lead_schema([]),
                        self.options.clone(),
                    ),
                    rejects: Vec::new(),
                    range: None,
                    opened: Instant::now(),
                    produced_ms: None,
                },
            );
        }
        Ok(())
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&error, Some(reason));
    }

    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (p, partition) in &topic.partitions {
                if *p >= 0 && partition.consumer_lag >= 0 {
                    telemetry::consumer_lag(&topic.topic, *p, partition.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    /// A revoke names the partitions taken away: all of them under the
    /// eager protocol, some under the cooperative one (the rest keep
    /// flowing, so only the revoked are drained and forgotten). rdkafka's
    /// `rebalance` then unassigns them (`incremental_unassign` when
    /// cooperative).
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut state = self.state.lock().expect("source state");
            if state.failed.is_some() {
                return;
            }
            let revoked = state.ours(partitions);
            let kept: Vec<i32> = state
                .partitions
                .keys()
                .copied()
                .filter(|p| !revoked.contains(p))
                .collect();
            tracing::info!(
                revoked = ?revoked,
                kept = ?kept,
                cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative),
                "partitions revoked: writing and committing what they hold"
            );
            match state.drain(consumer, &revoked) {
                Ok(()) => state.partitions.retain(|p, _| !revoked.contains(p)),
                Err(e) => state.failed = Some(e),
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let mut state = self.state.lock().expect("source state");
                if state.failed.is_some() {
                    return;
                }
                if let Err(e) = state.assign(partitions) {
                    state.failed = Some(e);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "Kafka rebalance"),
        }
    }

    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "offset commit failed; a restart will skip what is written");
        }
    }
}

/// A message's payload as reject text, cut short when very long.
fn raw_text(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    if text.len() <= RAW_LIMIT {
        return text.into_owned();
    }
    let mut end = RAW_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], payload.len())
}

/// librdkafka's own log lines, through `tracing`.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}
