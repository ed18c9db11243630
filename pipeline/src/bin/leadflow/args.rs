//! The command line's arguments and help text (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use leadflow_pipeline::lead::{FieldMapping, LeadOptions};
use leadflow_pipeline::sources::files::{FileSourceConfig, Format};
use leadflow_pipeline::sql::OutputFormat;

use crate::commands::default_country;

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Serve the enrichment over HTTP (`POST /v1/lookups`) into the same tables as `run`.
    #[command(
        after_help = "Examples:\n  leadflow keys new crm --org acme >> leadflow.toml     (prints the key once; keep it)\n  \
        leadflow serve --config leadflow.toml --out out --addr 127.0.0.1:8080\n  \
        curl -s localhost:8080/v1/lookups -H \"Authorization: Bearer $KEY\" \\\n       \
        -d '{\"leads\":[{\"full_name\":\"Ada Lovelace\",\"email\":\"ada@example.com\",\"country\":\"GB\"}]}'\n\n\
        Keys are [[api.keys]] in the config (their SHA-256, never the key). Each lookup is answered at once,\n\
        one result per lead in order; the leads, their provider calls and the items that were not leads are\n\
        committed to the output every [api] commit_ms (1 s). Errors are RFC 9457 problems\n\
        (application/problem+json). /metrics and /healthz are served on the same address.\n\
        SIGINT/SIGTERM: stop accepting, answer what is in flight, commit it, exit 0."
    )]
    Serve(ServeArgs),
    /// Make API keys for `leadflow serve`.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Send leads from files (CSV, NDJSON, Parquet) to a Kafka topic, one JSON message per lead.
    #[command(
        after_help = "Example:\n  leadflow produce --brokers localhost:9092 --topic leads examples/leads.csv\n\n\
        Files are read as `leadflow run` reads them (--map, --default-country); records that cannot be\n\
        leads are reported and not sent. The key of each message is its lead_id."
    )]
    Produce(ProduceArgs),
    /// Rewrite an output's small files (the stream's, one per cut) into few large ones, as one commit.
    #[command(after_help = "Examples:\n  leadflow compact --data out\n  \
        leadflow compact --data s3://leads/enriched --table enriched_leads --dt 2026-12-04 --target-mb 256\n\n\
        Each dt= partition's small files (stream cuts, recovered provider calls, earlier compactions' small\n\
        files) become files of about --target-mb, rows sorted by lead_id. Readers through leadflow (sql,\n\
        report) see the old files or the new, never both; runs, batches and streams keep writing meanwhile.\n\
        A run's own leads and rejects stay in its files (a rerun replaces them as a unit). `leadflow\n\
        stream` compacts by itself (--compact-after).\n\n\
        Exit codes: 0 done (or nothing to do); 2 bad arguments; 3 another compaction of the same\n\
        partitions committed first, or a service failed (run it again).")]
    Compact(CompactArgs),
    /// Print every row an output holds about one person, as one JSON document (a subject access request).
    #[command(
        name = "export-subject",
        after_help = "Example:\n  leadflow export-subject --data out --email ana@example.com > ana.json\n\n\
        The subject's rows are exactly those `leadflow forget --email` would erase: the enriched_leads rows\n\
        with that email (trimmed, any case) and any other row of those leads' ids, the provider_usage rows\n\
        of those ids, and the rejects rows whose raw text holds the email as a whole word. Nothing about\n\
        the subject is changed."
    )]
    ExportSubject {
        /// A run's output directory or s3:// prefix.
        #[arg(long)]
        data: String,
        /// The subject's email address.
        #[arg(long)]
        email: String,
    },
    /// Erase every row about one or more people from an output (and their entries from Redis), as one commit.
    #[command(
        after_help = "Examples:\n  leadflow forget --data out --email ana@example.com --config leadflow.toml\n  \
        leadflow forget --data s3://leads/enriched --subjects requests.csv --config leadflow.toml --dry-run\n\n\
        A subject's enriched_leads rows are those with that lead id, that email (trimmed, any case) or that\n\
        number as own or found phone; their provider_usage rows are the calls about those leads' ids; their\n\
        rejects are the rows whose raw text holds the email, the number or one of those ids, as a whole word.\n\
        Only the files holding such rows are rewritten, in one commit: readers see before or after, and the\n\
        old files are deleted from the tables when forget returns. Forgetting twice changes nothing.\n\n\
        With [redis] in --config (or --redis), the subject's cached answers, claims and serve's stored\n\
        idempotent answers are purged first: a later lookup of them asks (and pays) again.\n\n\
        The receipt, _leadflow/erasures/ID.json in the output (and on stdout), holds counts and each subject\n\
        as an HMAC-SHA256 keyed by the variable [privacy] receipt_key_env names, never in clear.\n\
        Kafka keeps its own copy of streamed messages: forget names the topics; see README, Personal data.\n\n\
        Exit codes: 0 done (or nothing held); 2 bad arguments or config; 3 other writers kept changing the\n\
        same files, or Redis did not answer (nothing was erased; run it again)."
    )]
    Forget(ForgetArgs),
    /// Drop the day partitions older than [retention] keeps, every table at once, as one commit.
    #[command(
        after_help = "Example:\n  leadflow retain --data out --config leadflow.toml --dry-run\n\n\
        [retention]\n  enriched_days = 365\n  usage_days = 730      # the billing audit\n  \
        rejects_days = 30     # raw input lines: keep them shortest\n\n\
        A table with N days keeps the dt= partitions of the last N days, today (UTC) included. The old\n\
        partitions' files leave the output in one commit and are deleted before retain returns; readers\n\
        see before or after. leadflow batch applies [retention] by itself after each publish.\n\n\
        Exit codes: 0 done (or nothing old enough); 2 bad arguments or config; 3 other writers kept\n\
        changing the same partitions (nothing was dropped; run it again)."
    )]
    Retain(RetainArgs),
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
    /// Show the order a lead's providers would be asked in, each one's estimate and evidence, and why any is skipped.
    #[command(
        after_help = "Example:\n  leadflow explain --config leadflow.toml --history out \\\n    \
        --lead '{\"lead_id\":\"l-1\",\"email\":\"ana@gmail.com\",\"country\":\"DE\",\"user_tier\":2}'\n\n\
        Under [waterfall] order = \"adaptive\" each provider's P(hit) is the posterior mean for the lead's\n\
        segment (a draw from it for the share of leads that explore), learned from --history (or the\n\
        config's [waterfall] history) and, with [redis] url, the fleet's pooled evidence. Evidence is\n\
        hits/calls at each level: * (overall), country:XX, then the segment itself. Nothing is called."
    )]
    Explain {
        /// The leadflow config whose providers and [waterfall] table to use.
        #[arg(short, long, env = "LEADFLOW_CONFIG")]
        config: PathBuf,
        /// Earlier outputs (a directory or s3:// prefix) to learn from, in place of [waterfall] history.
        #[arg(long, value_name = "DIR")]
        history: Option<String>,
        /// The lead, as a JSON object with the lead schema's fields (email, country, user_tier, lead_id, …).
        #[arg(long, value_name = "JSON")]
        lead: String,
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
pub(crate) struct BatchArgs {
    /// The date to run (YYYY-MM-DD): put into --input's {date}, and the batch's identity.
    #[arg(long)]
    pub(crate) date: chrono::NaiveDate,
    /// Where to post a Slack-compatible message when the batch ends (success or failure).
    #[arg(
        long,
        env = "LEADFLOW_WEBHOOK_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) webhook: Option<String>,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// A file, a directory, a glob ('leads/*.csv') or s3://bucket/prefix.
    #[arg(short, long)]
    pub(crate) input: String,
    /// Output directory or s3://bucket/prefix.
    #[arg(short, long, default_value = "out")]
    pub(crate) out: String,
    #[command(flatten)]
    pub(crate) leads: LeadFileArgs,
    /// The enrichment SQL over the table `leads`; default: the shipped queries/enrich.sql.
    #[arg(long, value_name = "FILE")]
    pub(crate) query: Option<PathBuf>,
    /// CSV delimiter (one character, `\t` for tab); sniffed from the header by default.
    #[arg(long)]
    pub(crate) delimiter: Option<String>,
    /// Rows per Arrow batch.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub(crate) batch_size: u32,
    /// Query threads; default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) partitions: Option<u16>,
    /// Id written to every output row; default: derived from the start time.
    #[arg(long)]
    pub(crate) run_id: Option<String>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Providers, limits, cache, budget (TOML; see examples/leadflow.toml). Without it no provider is called.
    #[arg(short, long, env = "LEADFLOW_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Share rate limits, the lookup cache, breakers and budget with other workers through this Redis
    /// (overrides [redis] url). Without either, they are kept in this process's memory.
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// Serve Prometheus /metrics and /healthz here while the run lasts, e.g. 127.0.0.1:9898.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
}

/// How lead files are read: flags `run` and `produce` share.
#[derive(Debug, clap::Args)]
pub(crate) struct LeadFileArgs {
    /// Input format; by default each file's extension decides.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
    /// Reads a lead column from a differently named input column: LEAD_COLUMN=FILE_COLUMN. Repeatable.
    #[arg(long = "map", value_name = "LEAD_COL=FILE_COL")]
    pub(crate) map: Vec<String>,
    /// Country for leads whose `country` is blank (alpha-2, alpha-3 or name).
    #[arg(long)]
    pub(crate) default_country: Option<String>,
}

impl LeadFileArgs {
    pub(crate) fn source(
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
                owner: None,
            },
            skip_output: None,
        })
    }
}

