//! `leadflow stream`: leads from a Kafka topic, enriched continuously into
//! the same tables as `leadflow run`.
//!
//! The Kafka source ([`crate::sources::kafka`]) cuts each partition's
//! messages into batches and hands them to a worker: partition `p` always
//! to worker `p % workers`, so a partition's cuts are written in order
//! while several partitions use every core. A worker runs the enrichment
//! query over the cut, writes its leads, the provider calls its lookups
//! made (from the worker's own usage ledger, so they are this cut's) and
//! its rejects, commits them in the stream ledger ([`ledger`]) and says so
//! to the source, which then commits the offsets. The output, not Kafka's
//! committed offsets, says what is done: a restart, a lost commit or a
//! rebalance skips what is written.

pub mod ledger;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use leadflow_sandbox::ProviderStats;
use leadflow_waterfall::config::BudgetConfig;
use leadflow_waterfall::{ProviderUsage, UsageLedger, Waterfall};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::config::LeadflowConfig;
use crate::engine::{BatchPlan, OutputCounts, RunStamp};
use crate::error::{Error, Result};
use crate::providers::Providers;
use crate::publish::{Publisher, compact, crash_point, relative_to};
use crate::sinks::parquet::{ParquetSinkConfig, PartitionedWriter};
use crate::sinks::provider_usage::LookupTally;
use crate::sinks::usage_log::{self, CutJournal, CutOf, UsageLog};
use crate::sinks::write_usage_and_rejects;
use crate::sources::kafka::{Cut, CutOwner, KafkaSource, KafkaSourceConfig, SourceTally, Written};
use crate::storage;
use crate::telemetry;
use ledger::{CommittedCut, StreamLedger};

/// Usage rows a worker's lookups may report before it drains them.
const USAGE_QUEUE: usize = 16 * 1024;

/// Everything a stream needs.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub source: KafkaSourceConfig,
    /// Output directory or `s3://bucket/prefix`.
    pub out: String,
    /// The enrichment SQL, over the table `leads`.
    pub query: String,
    pub run_id: String,
    /// Workers running the query (each owns the partitions `p % workers`).
    pub workers: usize,
    pub providers: LeadflowConfig,
    /// Compacts the output's stream files once they are this old (see
    /// [`crate::publish::compact`]); `None`: never.
    pub compact_after: Option<Duration>,
}

/// What a stream did, printed when it stops.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub run_id: String,
    pub source: SourceTally,
    pub cuts_written: u64,
    pub leads_written: u64,
    pub rejects: u64,
    pub usage_rows: u64,
    pub lookups: LookupTally,
    /// The config's `[budget]`, named when the budget ran out.
    pub budget: BudgetConfig,
    pub sandbox: Option<BTreeMap<String, ProviderStats>>,
    pub elapsed: Duration,
    pub out: String,
}

/// Consumes `config.source` until `stop` is set (or something fails), then
/// writes and commits what it holds.
pub async fn stream(config: StreamConfig, stop: Arc<AtomicBool>) -> Result<StreamSummary> {
    let started = Instant::now();
    let workers = config.workers.max(1);
    // The calls of cuts a killed stream never committed go into the output
    // before any cut is written here (see `usage_log`).
    let location = storage::create(&config.out)?;
    Publisher::tidy(&location).await?;
    let journals: Vec<Arc<CutJournal>> = (0..workers).map(|_| Arc::default()).collect();
    let (ledgers, usage): (Vec<_>, Vec<_>) = journals
        .iter()
        .map(|journal| {
            let (ledger, usage) = UsageLedger::channel(USAGE_QUEUE);
            (ledger.with_journal(journal.clone()), usage)
        })
        .unzip();
    let (providers, waterfalls) =
        Providers::start_scoped(&config.providers, UsageLedger::discard(), ledgers).await?;
    let (stop_compacting, stopped) = tokio::sync::watch::channel(false);
    let compactor = config
        .compact_after
        .map(|after| tokio::spawn(compact::compact_every(location.clone(), after, stopped)));
    let result = run_workers(&config, &location, waterfalls, usage, journals, stop).await;
    if let Some(compactor) = compactor {
        // A compaction still writing stops and deletes what it staged; one
        // committing finishes first.
        let _ = stop_compacting.send(true);
        let _ = compactor.await;
    }
    if result.is_err() {
        // A failed worker left its cut's log closed: its calls go in now.
        if let Err(e) = crate::publish::commit_dead_usage(&location, true).await {
            tracing::warn!(error = %e, "could not commit the provider calls of the cut that failed; the next stream, run or `leadflow sql` on this output will");
        }
    }
    // Leased permits go back to the fleet and the budget books its spend;
    // the services are shared by every worker's waterfall.
    providers.waterfall.close().await;
    if let Some(fleet) = &providers.fleet {
        fleet.leave().await;
    }
    let (source, written) = result?;
    Ok(StreamSummary {
        run_id: config.run_id,
        source,
        cuts_written: written.cuts,
        leads_written: written.counts.rows,
        rejects: written.rejects,
        usage_rows: written.usage_rows,
        lookups: written.counts.lookups,
        budget: config.providers.budget.clone(),
        sandbox: providers.sandbox_stats(),
        elapsed: started.elapsed(),
        out: config.out,
    })
}

