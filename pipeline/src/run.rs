//! `leadflow run`: a batch run from files to enriched Parquet.
//!
//! A blocking thread reads the input into lead batches; the `leads` table
//! hands them, through one bounded channel, to as many partitions as there
//! are cores; the enrichment SQL runs on each partition; one writer per
//! partition writes its output. Memory is bounded by the channel and the
//! writers' row-group budget, not by the input.

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use leadflow_waterfall::sandbox::ProviderStats;
use leadflow_waterfall::{Waterfall, WaterfallConfig};
use tokio::sync::{Mutex, mpsc};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};
use crate::sinks::parquet::{
    ParquetSinkConfig, PartitionedWriter, WrittenFile, conform, output_schema, prune_replaced,
    run_columns,
};
use crate::sinks::provider_usage::{LookupTally, UsageColumns, usage_batch};
use crate::sinks::rejects::{Reject, RejectBatcher, write_rejects};
use crate::sources::SourceProgress;
use crate::sources::files::{FileSource, FileSourceConfig};
use crate::storage;

/// The enrichment query shipped with leadflow (`queries/enrich.sql`).
pub const ENRICH_SQL: &str = include_str!("../../queries/enrich.sql");

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
    pub waterfall: WaterfallConfig,
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
    pub output_files: Vec<WrittenFile>,
    /// What `find_phone` did, when the query reports `lookup_status`.
    pub lookups: Option<LookupTally>,
    pub usage_files: Vec<WrittenFile>,
    /// What the in-process provider sandbox served, when the config used it.
    pub sandbox: Option<BTreeMap<String, ProviderStats>>,
    pub reject_samples: Vec<Reject>,
    pub elapsed: Duration,
    pub out: String,
}

