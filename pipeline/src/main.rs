//! The `leadflow` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use leadflow_pipeline::config::LeadflowConfig;
use leadflow_pipeline::error::Fault;
use leadflow_pipeline::lead::{FieldMapping, LeadOptions};
use leadflow_pipeline::produce::ProduceConfig;
use leadflow_pipeline::run::{ENRICH_SQL, RunConfig};
use leadflow_pipeline::sources::files::{FileSourceConfig, Format};
use leadflow_pipeline::sources::kafka::KafkaSourceConfig;
use leadflow_pipeline::sql::{self, OutputFormat};
use leadflow_pipeline::stream::StreamConfig;
use leadflow_sandbox::Sandbox;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: pages freed by a batch go back to
/// the system within a second (the default keeps them ten), so peak RSS is
/// what the run holds, not what it churned through. `_RJEM_MALLOC_CONF` in
/// the environment still overrides.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string jemalloc reads through a plain `const char *`.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: it points at a string literal, immutable for the process's life.
unsafe impl Sync for MallocConf {}

/// `eprint!`/`eprintln!`/`print!`/`println!` that never panic: a closed
/// stderr or stdout (`2>&-`, `… 2>&1 | head -1`, a reader gone) loses the
/// text, not the command's result or its exit code.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Phones for your sales leads: leadflow reads leads from CSV, NDJSON or Parquet files (on disk or
/// S3) or from Kafka, checks each lead's phone, asks paid providers in turn for the missing ones
/// (within your rate limits and budget), and writes Parquet tables you can query with `leadflow sql`.
#[derive(Debug, Parser)]
#[command(
    name = "leadflow",
    version,
    long_about = None,
    propagate_version = true,
    after_help = "Exit codes: 0 done; 1 leadflow failed (a bug); 2 the command, config, SQL or input\n\
    is wrong (fix it, then rerun); 3 a service or the machine failed (a rerun may succeed);\n\
    4 (batch) done, but the provider budget ran out before every lead was looked up."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrich leads from files (CSV, NDJSON, Parquet; local or s3://) into Parquet.
    #[command(
        after_help = "Examples:\n  leadflow run --input examples/leads.csv --out out --config examples/leadflow.toml\n  \
        leadflow run --input 'exports/*.csv' --out s3://leads/enriched --map phone_raw=Mobile --default-country US\n\n\
        Output: OUT/enriched_leads/, OUT/provider_usage/ and OUT/rejects/, each dt=YYYY-MM-DD/*.parquet.\n\
        Without --config no provider is called and lookup_status is `not_run`.\n\
        S3: credentials, region and endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,\n\
        AWS_REGION and AWS_ENDPOINT_URL (for MinIO: AWS_ENDPOINT_URL=http://localhost:9000)."
    )]
    Run(RunArgs),
    /// Enrich one date's leads: the nightly run, idempotent per date, with a manifest and a webhook.
    #[command(
        after_help = "Examples:\n  leadflow batch --date 2026-11-26 --input 's3://leads/incoming/dt={date}/' --out s3://leads/enriched --config leadflow.toml\n  \
        leadflow batch --date $(date -u -d yesterday +%F) --input 'incoming/{date}/*.csv' --out out --webhook https://hooks.slack.com/services/…\n\n\
        {date} in --input becomes the date. The output goes to the same tables as `run`; a rerun of a date\n\
        replaces that date's earlier batch output and nothing else, in one step when it is complete, so a\n\
        failed run leaves the date's previous output as it was. OUT/_batches/dt=DATE/_manifest.json is written\n\
        last (inputs and sizes, rows read/written/rejected, spend per provider, outputs with row counts).\n\
        --webhook (or LEADFLOW_WEBHOOK_URL) gets a Slack-compatible message on success and on failure.\n\n\
        Exit codes: 0 done; 2 the command, config or input is wrong (rerunning will not help);\n\
        3 a service or the machine failed (rerun later); 4 done, but the provider budget ran out and some\n\
        leads were not looked up (raise the budget and rerun the date); 1 leadflow failed (a bug)."
    )]
    Batch(BatchArgs),
    /// Enrich leads from a Kafka topic continuously into the same Parquet tables as `run`.
    #[command(
        after_help = "Examples:\n  leadflow stream --brokers localhost:9092 --topic leads --group enrich --out out --config examples/leadflow.toml\n  \
        leadflow stream --brokers kafka:9092 --topic leads --group enrich --out s3://leads/enriched --redis redis://redis:6379\n\n\
        Messages are JSON leads (`leadflow schema lead-json`), keyed by lead_id. Each partition's messages are\n\
        cut into batches (--batch-rows or --batch-ms, whichever comes first), enriched and written; offsets are\n\
        committed after the files are. File names carry topic, partition and offsets, and the output is the\n\
        ledger: a restart skips what is written even if a commit was lost. Bad messages go to --dlq-topic\n\
        and to rejects. More workers with the same --group split the partitions.\n\
        SIGINT/SIGTERM: stop fetching, write and commit what is held, exit 0; a second signal exits at once."
    )]
    Stream(StreamArgs),
    /// Send leads from files (CSV, NDJSON, Parquet) to a Kafka topic, one JSON message per lead.
    #[command(
        after_help = "Example:\n  leadflow produce --brokers localhost:9092 --topic leads examples/leads.csv\n\n\
        Files are read as `leadflow run` reads them (--map, --default-country); records that cannot be\n\
        leads are reported and not sent. The key of each message is its lead_id."
    )]
    Produce(ProduceArgs),
    /// Run SQL over a run's outputs (enriched_leads, rejects, provider_usage) and extra files.
    #[command(
        after_help = "Examples:\n  leadflow sql \"select phone_type, count(*) from enriched_leads group by 1\" --data out\n  \
        leadflow sql \"select reason, count(*) from rejects group by 1\" --data out --format csv\n  \
        leadflow sql \"select normalize_phone('020 7183 8750', 'GB')\"\n  \
        leadflow sql --data out --file provider_scorecard      (a shipped query; --list names them)\n  \
        leadflow sql --data out                                (an interactive shell)"
    )]
    Sql(SqlArgs),
    /// Write a self-contained HTML report (cards, funnel, provider scorecard, charts) of a run's output.
    #[command(
        after_help = "Example:\n  leadflow report --data out --out report.html\n\n\
        The page needs no network: styles, script and data are inlined. Every number on it is a row\n\
        of a shipped analytics query (leadflow sql --list), run over --data."
    )]
    Report {
        /// A run's output directory or s3:// prefix.
        #[arg(long)]
        data: String,
        /// The HTML file to write.
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
    },
    /// List leadflow's SQL functions with their documentation.
    Functions,
    /// Serve the provider sandbox: Orion, Astra, Nimbus and Twilio contracts with made-up answers.
    #[command(
        after_help = "Each provider is served under /NAME/… (e.g. http://localhost:8700/orion/v1/phone/find);\n\
        point a provider's base_url at http://localhost:PORT/NAME. GET /stats counts what was served.\n\
        Hit rates, latency, error and 429 rates come from the [sandbox] table of --config."
    )]
    Sandbox {
        /// Port to listen on (127.0.0.1 unless --host says otherwise).
        #[arg(long, default_value_t = 8700)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// A leadflow config file whose [sandbox] table sets the answers.
        #[arg(long, env = "LEADFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a schema: the JSON Schema of a Kafka lead message, or an Arrow schema.
    Schema {
        #[arg(value_enum)]
        which: SchemaName,
    },
    /// What the fleet shares in Redis: permits used per provider, breakers, spend today, cache, workers.
    #[command(
        after_help = "Example:\n  leadflow status --config leadflow.toml --redis redis://localhost:6379\n\n\
        Reads the providers, window and [redis] key_prefix from the config.\n\
        The key layout is in ARCHITECTURE.md (\"Shared state in Redis\");\n\
        one provider's usage: redis-cli GET 'leadflow:{limit:orion}:used'"
    )]
    Status {
        /// The leadflow config whose providers and [redis] table to read.
        #[arg(short, long, env = "LEADFLOW_CONFIG")]
        config: PathBuf,
        /// The Redis to read (overrides [redis] url).
        #[arg(long, env = "REDIS_URL", value_name = "URL")]
        redis: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct BatchArgs {
    /// The date to run (YYYY-MM-DD): put into --input's {date}, and the batch's identity.
    #[arg(long)]
    date: chrono::NaiveDate,
    /// Where to post a Slack-compatible message when the batch ends (success or failure).
    #[arg(
        long,
        env = "LEADFLOW_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    webhook: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A file, a directory, a glob ('leads/*.csv') or s3://bucket/prefix.
    #[arg(short, long)]
    input: String,
    /// Output directory or s3://bucket/prefix.
    #[arg(short, long, default_value = "out")]
    out: String,
    #[command(flatten)]
    leads: LeadFileArgs,
    /// The enrichment SQL over the table `leads`; default: the shipped queries/enrich.sql.
    #[arg(long, value_name = "FILE")]
    query: Option<PathBuf>,
    /// CSV delimiter (one character, `\t` for tab); sniffed from the header by default.
    #[arg(long)]
    delimiter: Option<String>,
    /// Rows per Arrow batch.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    batch_size: u32,
    /// Query threads; default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    partitions: Option<u16>,
    /// Id written to every output row; default: derived from the start time.
    #[arg(long)]
    run_id: Option<String>,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Providers, limits, cache, budget (TOML; see examples/leadflow.toml). Without it no provider is called.
    #[arg(short, long, env = "LEADFLOW_CONFIG")]
    config: Option<PathBuf>,
    /// Share rate limits, the lookup cache, breakers and budget with other workers through this Redis
    /// (overrides [redis] url). Without either, they are kept in this process's memory.
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    redis: Option<String>,
    /// Serve Prometheus /metrics and /healthz here while the run lasts, e.g. 127.0.0.1:9898.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
}

/// How lead files are read: flags `run` and `produce` share.
#[derive(Debug, clap::Args)]
struct LeadFileArgs {
    /// Input format; by default each file's extension decides.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Reads a lead column from a differently named input column: LEAD_COLUMN=FILE_COLUMN. Repeatable.
    #[arg(long = "map", value_name = "LEAD_COL=FILE_COL")]
    map: Vec<String>,
    /// Country for leads whose `country` is blank (alpha-2, alpha-3 or name).
    #[arg(long)]
    default_country: Option<String>,
}

impl LeadFileArgs {
    fn source(
        &self,
        input: String,
        batch_size: usize,
        delimiter: Option<u8>,
    ) -> anyhow::Result<FileSourceConfig> {
        Ok(FileSourceConfig {
            input,
            format: self.format,
            mapping: FieldMapping::parse(&self.map)?,
            delimiter,
            options: LeadOptions {
                batch_size,
                default_country: default_country(self.default_country.as_deref())?,
            },
            skip_output: None,
        })
    }
}

/// Flags every Kafka command shares.
#[derive(Debug, clap::Args)]
struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port…].
    #[arg(long, env = "KAFKA_BROKERS", value_name = "HOST:PORT")]
    brokers: String,
    /// The topic of lead messages.
    #[arg(long)]
    topic: String,
    /// A librdkafka property (security, timeouts, …): KEY=VALUE. Repeatable.
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka_options: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct StreamArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The consumer group: workers in one group split the partitions.
    #[arg(long, default_value = "leadflow")]
    group: String,
    /// Output directory or s3://bucket/prefix.
    #[arg(short, long, default_value = "out")]
    out: String,
    /// Providers, limits, cache, budget (TOML; see examples/leadflow.toml). Without it no provider is called.
    #[arg(short, long, env = "LEADFLOW_CONFIG")]
    config: Option<PathBuf>,
    /// Share limits, the lookup cache, breakers and budget through this Redis (overrides [redis] url);
    /// a replayed stream then pays no provider again.
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    redis: Option<String>,
    /// The enrichment SQL over the table `leads`; default: the shipped queries/enrich.sql.
    #[arg(long, value_name = "FILE")]
    query: Option<PathBuf>,
    /// A partition's batch is written at this many messages …
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    batch_rows: u32,
    /// … or this many milliseconds after its first message.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    batch_ms: u64,
    /// Larger messages are dead letters.
    #[arg(long, default_value_t = 1 << 20)]
    max_message_bytes: usize,
    /// The dead-letter topic; default: TOPIC.dlq.
    #[arg(long, value_name = "TOPIC")]
    dlq_topic: Option<String>,
    /// Country for leads whose `country` is blank (alpha-2, alpha-3 or name).
    #[arg(long)]
    default_country: Option<String>,
    /// Query workers (partition p goes to worker p % N); default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
    /// Id written to every output row; default: derived from the start time.
    #[arg(long)]
    run_id: Option<String>,
    /// Serve Prometheus /metrics and /healthz here, e.g. 0.0.0.0:9898
    /// (/healthz: 503 until the group has given this consumer its partitions).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Exit (code 3) when the consumer group has given this consumer no
    /// partitions this many seconds after it joined, naming the last Kafka error.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    join_timeout_secs: u64,
}

