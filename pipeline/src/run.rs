//! `leadflow run`: a batch run from files to enriched Parquet.
//!
//! A blocking thread reads the input into lead batches; the `leads` table
//! hands them, through one bounded channel, to as many partitions as there
//! are cores; the enrichment SQL runs on each partition; one writer per
//! partition writes its leads. The waterfall reports every provider call and
//! skip to the run's usage ledger, which a writer of its own drains into
//! `provider_usage`, so the billing audit does not depend on the query.
//! Memory is bounded by the channels and the writers' row-group budgets, not
//! by the input. Every file goes to the run's staging area and the output
//! changes in one step when the run commits ([`crate::publish`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use leadflow_sandbox::ProviderStats;
use leadflow_waterfall::config::BudgetConfig;
use leadflow_waterfall::{ProviderUsage, UsageLedger, Waterfall};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::LeadflowConfig;
use crate::engine::{OutputCounts, Plan, RunStamp, session};
use crate::error::{Error, Result};
use crate::providers::Providers;
use crate::publish::{self, Publisher, Snapshot};
use crate::sinks::parquet::{ParquetSinkConfig, PartitionedWriter, WrittenFile};
use crate::sinks::provider_usage::{LookupTally, write_usage};
use crate::sinks::rejects::{Reject, RejectBatcher, RejectsWritten, write_rejects};
use crate::sinks::usage_log::{self, UsageLog};
use crate::sources::SourceProgress;
use crate::sources::files::{FileSource, FileSourceConfig, InputFile};
use crate::storage::{self, Location};

/// The enrichment query shipped with leadflow (`queries/enrich.sql`).
pub const ENRICH_SQL: &str = include_str!("../../queries/enrich.sql");

/// Usage rows the waterfall may report ahead of the usage writer.
const USAGE_QUEUE: usize = 16 * 1024;

/// Rejects shown in the summary.
const REJECT_SAMPLES: usize = 5;

/// Everything a batch run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: FileSourceConfig,
    /// Output directory or `s3://bucket/prefix`.
    pub out: String,
    /// The enrichment SQL, over the table `leads`.
    pub query: String,
    pub run_id: String,
    /// Query partitions (threads); defaults to the number of cores.
    pub partitions: usize,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Providers and limits for `find_phone`; no providers means `not_run`.
    pub providers: LeadflowConfig,
    /// The nightly batch this run is (`leadflow batch`): its output replaces
    /// the batch's earlier output whatever either read.
    pub batch: Option<String>,
    /// The job of `leadflow serve` this run is, which shares the server's
    /// providers.
    pub job: Option<JobContext>,
}

/// What a job of `leadflow serve` shares with the server that runs it.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The server's providers: the job's waterfall shares their limits,
    /// cache, breakers and budget, and the server closes them.
    pub providers: Arc<Providers>,
    /// Read while the job runs; its `stop` cancels the job (what was read
    /// is enriched and committed).
    pub progress: Arc<SourceProgress>,
    /// Leads written so far.
    pub written: Arc<std::sync::atomic::AtomicU64>,
    /// The job's identity as an input (`job:{id}`), in place of its file's
    /// content: two jobs of the same bytes are two jobs, and a job run
    /// again replaces its own output.
    pub input_id: String,
}

/// What a run did, printed at its end.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub files: usize,
    pub records_read: u64,
    pub leads_written: u64,
    pub rejects: u64,
    pub valid_phones: Option<u64>,
    pub unknown_countries: u64,
    /// NDJSON values under keys first seen after the lines that fix the
    /// columns (each key is warned about).
    pub unkept_values: u64,
    pub output_files: Vec<WrittenFile>,
    /// What the lookups did: leads per status (when the query returns
    /// `lookup_status`), and calls, hits and spend per provider (always).
    pub lookups: LookupTally,
    /// The config's `[budget]`, named when the budget ran out.
    pub budget: BudgetConfig,
    pub usage_files: Vec<WrittenFile>,
    pub reject_files: Vec<WrittenFile>,
    /// The files read, with their sizes.
    pub inputs: Vec<InputFile>,
    /// What the in-process provider sandbox served, when the config used it.
    pub sandbox: Option<BTreeMap<String, ProviderStats>>,
    pub reject_samples: Vec<Reject>,
    pub elapsed: Duration,
    pub out: String,
    /// Where a batch's manifest is (`leadflow batch`).
    pub manifest: Option<String>,
}