/// Runs the enrichment over the input and writes `enriched_leads` and `rejects`.
pub async fn run(config: RunConfig) -> Result<RunSummary> {
    let started = Instant::now();
    let started_at: DateTime<Utc> = Utc::now();
    let at_micros = started_at.timestamp_micros();
    let today = started_at.date_naive();

    let source = FileSource::open(config.source.clone()).await?;
    for file in source.files_without_phone() {
        tracing::warn!(
            file,
            "no phone column found; map one with --map phone_raw=COLUMN"
        );
    }
    let files = source.files().len();
    let fingerprint = {
        let names: Vec<&str> = source.files().iter().map(|f| f.name.as_str()).collect();
        format!("{:016x}", xxh3_64(names.join("\n").as_bytes()))
    };
    let schema = source.schema().clone();
    let out = storage::create(&config.out)?;
    let waterfall = Arc::new(Waterfall::start_in_memory(config.waterfall.clone()).await?);
    if let Some(sandbox) = waterfall.sandbox() {
        tracing::info!(url = %sandbox.url(), "providers answered by the in-process sandbox");
    }

    // Plan first, so bad SQL fails before anything is read or written.
    let partitions = config.partitions.max(1);
    let (lead_tx, lead_rx) = mpsc::channel::<Result<RecordBatch>>(partitions * 2);
    let ctx = session(
        partitions,
        config.source.options.batch_size,
        waterfall.clone(),
    );
    let leads = LeadsTable::new(schema.clone(), lead_rx);
    let table = StreamingTable::try_new(schema.clone(), leads.partitions(partitions))?;
    ctx.register_table("leads", Arc::new(table))?;
    let df = ctx
        .sql(&config.query)
        .await
        .map_err(|e| Error::Usage(format!("enrichment query: {e}")))?;
    let plan = df.create_physical_plan().await?;
    let query_schema = plan.schema();
    let usage_columns = UsageColumns::find(&query_schema);
    // `provider_calls` feeds provider_usage; every other column is a lead's.
    let lead_columns: Vec<usize> = (0..query_schema.fields().len())
        .filter(|&i| usage_columns.is_none_or(|u| u.calls_index() != i))
        .collect();
    let lead_schema = Arc::new(query_schema.project(&lead_columns)?);
    let write_schema = with_run_columns(&output_schema(&lead_schema));
    let append_run_columns = write_schema.fields().len() > lead_schema.fields().len();
    let columns = OutputColumns {
        lead: lead_columns,
        valid: query_schema.index_of("phone_valid").ok(),
        status: query_schema.index_of("lookup_status").ok(),
        usage: usage_columns,
    };

    // Read.
    let progress = Arc::new(SourceProgress::default());
    let (reject_tx, reject_rx) = mpsc::channel::<Reject>(1024);
    let reader = {
        let progress = progress.clone();
        let tx = lead_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = source.read_all(lead_tx, reject_tx, progress);
            if let Err(e) = &result {
                // Fail the query too, so the run stops instead of finishing short.
                let _ = tx.blocking_send(Err(Error::Usage(format!("reading input: {e}"))));
            }
            result
        })
    };
    let rejects = tokio::spawn(write_rejects(
        reject_rx,
        RejectBatcher::new(&config.run_id, at_micros),
        PartitionedWriter::new(
            out.clone(),
            ParquetSinkConfig::new("rejects", format!("{fingerprint}-00"), None, today),
            leadflow_schemas::reject_schema(),
        ),
        5,
    ));

    // Enrich and write, one task per partition.
    let task_ctx: Arc<TaskContext> = ctx.task_ctx();
    let streams = datafusion::physical_plan::execute_stream_partitioned(plan, task_ctx)?;
    let mut writers = Vec::with_capacity(streams.len());
    for (p, stream) in streams.into_iter().enumerate() {
        let writer = PartitionedWriter::new(
            out.clone(),
            ParquetSinkConfig::new(
                "enriched_leads",
                format!("{fingerprint}-{p:02}"),
                Some("received_at"),
                today,
            ),
            write_schema.clone(),
        );
        let usage_writer = columns.usage.map(|_| {
            let mut sink = ParquetSinkConfig::new(
                "provider_usage",
                format!("{fingerprint}-{p:02}"),
                Some("started_at"),
                today,
            );
            // Usage rows are small and few per lead: a quarter of the leads'
            // buffer keeps the process's total bounded.
            sink.buffer_bytes /= 4;
            PartitionedWriter::new(out.clone(), sink, leadflow_schemas::provider_usage_schema())
        });
        let run_id = config.run_id.clone();
        writers.push(tokio::spawn(write_partition(
            stream,
            writer,
            usage_writer,
            columns.clone(),
            append_run_columns,
            run_id,
            at_micros,
        )));
    }

    let bar = (config.progress && std::io::stderr().is_terminal())
        .then(|| progress_bar(progress.clone()));
    let mut leads_written = 0;
    let mut valid_phones = 0;
    let mut output_files = Vec::new();
    let mut usage_files = Vec::new();
    let mut lookups = LookupTally::default();
    let mut first_error = None;
    for w in writers {
        match w
            .await
            .map_err(|e| Error::Usage(format!("writer task: {e}")))?
        {
            Ok(written) => {
                leads_written += written.rows;
                valid_phones += written.valid;
                output_files.extend(written.files);
                usage_files.extend(written.usage_files);
                lookups.merge(written.lookups);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let read_result = reader
        .await
        .map_err(|e| Error::Usage(format!("reader task: {e}")))?;
    let (reject_count, reject_samples, reject_files) = rejects
        .await
        .map_err(|e| Error::Usage(format!("reject task: {e}")))??;
    if let Some(bar) = bar {
        bar.abort();
        eprint!("\r\x1b[2K");
    }
    read_result?;
    if let Some(e) = first_error {
        return Err(e);
    }
    let file_prefix = format!("part-{fingerprint}-");
    prune_replaced(&out, "enriched_leads", &file_prefix, &output_files).await?;
    prune_replaced(&out, "rejects", &file_prefix, &reject_files).await?;
    if columns.usage.is_some() {
        prune_replaced(&out, "provider_usage", &file_prefix, &usage_files).await?;
    }
    output_files.sort_by(|a, b| a.path.cmp(&b.path));
    usage_files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(RunSummary {
        run_id: config.run_id,
        files,
        records_read: SourceProgress::get(&progress.records_read),
        leads_written,
        rejects: reject_count,
        valid_phones: columns.valid.map(|_| valid_phones),
        unknown_countries: SourceProgress::get(&progress.unknown_countries),
        output_files,
        lookups: columns.status.map(|_| lookups),
        usage_files,
        sandbox: waterfall.sandbox().map(|s| s.stats()),
        reject_samples,
        elapsed: started.elapsed(),
        out: config.out,
    })
}

/// A DataFusion session with leadflow's UDFs, `find_phone` over `waterfall`.
pub fn session(partitions: usize, batch_size: usize, waterfall: Arc<Waterfall>) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_batch_size(batch_size)
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    leadflow_udfs::register_all(&ctx);
    leadflow_udfs::register_waterfall(&ctx, waterfall);
    ctx
}

fn with_run_columns(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let has = |name: &str| schema.index_of(name).is_ok();
    if !has("run_id") && !has("enriched_at") {
        for f in leadflow_schemas::enrichment_fields() {
            if f.name() == "run_id" || f.name() == "enriched_at" {
                fields.push(f);
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// Where, in the query's output, the columns the writers need are.
#[derive(Debug, Clone)]
struct OutputColumns {
    /// The columns written to `enriched_leads`.
    lead: Vec<usize>,
    valid: Option<usize>,
    status: Option<usize>,
    usage: Option<UsageColumns>,
}

/// What one partition's writer wrote.
struct PartitionWritten {
    rows: u64,
    valid: u64,
    files: Vec<WrittenFile>,
    usage_files: Vec<WrittenFile>,
    lookups: LookupTally,
}

async fn write_partition(
    mut stream: SendableRecordBatchStream,
    mut writer: PartitionedWriter,
    mut usage_writer: Option<PartitionedWriter>,
    columns: OutputColumns,
    append_run_columns: bool,
    run_id: String,
    at_micros: i64,
) -> Result<PartitionWritten> {
    let schema = writer.schema().clone();
    let mut rows = 0u64;
    let mut valid = 0u64;
    let mut lookups = LookupTally::default();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(i) = columns.valid
            && batch.column(i).data_type() == &DataType::Boolean
        {
            valid += batch.column(i).as_boolean().true_count() as u64;
        }
        if let Some(i) = columns.status {
            lookups.add_statuses(batch.column(i))?;
        }
        if let (Some(usage), Some(usage_writer)) = (columns.usage, usage_writer.as_mut())
            && let Some(calls) = usage_batch(&batch, usage, &run_id, usage_writer.schema())?
        {
            lookups.add_usage(&calls)?;
            usage_writer.write(&calls).await?;
        }
        let mut lead: Vec<_> = columns
            .lead
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        if append_run_columns {
            lead.extend(run_columns(batch.num_rows(), &run_id, at_micros));
        }
        let batch = conform(&lead, &schema)?;
        rows += batch.num_rows() as u64;
        writer.write(&batch).await?;
    }
    let usage_files = match usage_writer {
        Some(w) => w.close().await?,
        None => Vec::new(),
    };
    Ok(PartitionWritten {
        rows,
        valid,
        files: writer.close().await?,
        usage_files,
        lookups,
    })
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

fn progress_bar(progress: Arc<SourceProgress>) -> tokio::task::JoinHandle<()> {
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
        if let Some(lookups) = &self.lookups {
            write!(f, "{lookups}")?;
        }
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
        Ok(())
    }
}