/// Flags every Kafka command shares.
#[derive(Debug, clap::Args)]
pub(crate) struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port…].
    #[arg(long, env = "KAFKA_BROKERS", value_name = "HOST:PORT")]
    pub(crate) brokers: String,
    /// The topic of lead messages.
    #[arg(long)]
    pub(crate) topic: String,
    /// A librdkafka property (security, timeouts, …): KEY=VALUE. Repeatable.
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    pub(crate) kafka_options: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StreamArgs {
    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,
    /// The consumer group: workers in one group split the partitions.
    #[arg(long, default_value = "leadflow")]
    pub(crate) group: String,
    /// Output directory or s3://bucket/prefix.
    #[arg(short, long, default_value = "out")]
    pub(crate) out: String,
    /// Providers, limits, cache, budget (TOML; see examples/leadflow.toml). Without it no provider is called.
    #[arg(short, long, env = "LEADFLOW_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Share limits, the lookup cache, breakers and budget through this Redis (overrides [redis] url);
    /// a replayed stream then pays no provider again.
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// The enrichment SQL over the table `leads`; default: the shipped queries/enrich.sql.
    #[arg(long, value_name = "FILE")]
    pub(crate) query: Option<PathBuf>,
    /// A partition's batch is written at this many messages …
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub(crate) batch_rows: u32,
    /// … or this many milliseconds after its first message.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) batch_ms: u64,
    /// Larger messages are dead letters.
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) max_message_bytes: usize,
    /// The dead-letter topic; default: TOPIC.dlq.
    #[arg(long, value_name = "TOPIC")]
    pub(crate) dlq_topic: Option<String>,
    /// Country for leads whose `country` is blank (alpha-2, alpha-3 or name).
    #[arg(long)]
    pub(crate) default_country: Option<String>,
    /// Query workers (partition p goes to worker p % N); default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) workers: Option<u16>,
    /// Id written to every output row; default: derived from the start time.
    #[arg(long)]
    pub(crate) run_id: Option<String>,
    /// Serve Prometheus /metrics and /healthz here, e.g. 0.0.0.0:9898
    /// (/healthz: 503 until the group has given this consumer its partitions).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// Exit (code 3) when the consumer group has given this consumer no
    /// partitions this many seconds after it joined, naming the last Kafka error.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) join_timeout_secs: u64,
    /// Compact the output's stream files once they are this old (one file per ~128 MB per table and
    /// day, plus the recent ones); `off` leaves them to `leadflow compact`.
    #[arg(long, default_value = "1h", value_name = "DURATION|off", value_parser = parse_optional_duration)]
    pub(crate) compact_after: OrOff,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Listen here (port 0: any free port; the log says which).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub(crate) addr: std::net::SocketAddr,
    /// Output directory or s3://bucket/prefix.
    #[arg(short, long, default_value = "out")]
    pub(crate) out: String,
    /// Providers, limits, cache, budget and [[api.keys]] (TOML).
    #[arg(short, long, env = "LEADFLOW_CONFIG")]
    pub(crate) config: PathBuf,
    /// Share limits, the lookup cache, breakers and budget through this Redis (overrides [redis] url).
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// The enrichment SQL over the table `leads`; default: the shipped queries/enrich.sql.
    #[arg(long, value_name = "FILE")]
    pub(crate) query: Option<PathBuf>,
    /// Country for leads whose `country` is blank (alpha-2, alpha-3 or name).
    #[arg(long)]
    pub(crate) default_country: Option<String>,
    /// Id written to every output row; default: derived from the start time.
    #[arg(long)]
    pub(crate) run_id: Option<String>,
    /// Compact the output's small files (one set per second of traffic) every quarter of this;
    /// `off` leaves them to `leadflow compact`.
    #[arg(long, default_value = "1h", value_name = "DURATION|off", value_parser = parse_optional_duration)]
    pub(crate) compact_after: OrOff,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// Print a new random key (once: only its hash is kept) and the [[api.keys]] block that admits it.
    #[command(after_help = "Example:\n  leadflow keys new crm --org acme\n\n\
        The key goes to stderr, the TOML block to stdout: `leadflow keys new crm --org acme >> leadflow.toml`.")]
    New {
        /// Who holds the key (named in logs and in rejects).
        name: String,
        /// The organization_id every lead and provider call made with this key carries.
        #[arg(long)]
        org: String,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    pub(crate) kafka: KafkaArgs,
    /// Files, directories, globs or s3:// prefixes of leads.
    #[arg(required = true)]
    pub(crate) inputs: Vec<String>,
    #[command(flatten)]
    pub(crate) leads: LeadFileArgs,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).multiple(true)))]