async fn run_workers(
    config: &StreamConfig,
    location: &storage::Location,
    waterfalls: Vec<Arc<Waterfall>>,
    usage: Vec<mpsc::Receiver<ProviderUsage>>,
    journals: Vec<Arc<CutJournal>>,
    stop: Arc<AtomicBool>,
) -> Result<(SourceTally, WorkerTally)> {
    let stamp = RunStamp {
        run_id: config.run_id.clone(),
        at_micros: Utc::now().timestamp_micros(),
    };
    let ledger = StreamLedger::writer(location.clone(), &config.source.topic)?;
    // Plan first, so bad SQL fails before the consumer joins its group.
    let query = config.providers.enrichment_query(&config.query);
    let mut plans = Vec::with_capacity(waterfalls.len());
    for waterfall in waterfalls {
        let plan = BatchPlan::new(&query, waterfall, config.source.batch_rows).await;
        plans.push(plan.map_err(|e| config.providers.explain_query_error(e))?);
    }
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    let mut senders = Vec::with_capacity(plans.len());
    let mut tasks = Vec::with_capacity(plans.len());
    let logs = usage_log::dir_for(location);
    for ((plan, usage), journal) in plans.into_iter().zip(usage).zip(journals) {
        // One cut queued per worker beyond the one it is writing.
        let (tx, rx) = mpsc::channel(1);
        senders.push(tx);
        let worker = Worker {
            plan,
            usage,
            journal,
            logs: logs.clone(),
            ledger: ledger.clone(),
            stamp: stamp.clone(),
            written: written_tx.clone(),
        };
        tasks.push(tokio::spawn(worker.run(rx)));
    }
    drop(written_tx);
    let owner = Arc::new(Owner {
        senders,
        ledger: ledger.clone(),
        runtime: Handle::current(),
    });
    let source_config = config.source.clone();
    // The consumer and its rebalance callbacks block: a thread of their own.
    let source = tokio::task::spawn_blocking(move || {
        KafkaSource::connect(source_config, owner, written_rx)?.run(&stop)
    })
    .await
    .map_err(|e| Error::Internal(format!("Kafka source thread: {e}")))?;
    // The source has dropped the owner: the workers finish their queues.
    let mut total = WorkerTally::default();
    let mut failed = None;
    for task in tasks {
        match task
            .await
            .map_err(|e| Error::Internal(format!("stream worker: {e}")))?
        {
            Ok(tally) => total.merge(tally),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    // A worker's failure is the cause of the source's. It may leave staged
    // files: the lease stays for whoever recovers the partition next.
    if let Some(e) = failed {
        return Err(e);
    }
    if source.is_ok() {
        ledger.leave();
    }
    Ok((source?, total))
}

/// The stream's side of the source: cuts go to workers, assignments to the ledger.
struct Owner {
    senders: Vec<mpsc::Sender<Cut>>,
    ledger: StreamLedger,
    runtime: Handle,
}

impl CutOwner for Owner {
    fn assigned(&self, partition: i32) -> Result<Option<i64>> {
        self.runtime.block_on(self.ledger.recover(partition))
    }

    fn take(&self, cut: Cut) -> Result<()> {
        let worker = cut.partition.unsigned_abs() as usize % self.senders.len();
        self.senders[worker]
            .blocking_send(cut)
            .map_err(|_| Error::Internal("a stream worker stopped".into()))
    }
}

/// What a worker wrote.
#[derive(Debug, Default)]
struct WorkerTally {
    cuts: u64,
    counts: OutputCounts,
    rejects: u64,
    usage_rows: u64,
}

impl WorkerTally {
    fn merge(&mut self, other: WorkerTally) {
        self.cuts += other.cuts;
        self.counts.merge(other.counts);
        self.rejects += other.rejects;
        self.usage_rows += other.usage_rows;
    }
}

/// Runs the query over cuts and commits what they produce.
struct Worker {
    plan: BatchPlan,
    /// This worker's usage ledger: every call its lookups made.
    usage: mpsc::Receiver<ProviderUsage>,
    /// Where its lookups journal each request ahead of time: a usage log
    /// per cut, in `logs`.
    journal: Arc<CutJournal>,
    logs: PathBuf,
    ledger: StreamLedger,
    stamp: RunStamp,
    written: std::sync::mpsc::Sender<Result<Written>>,
}

impl Worker {
    async fn run(mut self, mut cuts: mpsc::Receiver<Cut>) -> Result<WorkerTally> {
        let mut tally = WorkerTally::default();
        while let Some(cut) = cuts.recv().await {
            let (partition, last) = (cut.partition, cut.last);
            match self.write(cut, &mut tally).await {
                Ok(()) => {
                    let _ = self.written.send(Ok(Written { partition, last }));
                }
                Err(e) => {
                    // The cut's calls are in its log, which the stream
                    // commits once the workers have stopped.
                    if let Some(log) = self.journal.end() {
                        log.close();
                    }
                    let _ = self.written.send(Err(Error::Internal(format!(
                        "writing partition {partition} up to offset {last} failed"
                    ))));
                    return Err(e);
                }
            }
        }
        Ok(tally)
    }

    /// Enriches one cut and commits its leads, usage and rejects as one.
    async fn write(&mut self, cut: Cut, tally: &mut WorkerTally) -> Result<()> {
        crash_point("stream_cut_received");
        let started = Instant::now();
        let (p, first, last) = (cut.partition, cut.first, cut.last);
        let staging = self.ledger.staging(p);
        let stem = self.ledger.file_stem(p, first, last);
        let today = Utc::now().date_naive();
        let sink =
            |table: &str, dt: Option<&str>| ParquetSinkConfig::new(table, stem.clone(), dt, today);

        let mut leads = PartitionedWriter::new(
            staging.clone(),
            sink("enriched_leads", Some("received_at")),
            self.plan.plan.write_schema.clone(),
        );
        let mut counts = OutputCounts::default();
        let mut usage = Vec::new();
        // Every request the cut's lookups send is on record before it
        // leaves, until the cut is committed.
        let id = crate::publish::new_write_id(&self.stamp.run_id);
        let log = UsageLog::create_for_cut(
            &self.logs,
            &self.stamp.run_id,
            &id,
            CutOf {
                topic: self.ledger.topic().to_string(),
                partition: p,
                first,
                last,
            },
        )?;
        self.journal.begin(log);
        if cut.leads.num_rows() > 0 {
            let mut out = self.plan.execute(cut.leads).await?;
            loop {
                tokio::select! {
                    // Lookups wait for room in the ledger: drain it as they go.
                    Some(row) = self.usage.recv() => usage.push(row),
                    batch = out.next() => match batch {
                        Some(batch) => {
                            let batch = self.plan.plan.output(&batch?, &self.stamp, &mut counts)?;
                            leads.write(&batch).await?;
                        }
                        None => break,
                    },
                }
            }
            // Every lookup has ended, so every row it reported is here.
            while let Ok(row) = self.usage.try_recv() {
                usage.push(row);
            }
        }
        let mut files = leads.close().await?;

        files.extend(
            write_usage_and_rejects(
                &staging,
                sink,
                (&self.stamp.run_id, self.stamp.at_micros),
                &usage,
                &cut.rejects,
                |attempt| counts.lookups.add_attempt(attempt),
            )
            .await?,
        );

        let committed = CommittedCut {
            files: relative_to(&staging, &files)?,
            leads: counts.rows,
            rejects: cut.rejects.len() as u64,
            usage_rows: usage.len() as u64,
            committed_at: Utc::now(),
            ..self.ledger.cut(p, first, last, &id)
        };
        self.ledger.commit(&committed).await?;
        if let Some(log) = self.journal.end() {
            log.remove();
        }
        // Counted once committed, before the files appear in the tables: a
        // scrape never sees leads the metrics have not counted.
        counts.count_in_metrics();
        telemetry::rejects(committed.rejects);
        self.ledger.publish(&committed).await?;
        telemetry::batch(started.elapsed());
        if let Some(ms) = cut.produced_ms {
            let now = Utc::now().timestamp_millis();
            telemetry::visible_after(Duration::from_millis(now.saturating_sub(ms).max(0) as u64));
        }
        tally.cuts += 1;
        tally.rejects += committed.rejects;
        tally.usage_rows += committed.usage_rows;
        tally.counts.merge(counts);
        Ok(())
    }
}

impl fmt::Display for StreamSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.source;
        writeln!(
            f,
            "leadflow stream {} stopped after {:.1}s",
            self.run_id,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  messages        {}", s.messages)?;
        if s.skipped > 0 {
            writeln!(
                f,
                "  already written {} (skipped: the output holds them)",
                s.skipped
            )?;
        }
        writeln!(f, "  leads written   {}", self.leads_written)?;
        if s.not_assigned > 0 {
            writeln!(
                f,
                "  not assigned here {} (messages of partitions held elsewhere, dropped uncommitted)",
                s.not_assigned
            )?;
        }
        writeln!(
            f,
            "  rejected        {} ({} to the dead-letter topic)",
            self.rejects, s.dead_letters
        )?;
        if s.unknown_countries > 0 {
            writeln!(
                f,
                "  unknown country {} (kept as written)",
                s.unknown_countries
            )?;
        }
        write!(f, "{}", self.lookups)?;
        if let Some(sandbox) = &self.sandbox {
            let served: u64 = sandbox.values().map(|s| s.requests).sum();
            writeln!(
                f,
                "  sandbox         {served} requests served in-process (no real provider called)"
            )?;
        }
        writeln!(
            f,
            "  output          {} ({} cuts committed, {} usage rows)",
            self.out, self.cuts_written, self.usage_rows
        )?;
        if let Some(note) = self.lookups.budget_note(&self.budget) {
            writeln!(f, "warning: {note}")?;
        }
        Ok(())
    }
}