#[derive(Debug, clap::Args)]
struct ProduceArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Files, directories, globs or s3:// prefixes of leads.
    #[arg(required = true)]
    inputs: Vec<String>,
    #[command(flatten)]
    leads: LeadFileArgs,
}

#[derive(Debug, clap::Args)]
struct SqlArgs {
    /// The SQL to run. Without it (and without --file or --list), an interactive shell.
    #[arg(conflicts_with_all = ["file", "list"])]
    query: Option<String>,
    /// Runs the SQL in a file, or a shipped analytics query by name (see --list).
    #[arg(short, long, value_name = "FILE|NAME", conflicts_with = "list")]
    file: Option<String>,
    /// Lists the shipped analytics queries (queries/analytics/*.sql).
    #[arg(long)]
    list: bool,
    /// A run's output directory or s3:// prefix, whose tables are registered.
    #[arg(long)]
    data: Option<String>,
    /// Registers another file or directory as a table: NAME=PATH (CSV, NDJSON or Parquet). Repeatable.
    #[arg(long = "table", value_name = "NAME=PATH")]
    tables: Vec<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Lets statements write files or change the session: COPY … TO, INSERT, CREATE, DROP, SET.
    /// Without it `leadflow sql` only reads.
    #[arg(long)]
    allow_writes: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchemaName {
    /// JSON Schema of one lead message on Kafka.
    LeadJson,
    /// Arrow schema of the `leads` table (without extras).
    Lead,
    /// Arrow schema of `enriched_leads` (without extras).
    EnrichedLead,
    /// Arrow schema of `provider_usage`.
    ProviderUsage,
    /// Arrow schema of `rejects`.
    Reject,
}

fn main() {
    let cli = Cli::parse();
    init_logging();
    // Queries are planned on this thread and run on the runtime's: both
    // get the stack a query nested `sql::MAX_NESTING` deep needs.
    let command = std::thread::Builder::new()
        .name("leadflow".into())
        .stack_size(sql::STACK_BYTES)
        .spawn(move || execute(cli))
        .expect("the command's thread starts");
    let result = match command.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    if let Err(e) = result {
        errln!(
            "error: {}{}",
            report(&e),
            out_of_space(&e).unwrap_or_default()
        );
        std::process::exit(exit_code(&e));
    }
}

/// What to do when the error is a full or read-only disk.
fn out_of_space(e: &anyhow::Error) -> Option<&'static str> {
    use std::io::ErrorKind;
    let io = e.chain().find_map(leadflow_pipeline::error::out_of_space)?;
    Some(match io.kind() {
        ErrorKind::StorageFull => " (the disk is full: free space or write elsewhere, then rerun)",
        ErrorKind::QuotaExceeded => {
            " (the disk quota is exceeded: free space or write elsewhere, then rerun)"
        }
        _ => " (the file system is read-only: write elsewhere)",
    })
}