pub(crate) struct ForgetArgs {
    /// The output directory or s3:// prefix.
    #[arg(long)]
    pub(crate) data: String,
    /// A subject's email. Repeatable.
    #[arg(long, group = "subject")]
    pub(crate) email: Vec<String>,
    /// A subject's lead id. Repeatable.
    #[arg(long, group = "subject")]
    pub(crate) lead_id: Vec<String>,
    /// A subject's phone, with its country code (+4930…). Repeatable.
    #[arg(long, group = "subject")]
    pub(crate) phone: Vec<String>,
    /// A CSV of subjects, one per row, with a header naming any of email, lead_id, phone.
    #[arg(long, value_name = "FILE.csv", group = "subject")]
    pub(crate) subjects: Option<PathBuf>,
    /// The config: its [privacy] receipt_key_env (required unless --dry-run) and [redis].
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Redis to purge (overrides [redis] url).
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    pub(crate) redis: Option<String>,
    /// Say what would go, change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RetainArgs {
    /// The output directory or s3:// prefix.
    #[arg(long)]
    pub(crate) data: String,
    /// The config whose [retention] says how many days each table keeps.
    #[arg(long)]
    pub(crate) config: PathBuf,
    /// Count the days back from this date instead of today (UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) today: Option<chrono::NaiveDate>,
    /// Say what would go, change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CompactArgs {
    /// The output directory or s3:// prefix.
    #[arg(long)]
    pub(crate) data: String,
    /// Only this table (enriched_leads, provider_usage, rejects). Repeatable; default: all three.
    #[arg(long = "table", value_name = "TABLE", value_parser = ["enriched_leads", "provider_usage", "rejects"])]
    pub(crate) tables: Vec<String>,
    /// Only this day's partition (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub(crate) dt: Option<chrono::NaiveDate>,
    /// About how large a compacted file grows, in MB; files under half of it are compacted again.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub(crate) target_mb: u64,
    /// Leave stream files written more recently than this (e.g. 1h, 30m, 0).
    #[arg(long, default_value = "0", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) older_than: std::time::Duration,
}

