//! What each command does, from its parsed arguments.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use leadflow_pipeline::config::LeadflowConfig;
use leadflow_pipeline::produce::ProduceConfig;
use leadflow_pipeline::run::{ENRICH_SQL, RunConfig};
use leadflow_pipeline::sources::kafka::KafkaSourceConfig;
use leadflow_pipeline::sql;
use leadflow_pipeline::stream::StreamConfig;
use leadflow_sandbox::Sandbox;

use crate::args::*;
use crate::{exit_code, report};

pub(crate) async fn sql_command(args: SqlArgs) -> anyhow::Result<()> {
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
pub(crate) fn read_sql_file(file: &str) -> anyhow::Result<String> {
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

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.metrics_addr {
        leadflow_pipeline::telemetry::serve(addr).await?;
    }
    let config = run_config(args, "run")?;
    let summary = leadflow_pipeline::run::run(config).await?;
    err!("{summary}");
    Ok(())
}

pub(crate) async fn batch(args: BatchArgs) -> anyhow::Result<()> {
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
            if let Some(retained) = &report.retained {
                print_retained(&out, retained, false);
            }
            if let Some(hook) = &hook {
                hook.send(&webhook::success(&report, &out)).await;
            }
            // The summary's last line said what the budget left undone.
            if report.summary.lookups.budget_ran_out() {
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
pub(crate) fn run_config(args: RunArgs, prefix: &str) -> anyhow::Result<RunConfig> {
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
        job: None,
    })
}

pub(crate) async fn stream(args: StreamArgs) -> anyhow::Result<()> {
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
        compact_after: args.compact_after.0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_signal(stop.clone()));
    let summary = leadflow_pipeline::stream::stream(config, stop).await?;
    err!("{summary}");
    Ok(())
}

pub(crate) async fn compact(args: CompactArgs) -> anyhow::Result<()> {
    use leadflow_pipeline::publish::compact::{CompactOptions, compact};
    let location = leadflow_pipeline::storage::open(&args.data)?;
    let options = CompactOptions {
        tables: args.tables,
        dt: args.dt,
        target_bytes: args.target_mb * 1024 * 1024,
        older_than: args.older_than,
        ..Default::default()
    };
    let done = compact(&location, &options).await?;
    match done.version {
        None if !done.failed.is_empty() => {}
        None => errln!("{}: nothing to compact", args.data),
        Some(version) => errln!(
            "{}: version {version}: {} partition(s), {} files ({:.1} MB) → {} files ({:.1} MB), {} rows{}",
            args.data,
            done.dirs,
            done.files_in,
            done.bytes_in as f64 / 1e6,
            done.files_out,
            done.bytes_out as f64 / 1e6,
            done.rows,
            match done.leftovers {
                0 => String::new(),
                n => format!("; {n} file(s) an earlier compaction left behind deleted"),
            }
        ),
    }
    if !done.failed.is_empty() {
        bail!(
            "{} partition(s) could not be compacted and were left as they are: {}",
            done.failed.len(),
            done.failed.join("; ")
        );
    }
    Ok(())
}

/// The first SIGINT or SIGTERM asks the stream to stop (write and commit
/// what it holds); a second exits at once, which the ledger makes safe.
pub(crate) async fn stop_on_signal(stop: Arc<AtomicBool>) {
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

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use leadflow_pipeline::serve::ServeConfig;
    let config = ServeConfig {
        addr: args.addr,
        out: args.out,
        query: read_query(args.query.as_deref())?,
        run_id: args.run_id.unwrap_or_else(|| new_run_id("serve")),
        providers: with_redis(load_config(Some(&args.config))?, args.redis),
        default_country: default_country(args.default_country.as_deref())?,
        compact_after: args.compact_after.0,
    };
    let stop = async {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            errln!("leadflow: stopping: answering the requests in flight and committing them");
        } else {
            std::future::pending::<()>().await;
        }
    };
    let summary = leadflow_pipeline::serve::serve(config, stop).await?;
    errln!(
        "leadflow serve stopped: {} requests, {} leads written, {} rejects, {} provider calls, {} commits",
        summary.requests,
        summary.leads_written,
        summary.rejects,
        summary.usage_rows,
        summary.commits
    );
    Ok(())
}

pub(crate) async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
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

pub(crate) fn read_query(path: Option<&std::path::Path>) -> anyhow::Result<String> {
    Ok(match path {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --query {}", path.display()))?,
        None => ENRICH_SQL.to_string(),
    })
}

pub(crate) fn default_country(country: Option<&str>) -> anyhow::Result<Option<&'static str>> {
    country
        .map(|c| {
            leadflow_phone::resolve_country(c).with_context(|| {
                format!("--default-country `{c}` names no country (use e.g. US, DEU or Germany)")
            })
        })
        .transpose()
}