/// The exit code of a failed command.
fn exit_code(e: &anyhow::Error) -> i32 {
    if out_of_space(e).is_some() {
        return Fault::Service.exit_code();
    }
    // Our own checks of flags and files are the user's to fix, like
    // everything the pipeline calls `Fault::User`.
    e.downcast_ref::<leadflow_pipeline::Error>()
        .map_or(Fault::User, leadflow_pipeline::Error::fault)
        .exit_code()
}

/// The error and its causes on one line, each said once: our errors (and
/// DataFusion's) already print the cause they wrap.
fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(sql::STACK_BYTES)
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Batch(args) => batch(args).await,
            Command::Stream(args) => stream(args).await,
            Command::Produce(args) => produce(args).await,
            Command::Sql(args) => sql_command(args).await,
            Command::Functions => {
                out!("{}", sql::functions_help());
                Ok(())
            }
            Command::Report { data, out } => {
                let started = std::time::Instant::now();
                let bytes = leadflow_pipeline::report::write(&data, &out).await?;
                errln!(
                    "wrote {} ({} KB) in {:.1} s",
                    out.display(),
                    bytes.div_ceil(1024),
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Command::Sandbox { port, host, config } => sandbox(host, port, config).await,
            Command::Status { config, redis } => status(&config, redis).await,
            Command::Schema { which } => {
                match which {
                    SchemaName::LeadJson => {
                        outln!(
                            "{}",
                            serde_json::to_string_pretty(&leadflow_schemas::lead_json_schema())?
                        )
                    }
                    SchemaName::Lead => outln!("{:#?}", leadflow_schemas::lead_schema([])),
                    SchemaName::EnrichedLead => {
                        outln!("{:#?}", leadflow_schemas::enriched_lead_schema([]))
                    }
                    SchemaName::ProviderUsage => {
                        outln!("{:#?}", leadflow_schemas::provider_usage_schema())
                    }
                    SchemaName::Reject => outln!("{:#?}", leadflow_schemas::reject_schema()),
                }
                Ok(())
            }
        }
    })
}