impl RunSummary {
    /// The summary of a run that found no input to read.
    pub fn nothing_read(run_id: String, out: String) -> Self {
        Self {
            run_id,
            files: 0,
            records_read: 0,
            leads_written: 0,
            rejects: 0,
            valid_phones: None,
            unknown_countries: 0,
            unkept_values: 0,
            output_files: Vec::new(),
            lookups: LookupTally::default(),
            budget: BudgetConfig::default(),
            usage_files: Vec::new(),
            reject_files: Vec::new(),
            inputs: Vec::new(),
            sandbox: None,
            reject_samples: Vec::new(),
            elapsed: Duration::ZERO,
            out,
            manifest: None,
        }
    }
}

/// Runs the enrichment over the input and writes `enriched_leads`,
/// `provider_usage` and `rejects`.
/// Settles in Redis the day spend of runs that died, to what their
/// recovered calls cost (each recovered run records it): their unbooked
/// spend is added and their reservations go back. Settling again changes
/// nothing; days older than the day hashes' three-day life are skipped.
/// Best effort: a run that cannot settles nothing and says so.
async fn settle_dead_runs(
    fleet: &leadflow_fleet::Fleet,
    location: &Location,
    now: chrono::DateTime<Utc>,
) {
    let snapshot = match Snapshot::read(location).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the output to settle dead runs' spend");
            return;
        }
    };
    let oldest = (now - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    for run in snapshot.runs.iter().filter(|r| !r.settle.is_empty()) {
        let recent: Vec<(String, i64)> = run
            .settle
            .iter()
            .filter(|(day, _)| *day >= oldest)
            .cloned()
            .collect();
        match fleet.settle_spend(&run.write_id, &recent).await {
            Ok(0) => {}
            Ok(added) => tracing::info!(
                run_id = run.run_id,
                added_usd = added as f64 / 1e6,
                "settled the day spend of a run that died to what its calls cost"
            ),
            Err(e) => tracing::warn!(
                run_id = run.run_id,
                error = e,
                "could not settle the day spend of a run that died; the next run with Redis will"
            ),
        }
    }
}

