//! The `leadflow` command line: the arguments (`args`), what each command
//! does (`commands`), and here the process around them (allocator, exit
//! codes, the error line).

use clap::Parser;
use leadflow_pipeline::config::LeadflowConfig;
use leadflow_pipeline::error::Fault;
use leadflow_pipeline::sql;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: pages freed by a batch go back to
/// the system within a second (the default keeps them ten), so peak RSS is
/// what the run holds, not what it churned through. `stream` and `serve`
/// keep them longer ([`tune_for_long_running`]). `_RJEM_MALLOC_CONF` in the
/// environment still overrides.
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

mod args;
mod commands;

use args::{Cli, Command, KeysCommand, SchemaName};
use commands::{
    batch, compact, forget, init_logging, produce, retain, run, sandbox, serve, sql_command,
    status, stream,
};

fn main() {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Stream(_) | Command::Serve(_)) {
        tune_for_long_running();
    }
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

/// A stream frees a cut's buffers every cut, and serve its micro-batches':
/// with the run's allocator settings both gave the same pages back to the
/// system and faulted them in again, all the time (8% of the stream's CPU,
/// `stream_e2e`). Here, before any other thread exists:
///
/// - jemalloc keeps freed pages ten seconds (its default), not one (blocks
///   of 8 MiB and more have an arena of their own, which gives them back
///   at once either way);
/// - glibc's malloc, which serves the C libraries (librdkafka's fetch
///   buffers and messages, zstd's context for each Parquet column chunk),
///   takes blocks under 8 MiB from its heap instead of mapping each afresh,
///   and keeps up to 32 MiB free in each of its arenas (one per thread
///   that allocated, up to 8 per core) instead of trimming at 128 KiB.
///
/// Not for `run`: it would hold ~25 MB more at its peak (1M leads, 202 →
/// 227 MB) for no time saved. A decay set in `_RJEM_MALLOC_CONF`, and
/// glibc's own settings in the environment (`GLIBC_TUNABLES`,
/// `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`), still rule.
fn tune_for_long_running() {
    #[cfg(not(target_env = "msvc"))]
    if !std::env::var("_RJEM_MALLOC_CONF").is_ok_and(|conf| conf.contains("decay")) {
        let mut ms: isize = 10_000;
        // Arena 0 is this thread's; the others are made later, with the
        // default for new arenas.
        for name in [c"arenas.dirty_decay_ms", c"arena.0.dirty_decay_ms"] {
            // SAFETY: both names take an `ssize_t`, which `ms` is; jemalloc
            // copies it and reads nothing else.
            let rc = unsafe {
                tikv_jemalloc_sys::mallctl(
                    name.as_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    (&raw mut ms).cast(),
                    size_of::<isize>(),
                )
            };
            debug_assert_eq!(rc, 0, "mallctl {name:?}");
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if [
        "GLIBC_TUNABLES",
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
    ]
    .iter()
    .all(|name| std::env::var_os(name).is_none())
    {
        // SAFETY: mallopt only sets glibc's malloc parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        }
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
            Command::Serve(args) => serve(args).await,
            Command::Keys(KeysCommand::New { name, org }) => {
                let (key, block) = leadflow_pipeline::serve::keys::new_key(&name, &org)
                    .map_err(anyhow::Error::msg)?;
                errln!("API key for {name} (shown once; the config keeps only its hash):\n{key}");
                out!("\n{block}");
                Ok(())
            }
            Command::Produce(args) => produce(args).await,
            Command::Sql(args) => sql_command(args).await,
            Command::Compact(args) => compact(args).await,
            Command::Forget(args) => forget(args).await,
            Command::Retain(args) => retain(args).await,
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
            Command::ExportSubject { data, email } => {
                let document = leadflow_pipeline::privacy::export_subject(&data, &email).await?;
                outln!("{}", serde_json::to_string_pretty(&document)?);
                Ok(())
            }
            Command::Explain {
                config,
                history,
                lead,
            } => {
                let config = LeadflowConfig::load(&config)?;
                let text =
                    leadflow_pipeline::learn::explain(&config, history.as_deref(), &lead).await?;
                out!("{text}");
                Ok(())
            }
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