async fn sql_command(args: SqlArgs) -> anyhow::Result<()> {
    if args.list {
        out!("{}", leadflow_pipeline::analytics::list());
        return Ok(());
    }
    let writes = if args.allow_writes {
        sql::Writes::Allowed
    } else {
        sql::Writes::Refused(sql::SQL_READS_ONLY)
    };
    let query = match (args.query, args.file) {
        (Some(query), _) => query,
        (None, Some(file)) => read_sql_file(&file)?,
        (None, None) => {
            let (ctx, tables) = sql::context(args.data.as_deref(), &args.tables).await?;
            return Ok(leadflow_pipeline::shell::run(ctx, &tables, writes, args.format).await?);
        }
    };
    let (ctx, _) = sql::context(args.data.as_deref(), &args.tables).await?;
    let mut stdout = ClosedPipe::watch(std::io::stdout().lock());
    match sql::execute(&ctx, &query, writes, args.format, &mut stdout).await {
        // The reader went away (`| head`): it has what it wanted.
        Err(_) if stdout.closed => Ok(()),
        result => result.map(drop).map_err(Into::into),
    }
}

/// A writer that notes when its reader has closed the pipe, so a command
/// whose output is cut short (`leadflow sql … | head`) ends quietly with 0,
/// as `cat` or `grep` do.
struct ClosedPipe<W> {
    inner: W,
    closed: bool,
}