pub async fn run(config: RunConfig) -> Result<RunSummary> {
    let started = Instant::now();
    let now = Utc::now();
    // A job's input is kept under the output, and is input all the same.
    let source = open_source(&FileSourceConfig {
        skip_output: config.job.is_none().then(|| config.out.clone()),
        ..config.source.clone()
    })
    .await?;
    let files = source.files().len();
    let input_files = source.files().to_vec();
    let stamp = RunStamp {
        run_id: config.run_id.clone(),
        at_micros: now.timestamp_micros(),
    };
    // Every request a provider is sent is in the usage log before it leaves,
    // so the calls stay on record whatever happens to the run.
    let location = storage::create(&config.out)?;
    let write_id = publish::new_write_id(&config.run_id);
    let usage_log = UsageLog::create(&usage_log::dir_for(&location), &config.run_id, &write_id)?;
    // Until the query runs no request is sent: a failure before it leaves
    // a log with no call in it, which goes.
    let forget_log = |e: Error| {
        usage_log.remove();
        e
    };
    let (ledger, usage_rx) = UsageLedger::channel(USAGE_QUEUE);
    let ledger = ledger.with_journal(usage_log.clone());
    // With Redis, this run's spend is also kept under its write id in the
    // day's budget: if it dies, the run that recovers its log settles it.
    let mut provider_config = config.providers.clone();
    provider_config.redis.spend_tag = Some(write_id.clone());
    let (providers, waterfall) = match &config.job {
        None => {
            let providers = Providers::start(&provider_config, ledger)
                .await
                .map_err(forget_log)?;
            let waterfall = providers.waterfall.clone();
            (Some(providers), waterfall)
        }
        Some(job) => (None, job.providers.scoped(ledger).map_err(forget_log)?),
    };

    // Plan first, so bad SQL fails before anything is read or written.
    let partitions = config.partitions.max(1);
    let (lead_tx, lead_rx) = mpsc::channel(partitions * 2);
    let plan = plan(&config, &source, partitions, lead_rx, &waterfall)
        .await
        .map_err(forget_log)?;
    let counts_valid = plan.counts_valid();

    // The output is ours from here until the run publishes or gives up.
    let publisher = Publisher::open_as(location.clone(), &config.run_id, write_id)
        .await
        .map_err(forget_log)?;
    if let Some(fleet) = providers.as_ref().and_then(|p| p.fleet.as_ref()) {
        settle_dead_runs(fleet, &location, now).await;
    }
    let out = Outputs {
        location: publisher.staging(),
        write_id: publisher.write_id().to_string(),
        today: now.date_naive(),
    };
    let progress = config
        .job
        .as_ref()
        .map_or_else(Default::default, |job| job.progress.clone());
    let written = config.job.as_ref().map(|job| job.written.clone());
    let (reject_tx, reject_rx) = mpsc::channel(1024);
    let tasks = Tasks {
        reader: spawn_reader(source, lead_tx, reject_tx, progress.clone()),
        rejects: tokio::spawn(write_rejects(
            reject_rx,
            RejectBatcher::new(&stamp.run_id, stamp.at_micros),
            out.writer(
                out.sink("rejects", 0, None),
                leadflow_schemas::reject_schema(),
            ),
            REJECT_SAMPLES,
        )),
        usage: spawn_usage_writer(usage_rx, &stamp.run_id, &out),
        writers: spawn_lead_writers(plan, &stamp, &out, written)?,
    };
    let bar = (config.progress && std::io::stderr().is_terminal())
        .then(|| progress_bar(progress.clone()));
    let finished = tasks.finish().await;
    // Rate-limit permits leased and not used go back to the fleet, and
    // what the budget spent is booked there.
    if let Some(providers) = &providers {
        providers.waterfall.close().await;
        if let Some(fleet) = &providers.fleet {
            fleet.leave().await;
        }
    }
    if let Some(bar) = bar {
        bar.abort();
        eprint!("\r\x1b[2K");
    }
    let mut done = match finished {
        Ok(done) => done,
        Err(e) => {
            publisher.abandon(Some(&usage_log)).await;
            return Err(e);
        }
    };
    if let Some(job) = &config.job {
        done.inputs = vec![job.input_id.clone()];
    }

    publish(publisher, config.batch.clone(), &mut done).await?;
    usage_log.remove();
    Ok(RunSummary {
        run_id: config.run_id,
        files,
        records_read: SourceProgress::get(&progress.records_read),
        leads_written: done.leads_written,
        rejects: done.reject_count,
        valid_phones: counts_valid.then_some(done.valid_phones),
        unknown_countries: SourceProgress::get(&progress.unknown_countries),
        unkept_values: SourceProgress::get(&progress.unkept_values),
        output_files: done.lead_files,
        lookups: done.lookups,
        budget: config.providers.budget.clone(),
        usage_files: done.usage_files,
        reject_files: done.reject_files,
        inputs: input_files,
        sandbox: providers.as_ref().and_then(Providers::sandbox_stats),
        reject_samples: done.reject_samples,
        elapsed: started.elapsed(),
        out: config.out,
        manifest: None,
    })
}

