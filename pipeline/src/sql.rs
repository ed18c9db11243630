//! `leadflow sql` and `leadflow functions`: querying the outputs.

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::coalesce;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, cast, col, lit, when};
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionContext,
};
use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Query, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::parser::ParserError;
use futures::StreamExt;
use futures::TryStreamExt;

use crate::error::{Error, Result};
use crate::sources::files::Format;
use crate::storage;

/// The tables a run writes, registered by `leadflow sql --data DIR`.
pub const OUTPUT_TABLES: [&str; 3] = ["enriched_leads", "provider_usage", "rejects"];

/// How `leadflow sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Json,
}

/// A session with the UDFs, the run outputs under `data` (those present) and
/// the extra `NAME=PATH` tables. Returns the context and the tables registered.
pub async fn context(
    data: Option<&str>,
    tables: &[String],
) -> Result<(SessionContext, Vec<String>)> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // No providers: `find_phone` answers `not_run` rather than spending money
    // from an analyst's query.
    let waterfall = leadflow_waterfall::Waterfall::builder(Default::default()).build()?;
    let ctx = crate::engine::session(cores, 8192, Arc::new(waterfall));
    let mut registered = Vec::new();
    if let Some(data) = data {
        let location = storage::open(data)?;
        // The calls of runs that died before they committed are the billing
        // audit: where this reader may write, it commits them (as the next
        // run would); a read-only copy is read as it is.
        if let Err(e) = crate::publish::commit_dead_usage(&location, false).await {
            tracing::warn!(
                error = %e,
                "{data}: the provider calls of a run that died could not be committed here; \
                 the next run into {data} will"
            );
        }
        refuse_strangers(&location, data).await?;
        // The tables as the commit log's newest version, read again at each
        // query: never half a commit, whoever is writing.
        let url = url::Url::parse(&format!("leadflow://output-{}/", registered_outputs()))
            .expect("a valid URL");
        ctx.register_object_store(
            &url,
            Arc::new(crate::publish::snapshot_store::SnapshotStore::new(
                location.clone(),
            )),
        );
        for table in OUTPUT_TABLES {
            let table_url = format!("{url}{table}/");
            let store = ctx.runtime_env().object_store(
                datafusion::execution::object_store::ObjectStoreUrl::parse(url.as_str())?,
            )?;
            let mut listing = store.list(Some(&object_store::path::Path::from(table)));
            let provider: Arc<dyn TableProvider> = if listing.next().await.transpose()?.is_none() {
                // A run without providers writes no usage, a clean input no
                // rejects: the table is there, empty, so queries over all
                // three (the shipped analytics) run on any output.
                Arc::new(MemTable::try_new(empty_output_schema(table), vec![vec![]])?)
            } else {
                let options = ParquetReadOptions::default()
                    .table_partition_cols(vec![("dt".to_string(), DataType::Utf8)]);
                let mut df = ctx.read_parquet(table_url, options).await?;
                if table == "enriched_leads" {
                    df = with_line_type_columns(df)?;
                }
                if table != "rejects" {
                    // Outputs written before the adaptive order have no policy.
                    df = with_text_columns(df, &["policy"])?;
                }
                df.into_view()
            };
            ctx.register_table(table, provider)?;
            registered.push(table.to_string());
        }
    }
    for spec in tables {
        let (name, path) = spec.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "--table `{spec}`: expected NAME=PATH, e.g. targets=accounts.csv"
            ))
        })?;
        if storage::is_s3(path) {
            let location = storage::open(path)?;
            ctx.register_object_store(&location.base_url, location.store.clone());
        }
        match Format::from_name(path) {
            Some(Format::Csv) => ctx.register_csv(name, path, CsvReadOptions::new()).await?,
            Some(Format::Ndjson) => {
                let ext = path.rsplit('.').next().unwrap_or("json");
                ctx.register_json(
                    name,
                    path,
                    JsonReadOptions::default().file_extension(&format!(".{ext}")),
                )
                .await?
            }
            Some(Format::Parquet) | None => {
                // Whatever cannot be listed here, DataFusion reports itself.
                let files = crate::sources::files::resolve(path, None)
                    .await
                    .unwrap_or_default();
                for file in files.iter().filter(|f| f.format == Format::Parquet) {
                    crate::sources::files::check_parquet_footer(file).await?;
                }
                ctx.register_parquet(name, path, ParquetReadOptions::default())
                    .await?
            }
        }
        registered.push(name.to_string());
    }
    Ok((ctx, registered))
}