impl<W: std::io::Write> ClosedPipe<W> {
    fn watch(inner: W) -> Self {
        Self {
            inner,
            closed: false,
        }
    }

    fn note<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
        result
    }
}

impl<W: std::io::Write> std::io::Write for ClosedPipe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}

/// `--file`: a path, else the name of a shipped analytics query.
fn read_sql_file(file: &str) -> anyhow::Result<String> {
    let path = std::path::Path::new(file);
    if path.is_file() {
        return std::fs::read_to_string(path).with_context(|| format!("reading --file {file}"));
    }
    match leadflow_pipeline::analytics::find(file) {
        Some(q) => Ok(q.sql.to_string()),
        None => bail!(
            "--file {file}: no such file, and no shipped query of that name (leadflow sql --list names them)"
        ),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.metrics_addr {
        leadflow_pipeline::telemetry::serve(addr).await?;
    }
    let config = run_config(args, "run")?;
    let summary = leadflow_pipeline::run::run(config).await?;
    err!("{summary}");
    Ok(())
}

async fn batch(args: BatchArgs) -> anyhow::Result<()> {
    use leadflow_pipeline::batch::{self, BatchConfig, webhook};
    if let Some(addr) = args.run.metrics_addr {
        leadflow_pipeline::telemetry::serve(addr).await?;
    }
    let date = args.date;
    let out = args.run.out.clone();
    let hook = args.webhook.map(webhook::Webhook::new);
    let result = async {
        let mut run = args.run;
        run.input = batch::input_for(&run.input, date)?;
        let config = run_config(run, &format!("batch-{date}"))?;
        anyhow::Ok(batch::run(BatchConfig { date, run: config }).await?)
    }
    .await;
    match result {
        Ok(report) => {
            err!("{}", report.summary);
            if let Some(hook) = &hook {
                hook.send(&webhook::success(&report, &out)).await;
            }
            // The summary's last line said what the budget left undone.
            let (leads, numbers) = report.budget_exhausted();
            if leads + numbers > 0 {
                std::process::exit(batch::EXIT_BUDGET_EXHAUSTED);
            }
            Ok(())
        }
        Err(e) => {
            if let Some(hook) = &hook {
                let code = exit_code(&e);
                hook.send(&webhook::failure(date, &out, &report(&e), code))
                    .await;
            }
            Err(e)
        }
    }
}

/// A run's config from its flags; `run_id` defaults to `prefix` and the time.
fn run_config(args: RunArgs, prefix: &str) -> anyhow::Result<RunConfig> {
    let query = read_query(args.query.as_deref())?;
    let delimiter = match args.delimiter.as_deref() {
        None => None,
        Some("\\t") | Some("tab") => Some(b'\t'),
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => bail!("--delimiter `{d}`: expected one character, e.g. ';' or '\\t'"),
    };
    let run_id = args.run_id.unwrap_or_else(|| new_run_id(prefix));
    Ok(RunConfig {
        source: args
            .leads
            .source(args.input, args.batch_size as usize, delimiter)?,
        out: args.out,
        query,
        run_id,
        partitions: args.partitions.map_or_else(cores, usize::from),
        progress: !args.no_progress,
        providers: with_redis(load_config(args.config.as_deref())?, args.redis),
        batch: None,
    })
}

async fn stream(args: StreamArgs) -> anyhow::Result<()> {
    // Before anything starts or connects.
    leadflow_pipeline::sources::kafka::refuse_owned_options(
        &key_values(&args.kafka.kafka_options)?,
        leadflow_pipeline::sources::kafka::STREAM_OWNED_OPTIONS,
    )?;
    leadflow_pipeline::telemetry::not_ready(format!(
        "consumer group `{}` has given this consumer no partitions yet",
        args.group
    ));
    if let Some(addr) = args.metrics_addr {
        leadflow_pipeline::telemetry::serve(addr).await?;
    }
    let topic = args.kafka.topic.clone();
    let config = StreamConfig {
        source: KafkaSourceConfig {
            brokers: args.kafka.brokers,
            dlq_topic: args.dlq_topic.unwrap_or_else(|| format!("{topic}.dlq")),
            topic,
            group: args.group,
            batch_rows: args.batch_rows as usize,
            batch_time: std::time::Duration::from_millis(args.batch_ms),
            max_message_bytes: args.max_message_bytes,
            default_country: default_country(args.default_country.as_deref())?,
            options: key_values(&args.kafka.kafka_options)?,
            join_timeout: std::time::Duration::from_secs(args.join_timeout_secs),
        },
        out: args.out,
        query: read_query(args.query.as_deref())?,
        run_id: args.run_id.unwrap_or_else(|| new_run_id("stream")),
        workers: args.workers.map_or_else(cores, usize::from),
        providers: with_redis(load_config(args.config.as_deref())?, args.redis),
    };
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_signal(stop.clone()));
    let summary = leadflow_pipeline::stream::stream(config, stop).await?;
    err!("{summary}");
    Ok(())
}