/// `KEY=VALUE` flags as pairs.
pub(crate) fn key_values(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("--kafka `{pair}`: expected KEY=VALUE, e.g. security.protocol=SSL"),
        })
        .collect()
}

pub(crate) fn new_run_id(kind: &str) -> String {
    format!("{kind}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"))
}

pub(crate) async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    use leadflow_pipeline::privacy::forget::{ForgetOptions, Subjects, forget};
    let config = match &args.config {
        Some(path) => LeadflowConfig::load(path)?,
        None => LeadflowConfig::default(),
    };
    let mut subjects = Subjects::default();
    for email in &args.email {
        subjects.email(email)?;
    }
    for id in &args.lead_id {
        subjects.lead_id(id)?;
    }
    for phone in &args.phone {
        subjects.phone(phone)?;
    }
    if let Some(path) = &args.subjects {
        subjects.read_csv(path)?;
    }
    let location = leadflow_pipeline::storage::open(&args.data)?;
    let options = ForgetOptions {
        dry_run: args.dry_run,
        config: with_redis(config, args.redis),
        id: None,
    };
    let receipt = forget(&location, &subjects, &options).await?;
    let tables = receipt
        .rows_removed
        .iter()
        .map(|(table, rows)| format!("{rows} {table}"))
        .collect::<Vec<_>>()
        .join(", ");
    let what = if receipt.dry_run {
        "would remove"
    } else {
        "removed"
    };
    errln!(
        "{}: {what} {tables} row(s); {} file(s) rewritten, {} emptied, of {} checked{}",
        args.data,
        receipt.files_rewritten,
        receipt.files_emptied,
        receipt.files_checked,
        match receipt.redis {
            Some(r) => format!(
                "; Redis: {} cache and {} idempotency key(s) purged",
                r.cache_keys, r.idempotency_keys
            ),
            None => String::new(),
        }
    );
    if !receipt.dry_run {
        errln!(
            "receipt: {}/_leadflow/erasures/{}.json",
            args.data.trim_end_matches('/'),
            receipt.id
        );
    }
    if !receipt.kafka_topics.is_empty() {
        errln!(
            "the output was streamed from Kafka topic(s) {}: their messages (and the dead-letter \
             topic's) still hold the subject until retention.ms ages them out; see README, \
             Personal data",
            receipt.kafka_topics.join(", ")
        );
    }
    outln!("{}", serde_json::to_string_pretty(&receipt)?);
    Ok(())
}

pub(crate) async fn retain(args: RetainArgs) -> anyhow::Result<()> {
    let config = LeadflowConfig::load(&args.config)?;
    if config.retention == Default::default() {
        bail!(
            "{}: [retention] sets no days (enriched_days, usage_days, rejects_days): nothing \
             would ever be dropped",
            args.config.display()
        );
    }
    let location = leadflow_pipeline::storage::open(&args.data)?;
    let today = args
        .today
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let retained = leadflow_pipeline::privacy::retain::retain(
        &location,
        &config.retention,
        today,
        args.dry_run,
    )
    .await?;
    print_retained(&args.data, &retained, args.dry_run);
    Ok(())
}

/// What a retention pass dropped, one line per partition.
fn print_retained(
    data: &str,
    retained: &leadflow_pipeline::privacy::retain::Retained,
    dry_run: bool,
) {
    let verb = if dry_run { "would drop" } else { "dropped" };
    if retained.partitions.is_empty() {
        errln!("{data}: [retention]: no partition old enough to drop");
        return;
    }
    for (dir, (files, bytes)) in &retained.partitions {
        errln!(
            "{data}: [retention] {verb} {dir} ({files} file(s), {:.1} MB)",
            *bytes as f64 / 1e6
        );
    }
    if let Some(version) = retained.version {
        errln!(
            "{data}: version {version}: {} partition(s), {} file(s), {:.1} MB",
            retained.partitions.len(),
            retained.files(),
            retained.bytes() as f64 / 1e6
        );
    }
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `--redis` (or `REDIS_URL`) over the config's `[redis] url`.
pub(crate) fn with_redis(mut config: LeadflowConfig, url: Option<String>) -> LeadflowConfig {
    if let Some(url) = url.filter(|u| !u.trim().is_empty()) {
        config.redis.url = Some(url);
    }
    config
}

pub(crate) async fn status(config: &std::path::Path, redis: Option<String>) -> anyhow::Result<()> {
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

pub(crate) fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<LeadflowConfig> {
    Ok(match path {
        Some(path) => LeadflowConfig::load(path)?,
        None => LeadflowConfig::default(),
    })
}

pub(crate) async fn sandbox(
    host: std::net::IpAddr,
    port: u16,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
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

pub(crate) fn init_logging() {
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