/// Fails when a table of the output holds a Parquet file that no leadflow
/// commit lists (a run's in the commit log, or a stream cut's by its marker):
/// the tables are read by listing their directories, so such a file would
/// be read as if a run had written it by a directory reader (DuckDB,
/// pyarrow). An output with neither a commit log (nor a pre-log manifest)
/// nor a stream ledger is a plain directory of Parquet, read as it is.
async fn refuse_strangers(location: &storage::Location, data: &str) -> Result<()> {
    use crate::publish::{Snapshot, known_files, unlisted_files};
    use crate::stream::ledger::StreamCommits;
    let snapshot = Snapshot::read(location).await?;
    let stream = StreamCommits::read(location).await?;
    if snapshot.version.is_none() && snapshot.legacy.is_none() && stream.is_empty() {
        return Ok(());
    }
    let mut strangers = unlisted_files(location, &known_files(&snapshot), &stream).await?;
    if !strangers.is_empty() {
        // A writer moves its files in after its commit: one that committed
        // after the snapshot above was read (a run, or a stream's cut) has
        // them listed now.
        let newer = Snapshot::read(location).await?;
        let known = known_files(&newer);
        let stream = StreamCommits::read(location).await?;
        strangers.retain(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            !known.contains(f.as_str()) && !stream.holds(name)
        });
    }
    let Some(first) = strangers.first() else {
        return Ok(());
    };
    let more = match strangers.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let table = first.split('/').next().unwrap_or_default();
    Err(Error::Usage(format!(
        "{}/{first}{more} is in the table directory but no leadflow commit lists it, so it \
         would be read as a run's output: move it out of {data}, or read the directory as it \
         is with --table {table}={}/{table}",
        data.trim_end_matches('/'),
        data.trim_end_matches('/'),
    )))
}

/// Line type, carrier and `line_type_status` are written only by runs with
/// `[line_type]` on: leads of runs without it read as NULL, NULL and
/// `not_run` (those written before `line_type_status` existed as `found`
/// when they have a line type).
/// `df` with each of `columns` it lacks added as NULL text.
fn with_text_columns(mut df: DataFrame, columns: &[&str]) -> Result<DataFrame> {
    for &column in columns {
        if df.schema().field_with_unqualified_name(column).is_err() {
            df = df.with_column(column, cast(lit(ScalarValue::Null), DataType::Utf8))?;
        }
    }
    Ok(df)
}

fn with_line_type_columns(df: DataFrame) -> Result<DataFrame> {
    let df = with_text_columns(df, &["line_type", "carrier_name", "line_type_status"])?;
    let status = coalesce(vec![
        col("line_type_status"),
        when(col("line_type").is_not_null(), lit("found")).otherwise(lit("not_run"))?,
    ]);
    Ok(df.with_column("line_type_status", status)?)
}