/// The first SIGINT or SIGTERM asks the stream to stop (write and commit
/// what it holds); a second exits at once, which the ledger makes safe.
async fn stop_on_signal(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    errln!(
        "leadflow: stopping: writing and committing what is held (a second signal exits at once)"
    );
    stop.store(true, Ordering::Relaxed);
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    errln!("leadflow: second signal: exiting now; a restart skips what is written");
    std::process::exit(130);
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let options = key_values(&args.kafka.kafka_options)?;
    leadflow_pipeline::sources::kafka::refuse_owned_options(
        &options,
        leadflow_pipeline::produce::PRODUCE_OWNED_OPTIONS,
    )?;
    let mut total = 0u64;
    for input in args.inputs {
        let config = ProduceConfig {
            source: args.leads.source(input.clone(), 8192, None)?,
            brokers: args.kafka.brokers.clone(),
            topic: args.kafka.topic.clone(),
            options: options.clone(),
        };
        let produced = leadflow_pipeline::produce::produce(config).await?;
        for r in &produced.rejects {
            let line = r.line.map(|l| format!(":{l}")).unwrap_or_default();
            errln!("not sent {}{line}: {}", r.source, r.reason);
        }
        errln!(
            "{input}: {} leads sent to `{}`, {} records not sent",
            produced.sent,
            args.kafka.topic,
            produced.rejects.len()
        );
        total += produced.sent;
    }
    errln!("{total} leads sent");
    Ok(())
}