/// Commits what the run wrote as the output, and points the summary at
/// where its files now are.
async fn publish(publisher: Publisher, batch: Option<String>, done: &mut Finished) -> Result<()> {
    let staged: Vec<WrittenFile> = [&done.lead_files, &done.usage_files, &done.reject_files]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let published = publisher
        .commit(done.inputs.clone(), batch, &staged)
        .await?;
    if !published.replaced_runs.is_empty() {
        tracing::info!(
            runs = ?published.replaced_runs,
            "replaced the output of earlier runs over the same input"
        );
    }
    let mut placed = published.files.into_iter();
    done.lead_files = placed.by_ref().take(done.lead_files.len()).collect();
    done.usage_files = placed.by_ref().take(done.usage_files.len()).collect();
    done.reject_files = placed.collect();
    done.lead_files.sort_by(|a, b| a.path.cmp(&b.path));
    done.usage_files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

/// Opens the input and warns about files without a phone column.
async fn open_source(config: &FileSourceConfig) -> Result<FileSource> {
    let source = FileSource::open(config.clone()).await?;
    for file in source.files_without_phone() {
        tracing::warn!(
            file,
            "no phone column found; map one with --map phone_raw=COLUMN"
        );
    }
    Ok(source)
}

/// Where a run writes (its staging area), and how its files are named.
struct Outputs {
    location: Location,
    /// Unique to the run: no other run writes these names.
    write_id: String,
    /// The `dt=` partition of rows without a date of their own.
    today: NaiveDate,
}

impl Outputs {
    /// How `table`'s files are cut and named for one partition of the run.
    fn sink(&self, table: &str, partition: usize, dt_column: Option<&str>) -> ParquetSinkConfig {
        let stem = format!("{}-{partition:02}", self.write_id);
        ParquetSinkConfig::new(table, stem, dt_column, self.today)
    }

    fn writer(&self, sink: ParquetSinkConfig, schema: SchemaRef) -> PartitionedWriter {
        PartitionedWriter::new(self.location.clone(), sink, schema)
    }
}

/// Plans the enrichment query over a `leads` table fed by `leads`.
async fn plan(
    config: &RunConfig,
    source: &FileSource,
    partitions: usize,
    leads: mpsc::Receiver<Result<RecordBatch>>,
    waterfall: &Arc<Waterfall>,
) -> Result<Plan> {
    let schema = source.schema().clone();
    let ctx = session(
        partitions,
        config.source.options.batch_size,
        waterfall.clone(),
    );
    let table = LeadsTable::new(schema.clone(), leads);
    let table = StreamingTable::try_new(schema, table.partitions(partitions))?;
    ctx.register_table("leads", Arc::new(table))?;
    let query = config.providers.enrichment_query(&config.query);
    Plan::new(&ctx, &query)
        .await
        .map_err(|e| config.providers.explain_query_error(e))
}

/// Reads the input on a blocking thread into `leads` and `rejects`.
fn spawn_reader(
    source: FileSource,
    leads: mpsc::Sender<Result<RecordBatch>>,
    rejects: mpsc::Sender<Reject>,
    progress: Arc<SourceProgress>,
) -> JoinHandle<Result<Vec<String>>> {
    let query_input = leads.clone();
    tokio::task::spawn_blocking(move || {
        let result = source.read_all(leads, rejects, progress);
        if let Err(e) = &result {
            // Fail the query too, so the run stops instead of finishing short.
            let _ = query_input.blocking_send(Err(Error::Usage(format!("reading input: {e}"))));
        }
        result
    })
}

/// Drains the usage ledger into `provider_usage` until told every lookup
/// has ended.
struct UsageTask {
    done: oneshot::Sender<()>,
    task: JoinHandle<Result<(LookupTally, Vec<WrittenFile>)>>,
}

fn spawn_usage_writer(
    ledger: mpsc::Receiver<ProviderUsage>,
    run_id: &str,
    out: &Outputs,
) -> UsageTask {
    let mut sink = out.sink("provider_usage", 0, Some("started_at"));
    // Usage rows are small and few per lead: a quarter of a lead writer's
    // buffer keeps the process's total bounded.
    sink.buffer_bytes /= 4;
    let writer = out.writer(sink, leadflow_schemas::provider_usage_schema());
    let (done, done_rx) = oneshot::channel();
    let run_id = run_id.to_string();
    let task = tokio::spawn(async move { write_usage(ledger, done_rx, &run_id, writer).await });
    UsageTask { done, task }
}

/// Runs the plan, one task per partition, each writing its leads.
fn spawn_lead_writers(
    plan: Plan,
    stamp: &RunStamp,
    out: &Outputs,
    written: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> Result<Vec<JoinHandle<Result<PartitionWritten>>>> {
    let streams = datafusion::physical_plan::execute_stream_partitioned(
        plan.physical.clone(),
        plan.task_ctx.clone(),
    )?;
    let plan = Arc::new(plan);
    Ok(streams
        .into_iter()
        .enumerate()
        .map(|(p, stream)| {
            let sink = out.sink("enriched_leads", p, Some("received_at"));
            let writer = out.writer(sink, plan.write_schema.clone());
            tokio::spawn(write_partition(
                stream,
                writer,
                plan.clone(),
                stamp.clone(),
                written.clone(),
            ))
        })
        .collect())
}

/// What one partition's writer wrote.
struct PartitionWritten {
    counts: OutputCounts,
    files: Vec<WrittenFile>,
}

/// Writes one partition's output.
async fn write_partition(
    mut stream: SendableRecordBatchStream,
    mut writer: PartitionedWriter,
    plan: Arc<Plan>,
    stamp: RunStamp,
    written: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> Result<PartitionWritten> {
    let mut counts = OutputCounts::default();
    while let Some(batch) = stream.next().await {
        let mut these = OutputCounts::default();
        let batch = plan.output(&batch?, &stamp, &mut these)?;
        these.count_in_metrics();
        counts.merge(these);
        writer.write(&batch).await?;
        if let Some(written) = &written {
            written.fetch_add(
                batch.num_rows() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }
    Ok(PartitionWritten {
        counts,
        files: writer.close().await?,
    })
}

/// The tasks of a running run.
struct Tasks {
    /// Ends with the content ids of the files read.
    reader: JoinHandle<Result<Vec<String>>>,
    rejects: JoinHandle<Result<RejectsWritten>>,
    usage: UsageTask,
    writers: Vec<JoinHandle<Result<PartitionWritten>>>,
}

/// What the tasks wrote, once all have ended.
struct Finished {
    leads_written: u64,
    valid_phones: u64,
    lead_files: Vec<WrittenFile>,
    lookups: LookupTally,
    usage_files: Vec<WrittenFile>,
    reject_count: u64,
    reject_samples: Vec<Reject>,
    reject_files: Vec<WrittenFile>,
    /// Content ids of the input files.
    inputs: Vec<String>,
}

impl Tasks {
    /// Waits for every task; the first failure is the run's.
    async fn finish(self) -> Result<Finished> {
        let joined = |what: &'static str| {
            move |e: tokio::task::JoinError| Error::Internal(format!("{what} task: {e}"))
        };
        let mut done = Finished {
            leads_written: 0,
            valid_phones: 0,
            lead_files: Vec::new(),
            lookups: LookupTally::default(),
            usage_files: Vec::new(),
            reject_count: 0,
            reject_samples: Vec::new(),
            reject_files: Vec::new(),
            inputs: Vec::new(),
        };
        let mut first_error = None;
        for w in self.writers {
            match w.await.map_err(joined("writer"))? {
                Ok(written) => {
                    done.leads_written += written.counts.rows;
                    done.valid_phones += written.counts.valid;
                    done.lead_files.extend(written.files);
                    done.lookups.merge(written.counts.lookups);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Every batch has left the query, so every lookup has ended and
        // reported its attempts: the usage ledger can close.
        let _ = self.usage.done.send(());
        let read = self.reader.await.map_err(joined("reader"))?;
        let rejects = self.rejects.await.map_err(joined("reject"))??;
        let (usage, usage_files) = self.usage.task.await.map_err(joined("usage"))??;
        done.inputs = read?;
        if let Some(e) = first_error {
            return Err(e);
        }
        done.lookups.merge(usage);
        done.usage_files = usage_files;
        (done.reject_count, done.reject_samples, done.reject_files) =
            (rejects.count, rejects.samples, rejects.files);
        Ok(done)
    }
}

/// The `leads` table: every partition pulls the next batch from one channel.
struct LeadsTable {
    schema: SchemaRef,
    rx: Arc<Mutex<mpsc::Receiver<Result<RecordBatch>>>>,
}

impl LeadsTable {
    fn new(schema: SchemaRef, rx: mpsc::Receiver<Result<RecordBatch>>) -> Self {
        Self {
            schema,
            rx: Arc::new(Mutex::new(rx)),
        }
    }

    fn partitions(&self, n: usize) -> Vec<Arc<dyn PartitionStream>> {
        (0..n)
            .map(|_| {
                Arc::new(LeadsPartition {
                    schema: self.schema.clone(),
                    rx: self.rx.clone(),
                }) as Arc<dyn PartitionStream>
            })
            .collect()
    }
}

struct LeadsPartition {
    schema: SchemaRef,
    rx: Arc<Mutex<mpsc::Receiver<Result<RecordBatch>>>>,
}

impl fmt::Debug for LeadsPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeadsPartition")
    }
}

impl PartitionStream for LeadsPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let stream = futures::stream::unfold(self.rx.clone(), |rx| async move {
            let next = rx.lock().await.recv().await;
            next.map(|batch| (batch.map_err(DataFusionError::from), rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

fn progress_bar(progress: Arc<SourceProgress>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} · {msg}",
            )
            .expect("valid template"),
        );
        let started = Instant::now();
        loop {
            bar.set_length(SourceProgress::get(&progress.bytes_total));
            bar.set_position(SourceProgress::get(&progress.bytes_read));
            let leads = SourceProgress::get(&progress.leads);
            let rate = leads as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{leads} leads, {} rejects, {rate:.0} leads/s",
                SourceProgress::get(&progress.rejects)
            ));
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
    })
}

impl RunSummary {
    pub fn rows_per_second(&self) -> f64 {
        self.records_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "leadflow run {} done in {:.2}s",
            self.run_id,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "  files read      {}", self.files)?;
        writeln!(f, "  rows read       {}", self.records_read)?;
        writeln!(f, "  leads written   {}", self.leads_written)?;
        writeln!(f, "  rejected        {}", self.rejects)?;
        if let Some(valid) = self.valid_phones {
            let pct = 100.0 * valid as f64 / self.leads_written.max(1) as f64;
            writeln!(f, "  valid phones    {valid} ({pct:.1}%)")?;
        }
        if self.unknown_countries > 0 {
            writeln!(
                f,
                "  unknown country {} (kept as written)",
                self.unknown_countries
            )?;
        }
        if self.unkept_values > 0 {
            writeln!(
                f,
                "  not kept        {} NDJSON values under keys first seen after line {} (see the warnings)",
                self.unkept_values,
                crate::sources::files::NDJSON_SCHEMA_LINES
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
        writeln!(f, "  throughput      {:.0} rows/s", self.rows_per_second())?;
        writeln!(
            f,
            "  output          {} ({} files)",
            self.out,
            self.output_files.len() + self.usage_files.len()
        )?;
        for r in &self.reject_samples {
            let line = r.line.map(|l| format!(":{l}")).unwrap_or_default();
            writeln!(f, "  reject {}{line}: {}", r.source, r.reason)?;
        }
        if self.rejects > self.reject_samples.len() as u64 {
            writeln!(
                f,
                "  … all rejects: leadflow sql \"select * from rejects\" --data {}",
                self.out
            )?;
        }
        if let Some(manifest) = &self.manifest {
            writeln!(f, "  manifest        {manifest}")?;
        }
        if let Some(note) = self.lookups.budget_note(&self.budget) {
            writeln!(f, "warning: {note}")?;
        }
        Ok(())
    }
}