/// A number per output registered in this process, to name its store.
fn registered_outputs() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The schema of an output table no run has written to yet, with its `dt`.
fn empty_output_schema(table: &str) -> SchemaRef {
    let mut fields: Vec<Field> = match table {
        "enriched_leads" => leadflow_schemas::enriched_lead_schema([])
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .chain(
                ["line_type", "carrier_name", "line_type_status"]
                    .map(|name| Field::new(name, DataType::Utf8, true)),
            )
            .collect(),
        "provider_usage" => leadflow_schemas::provider_usage_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect(),
        _ => leadflow_schemas::reject_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect(),
    };
    fields.push(Field::new("dt", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// How deeply a statement's expressions, subqueries and joins may nest.
/// Planning, optimizing and running a query recurse once per level, with
/// frames of kilobytes each: 2,000 levels fit the stack `main` gives its
/// threads ([`STACK_BYTES`]) with room to spare, and no query written by
/// hand comes near (a 1,000-term `OR` chain is 1,000 levels).
pub const MAX_NESTING: usize = 2000;

/// The stack of the threads that plan and run queries (the command's own
/// and the runtime's workers): enough for [`MAX_NESTING`] levels, which the
/// default 2 MiB of a tokio worker is not. Only the pages used are memory.
pub const STACK_BYTES: usize = 256 << 20;

/// Whether a user's statement may do more than read: write files (`COPY …
/// TO`, `INSERT`), define or drop tables and views (`CREATE`, `DROP`) or
/// change the session (`SET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    Allowed,
    /// Refused, with what the user can do about it.
    Refused(&'static str),
}

/// What `leadflow sql` says about a refused statement.
pub const SQL_READS_ONLY: &str = "leadflow sql only reads (SELECT, EXPLAIN, SHOW, DESCRIBE); \
     --allow-writes lets it run COPY, INSERT, CREATE, DROP and SET";

/// Plans a user's `sql`: one statement, nested at most [`MAX_NESTING`]
/// levels, and only reading unless `writes` allows more.
pub async fn plan(ctx: &SessionContext, sql: &str, writes: Writes) -> Result<LogicalPlan> {
    let state = ctx.state();
    let options = state.config().options();
    let (dialect, parser_limit) = (
        options.sql_parser.dialect,
        options.sql_parser.recursion_limit.get(),
    );
    let statement = state
        .sql_to_statement(sql, &dialect)
        .map_err(|e| match e.find_root() {
            datafusion::error::DataFusionError::SQL(p, _)
                if matches!(**p, ParserError::RecursionLimitExceeded) =>
            {
                too_deep(format!("{parser_limit} nested parentheses or subqueries"))
            }
            _ => Error::DataFusion(e),
        })?;
    check_nesting(&statement)?;
    let plan = state.statement_to_plan(statement).await?;
    if let Writes::Refused(hint) = writes {
        refuse_writes(&plan, hint)?;
    }
    Ok(plan)
}

fn too_deep(limit: String) -> Error {
    Error::Usage(format!(
        "query nested too deeply (limit {limit}): write a long chain of OR or + as IN (…), \
         a join or a table instead"
    ))
}

/// Refuses a statement deeper than [`MAX_NESTING`] before DataFusion, whose
/// planning recurses once per level, sees it.
fn check_nesting(statement: &DfStatement) -> Result<()> {
    let mut nesting = Nesting::default();
    let flow = match statement {
        DfStatement::Statement(s) => s.visit(&mut nesting),
        DfStatement::CopyTo(copy) => match &copy.source {
            CopyToSource::Query(q) => q.visit(&mut nesting),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DfStatement::Explain(explain) => return check_nesting(&explain.statement),
        DfStatement::CreateExternalTable(_) | DfStatement::Reset(_) => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(()) => Err(too_deep(format!("{MAX_NESTING} levels"))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Counts how deep the walk is in expressions, queries and joins; stops
/// past [`MAX_NESTING`], so the walk itself stays shallow.
#[derive(Default)]
struct Nesting {
    depth: usize,
}

impl Nesting {
    fn enter(&mut self) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for Nesting {
    type Break = ();

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.enter()
    }
    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.leave()
    }
    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<()> {
        self.enter()
    }
    fn post_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<()> {
        self.leave()
    }
    fn pre_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
        self.enter()
    }
    fn post_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
        self.leave()
    }
}

/// Refuses a plan that would write, define, drop or set anything.
fn refuse_writes(plan: &LogicalPlan, hint: &str) -> Result<()> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut refused: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        let what = match node {
            LogicalPlan::Ddl(ddl) => Some(match ddl {
                DdlStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".to_string(),
                DdlStatement::CreateMemoryTable(_) => "CREATE TABLE".to_string(),
                DdlStatement::CreateView(_) => "CREATE VIEW".to_string(),
                DdlStatement::DropTable(_) => "DROP TABLE".to_string(),
                DdlStatement::DropView(_) => "DROP VIEW".to_string(),
                other => other.name().to_string(),
            }),
            LogicalPlan::Dml(dml) => Some(dml.op.to_string().to_uppercase()),
            LogicalPlan::Copy(_) => Some("COPY … TO".to_string()),
            LogicalPlan::Statement(statement) => Some(match statement.name() {
                "SetVariable" => "SET".to_string(),
                "ResetVariable" => "RESET".to_string(),
                other => other.to_string(),
            }),
            _ => None,
        };
        Ok(match what {
            Some(what) => {
                refused = Some(what);
                TreeNodeRecursion::Stop
            }
            None => TreeNodeRecursion::Continue,
        })
    })?;
    match refused {
        Some(what) => Err(Error::Usage(format!("{what} is refused: {hint}"))),
        None => Ok(()),
    }
}

/// Most rows the table format shows.
pub const TABLE_ROWS: usize = 1000;

/// Runs `query` and prints the result to `out` in `format`.
pub async fn execute(
    ctx: &SessionContext,
    query: &str,
    writes: Writes,
    format: OutputFormat,
    out: &mut impl Write,
) -> Result<usize> {
    let df = ctx
        .execute_logical_plan(plan(ctx, query, writes).await?)
        .await?;
    let io = |e: std::io::Error| Error::io("stdout", e);
    match format {
        OutputFormat::Table => {
            // A table is read by a person and laid out whole: show the first
            // rows, and stop the query there rather than hold all of it.
            let mut stream = df.execute_stream().await?;
            let mut batches: Vec<RecordBatch> = Vec::new();
            let mut rows = 0;
            let mut more = false;
            while let Some(batch) = stream.try_next().await? {
                if rows + batch.num_rows() > TABLE_ROWS {
                    batches.push(batch.slice(0, TABLE_ROWS - rows));
                    rows = TABLE_ROWS;
                    more = true;
                    break;
                }
                rows += batch.num_rows();
                batches.push(batch);
            }
            drop(stream);
            writeln!(out, "{}", pretty_format_batches(&batches)?).map_err(io)?;
            if more {
                writeln!(
                    out,
                    "first {TABLE_ROWS} rows shown; --format csv or json writes them all"
                )
                .map_err(io)?;
            } else {
                writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" }).map_err(io)?;
            }
            Ok(rows)
        }
        OutputFormat::Csv => {
            let mut stream = df.execute_stream().await?;
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            let mut rows = 0;
            while let Some(batch) = stream.try_next().await? {
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            Ok(rows)
        }
        OutputFormat::Json => {
            let mut stream = df.execute_stream().await?;
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(out);
            let mut rows = 0;
            while let Some(batch) = stream.try_next().await? {
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.finish()?;
            Ok(rows)
        }
    }
}

/// The documentation of every leadflow UDF, as `leadflow functions` prints it.
pub fn functions_help() -> String {
    let mut s = String::new();
    for (name, doc) in leadflow_udfs::documentation() {
        s.push_str(&format!(
            "{}\n    {}\n\n    {}\n",
            name, doc.syntax_example, doc.description
        ));
        if let Some(args) = &doc.arguments {
            s.push_str("\n    arguments:\n");
            for (name, text) in args {
                s.push_str(&format!("      {name}: {text}\n"));
            }
        }
        if let Some(example) = &doc.sql_example {
            s.push_str("\n    example:\n");
            for line in example.lines().filter(|l| !l.starts_with("```")) {
                s.push_str(&format!("      {line}\n"));
            }
        }
        s.push('\n');
    }
    s
}