fn read_query(path: Option<&std::path::Path>) -> anyhow::Result<String> {
    Ok(match path {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --query {}", path.display()))?,
        None => ENRICH_SQL.to_string(),
    })
}

fn default_country(country: Option<&str>) -> anyhow::Result<Option<&'static str>> {
    country
        .map(|c| {
            leadflow_phone::resolve_country(c).with_context(|| {
                format!("--default-country `{c}` names no country (use e.g. US, DEU or Germany)")
            })
        })
        .transpose()
}

/// `KEY=VALUE` flags as pairs.
fn key_values(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("--kafka `{pair}`: expected KEY=VALUE, e.g. security.protocol=SSL"),
        })
        .collect()
}

fn new_run_id(kind: &str) -> String {
    format!("{kind}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `--redis` (or `REDIS_URL`) over the config's `[redis] url`.
fn with_redis(mut config: LeadflowConfig, url: Option<String>) -> LeadflowConfig {
    if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
        config.redis.url = Some(url);
    }
    config
}

async fn status(config: &std::path::Path, redis: Option<String>) -> anyhow::Result<()> {
    let config = with_redis(LeadflowConfig::load(config)?, redis);
    let Some(url) = config.redis.url.clone() else {
        bail!("no Redis to read: set [redis] url in the config, --redis or REDIS_URL");
    };
    let fleet = leadflow_fleet::Fleet::observe(&url, config.redis.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let status = fleet
        .status(&config.waterfall(|name| name.to_string()))
        .await
        .map_err(|e| {
            leadflow_pipeline::Error::Unavailable(format!(
                "{e} at {}",
                leadflow_fleet::redacted(&url)
            ))
        })?;
    outln!("{status}");
    Ok(())
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<LeadflowConfig> {
    Ok(match path {
        Some(path) => LeadflowConfig::load(path)?,
        None => LeadflowConfig::default(),
    })
}

async fn sandbox(host: std::net::IpAddr, port: u16, config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load_config(config.as_deref())?;
    let sandbox = Sandbox::start(config.sandbox, (host, port).into())
        .await
        .with_context(|| format!("listening on {host}:{port}"))?;
    errln!(
        "provider sandbox on {} — e.g. base_url = \"{}\"; stats at {}/stats; Ctrl-C stops",
        sandbox.url(),
        sandbox.base_url("orion"),
        sandbox.url()
    );
    tokio::signal::ctrl_c().await?;
    for (provider, stats) in sandbox.stats() {
        errln!("{provider}: {stats:?}");
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADFLOW_LOG")
        // The metrics server's address is said even at the default level:
        // with `--metrics-addr 127.0.0.1:0` nothing else tells it.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,leadflow_pipeline::telemetry=info")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its own report of a failed write goes through `eprintln!`, which
        // panics when stderr is closed: a lost log line must not end the run.
        .log_internal_errors(false);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}