/// `90s`, `30m`, `1h`, `2d` or `0`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}`: give a unit: s, m, h or d (e.g. 1h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit (e.g. 30m)"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: unknown unit `{unit}`; use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(
        number.saturating_mul(seconds),
    ))
}

/// A duration, or `off`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrOff(pub(crate) Option<std::time::Duration>);

/// [`parse_duration`], or `off`.
fn parse_optional_duration(text: &str) -> Result<OrOff, String> {
    match text.trim() {
        "off" | "never" => Ok(OrOff(None)),
        other => parse_duration(other)
            .map(|d| OrOff(Some(d)))
            .map_err(|e| format!("{e}, or `off`")),
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct SqlArgs {
    /// The SQL to run. Without it (and without --file or --list), an interactive shell.
    #[arg(conflicts_with_all = ["file", "list"])]
    pub(crate) query: Option<String>,
    /// Runs the SQL in a file, or a shipped analytics query by name (see --list).
    #[arg(short, long, value_name = "FILE|NAME", conflicts_with = "list")]
    pub(crate) file: Option<String>,
    /// Lists the shipped analytics queries (queries/analytics/*.sql).
    #[arg(long)]
    pub(crate) list: bool,
    /// A run's output directory or s3:// prefix, whose tables are registered.
    #[arg(long)]
    pub(crate) data: Option<String>,
    /// Registers another file or directory as a table: NAME=PATH (CSV, NDJSON or Parquet). Repeatable.
    #[arg(long = "table", value_name = "NAME=PATH")]
    pub(crate) tables: Vec<String>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) format: OutputFormat,
    /// Lets statements write files or change the session: COPY … TO, INSERT, CREATE, DROP, SET.
    /// Without it `leadflow sql` only reads.
    #[arg(long)]
    pub(crate) allow_writes: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum SchemaName {
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
