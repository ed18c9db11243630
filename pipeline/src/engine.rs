//! The enrichment engine `run` and `stream` share: a DataFusion session
//! with leadflow's functions, the enrichment query planned once, and what
//! its output batches add up to. `leadflow sql` uses the same session.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::async_scalar_function::AsyncFuncExpr;
use datafusion::physical_expr::projection::Projector;
use datafusion::physical_plan::async_func::AsyncFuncExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use leadflow_waterfall::Waterfall;

use crate::error::{Error, Result};
use crate::sinks::parquet::{conform, output_schema, run_columns};
use crate::sinks::provider_usage::LookupTally;
use crate::telemetry;

/// What every output row of the run records about it.
#[derive(Debug, Clone)]
pub(crate) struct RunStamp {
    pub(crate) run_id: String,
    pub(crate) at_micros: i64,
}

/// The planned enrichment query, ready to run.
pub(crate) struct Plan {
    /// The query as SQL planned it, before optimization.
    logical: datafusion::logical_expr::LogicalPlan,
    pub(crate) physical: Arc<dyn ExecutionPlan>,
    pub(crate) task_ctx: Arc<TaskContext>,
    columns: OutputColumns,
    /// The schema `enriched_leads` is written with.
    pub(crate) write_schema: SchemaRef,
    /// Whether the writers add `run_id` and `enriched_at` themselves.
    append_run_columns: bool,
}

/// What a writer's batches add up to.
#[derive(Debug, Default)]
pub(crate) struct OutputCounts {
    pub(crate) rows: u64,
    pub(crate) valid: u64,
    pub(crate) lookups: LookupTally,
}

impl OutputCounts {
    /// Adds these leads and their statuses to the metrics.
    pub(crate) fn count_in_metrics(&self) {
        telemetry::leads_out(self.rows);
        telemetry::lookup_statuses(&self.lookups.statuses);
        telemetry::line_type_statuses(&self.lookups.line_types);
    }

    pub(crate) fn merge(&mut self, other: OutputCounts) {
        self.rows += other.rows;
        self.valid += other.valid;
        self.lookups.merge(other.lookups);
    }
}

impl Plan {
    /// Plans `query`, which must read the table `leads` of `ctx` once.
    pub(crate) async fn new(ctx: &SessionContext, query: &str) -> Result<Plan> {
        let refused = crate::sql::Writes::Refused(
            "an enrichment query only reads; the run writes its output (enriched_leads)",
        );
        let planned = crate::sql::plan(ctx, query, refused).await;
        let df = match planned {
            Ok(plan) => ctx.execute_logical_plan(plan).await,
            Err(Error::DataFusion(e)) => Err(e),
            Err(e) => return Err(Error::Usage(format!("enrichment query: {e}"))),
        }
        .map_err(|e| Error::Usage(format!("enrichment query: {e}")))?;
        let scans = scans_of(df.logical_plan(), "leads")?;
        if scans == 0 {
            return Err(Error::Usage(
                "enrichment query: it does not read `leads`, the table of input leads".into(),
            ));
        }
        if scans > 1 {
            return Err(Error::Usage(format!(
                "enrichment query: it reads `leads` {scans} times; `leads` is the input as it \
                 streams past, read once: select from it once (a self join or a UNION over \
                 it would see part of it), and join other tables to it"
            )));
        }
        let logical = df.logical_plan().clone();
        let physical = df.create_physical_plan().await?;
        let query_schema = physical.schema();
        let write_schema = with_run_columns(&output_schema(&query_schema));
        Ok(Plan {
            append_run_columns: write_schema.fields().len() > query_schema.fields().len(),
            write_schema,
            columns: OutputColumns {
                valid: query_schema.index_of("phone_valid").ok(),
                status: query_schema.index_of("lookup_status").ok(),
                line_type_status: query_schema.index_of("line_type_status").ok(),
            },
            task_ctx: ctx.task_ctx(),
            logical,
            physical,
        })
    }

    /// Whether the query returns `phone_valid`, which the summary counts.
    pub(crate) fn counts_valid(&self) -> bool {
        self.columns.valid.is_some()
    }

    /// One of the query's output batches as it is written: counted into
    /// `counts`, with `run_id` and `enriched_at` appended when the query
    /// does not return them.
    pub(crate) fn output(
        &self,
        batch: &RecordBatch,
        stamp: &RunStamp,
        counts: &mut OutputCounts,
    ) -> Result<RecordBatch> {
        if let Some(i) = self.columns.valid
            && batch.column(i).data_type() == &DataType::Boolean
        {
            counts.valid += batch.column(i).as_boolean().true_count() as u64;
        }
        if let Some(i) = self.columns.status {
            counts.lookups.add_statuses(batch.column(i))?;
        }
        if let Some(i) = self.columns.line_type_status {
            counts.lookups.add_line_types(batch.column(i))?;
        }
        let mut out = batch.columns().to_vec();
        if self.append_run_columns {
            out.extend(run_columns(
                batch.num_rows(),
                &stamp.run_id,
                stamp.at_micros,
            ));
        }
        counts.rows += batch.num_rows() as u64;
        conform(&out, &self.write_schema)
    }
}

/// The enrichment query planned once over a `leads` table that yields, in
/// each execution, the batch it is given: the stream runs it on each cut,
/// `serve` on each request, many at once, with no plan and no lock per
/// execution.
pub(crate) struct BatchPlan {
    pub(crate) plan: Plan,
    /// The plan as the steps its operators take, when it is made of
    /// projections and async functions over the table (the shipped
    /// query's shape); else each execution plans the query afresh.
    lean: Option<Arc<Lean>>,
    /// Where the query is planned again for each execution when not lean.
    state: datafusion::execution::SessionState,
}

/// The leads of one execution, in its task context's config.
struct Leads(Mutex<Option<RecordBatch>>);

impl BatchPlan {
    pub(crate) async fn new(
        query: &str,
        waterfall: Arc<Waterfall>,
        batch_rows: usize,
    ) -> Result<Self> {
        let ctx = session(1, batch_rows, waterfall);
        let schema = leadflow_schemas::lead_schema([]);
        let partition = Arc::new(BatchLeads {
            schema: schema.clone(),
        });
        ctx.register_table(
            "leads",
            Arc::new(StreamingTable::try_new(schema, vec![partition])?),
        )?;
        let plan = Plan::new(&ctx, query).await?;
        let partitions = plan.physical.output_partitioning().partition_count();
        if partitions != 1 {
            return Err(Error::Internal(format!(
                "a batch's query plan has {partitions} output partitions, not 1"
            )));
        }
        let lean = Lean::compile(&plan.physical, &plan.task_ctx).map(Arc::new);
        Ok(Self {
            plan,
            lean,
            state: ctx.state(),
        })
    }

    /// Whether every execution's output is one row per lead, in the
    /// leads' order: a lean plan's (projections and function calls).
    pub(crate) fn keeps_rows(&self) -> bool {
        self.lean.is_some()
    }

    /// Runs the query over `leads`.
    ///
    /// DataFusion's operators register their metrics into the plan at
    /// each `execute` (a projection also formats each expression as SQL
    /// to label them), and some keep state from one execution to the
    /// next (a hash join's build side, a scalar subquery's result, which
    /// resetting a shared plan would clear under a concurrent execution).
    /// Executed per request, the shared plan grew by about 20 KB each time
    /// and spent a third of a lookup's CPU on labels. So a lean plan runs
    /// its steps on the batch directly, and any other (a sort, a join or
    /// a filter in the query) is planned afresh for the execution, which
    /// costs the optimizer's passes each time, and dropped with it.
    pub(crate) async fn execute(&self, leads: RecordBatch) -> Result<SendableRecordBatchStream> {
        let schema = self.plan.physical.schema();
        if let Some(lean) = &self.lean {
            // No leads, no output: an async function's operator drops an
            // empty batch, and the functions are not called for none.
            let lean = lean.clone();
            let leads = (leads.num_rows() > 0).then_some(leads);
            let batches = futures::stream::iter(leads).then(move |leads| {
                let lean = lean.clone();
                async move { lean.run(leads).await }
            });
            return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)));
        }
        let physical = self.state.create_physical_plan(&self.plan.logical).await?;
        let base = &self.plan.task_ctx;
        let config = base
            .session_config()
            .clone()
            .with_extension(Arc::new(Leads(Mutex::new(Some(leads)))));
        let task = TaskContext::new(
            None,
            base.session_id(),
            config,
            base.scalar_functions().clone(),
            base.higher_order_functions().clone(),
            base.aggregate_functions().clone(),
            base.window_functions().clone(),
            base.runtime_env(),
        );
        Ok(physical.execute(0, Arc::new(task))?)
    }
}

/// A plan of projections and async function calls over the `leads`
/// table, as the steps its operators take on a batch: the same
/// expressions evaluated in the same order, without the operators'
/// streams and per-execution metrics. An empty batch has no output (an
/// async function's operator drops empty batches).
struct Lean {
    /// From the table up.
    steps: Vec<Step>,
    options: Arc<datafusion::config::ConfigOptions>,
}

enum Step {
    /// The columns of `leads` the plan reads, when not all.
    Scan(Option<Arc<[usize]>>),
    Project(Projector),
    /// Each expression's result appended as a column (`AsyncFuncExec`).
    Call {
        exprs: Vec<Arc<AsyncFuncExpr>>,
        schema: SchemaRef,
    },
}

impl Lean {
    /// `plan` as steps, if it has no operator but projections, async
    /// function calls, cooperative yielding (a pass-through for one batch)
    /// and the table, and no limit.
    fn compile(plan: &Arc<dyn ExecutionPlan>, task_ctx: &TaskContext) -> Option<Self> {
        let mut steps = Vec::new();
        let mut node = plan.clone();
        loop {
            if node.fetch().is_some() {
                return None;
            }
            let input = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                let projector = p
                    .projection_expr()
                    .make_projector_with_schema_metadata(&p.input().schema(), &p.schema())
                    .ok()?;
                steps.push(Step::Project(projector));
                p.input().clone()
            } else if let Some(a) = node.downcast_ref::<AsyncFuncExec>() {
                // Deprecated as "unused by DataFusion", with no replacement:
                // this is the use. Were it gone, plans would run the slow way.
                #[allow(deprecated)]
                let exprs = a.async_exprs().to_vec();
                steps.push(Step::Call {
                    exprs,
                    schema: a.schema(),
                });
                a.input().clone()
            } else if node.is::<CooperativeExec>() {
                match node.children().as_slice() {
                    [input] => (*input).clone(),
                    _ => return None,
                }
            } else if let Some(scan) = node.downcast_ref::<StreamingTableExec>() {
                if scan.limit().is_some() {
                    return None;
                }
                steps.push(Step::Scan(scan.projection().clone()));
                break;
            } else {
                return None;
            };
            node = input;
        }
        steps.reverse();
        Some(Self {
            steps,
            options: task_ctx.session_config().options().clone(),
        })
    }

    /// The plan's output for `batch`, in one batch: an async function's
    /// operator passes one input batch through whole (its coalescer
    /// holds back nothing bigger than half the batch size, and flushes
    /// the rest at the end), so the function sees every row at once, and
    /// `find_phone` asks once for identical leads across all of them.
    async fn run(&self, mut batch: RecordBatch) -> datafusion::error::Result<RecordBatch> {
        for step in &self.steps {
            batch = match step {
                Step::Scan(None) => batch,
                Step::Scan(Some(columns)) => batch.project(columns)?,
                Step::Project(projector) => projector.project_batch(&batch)?,
                Step::Call { exprs, schema } => {
                    let mut columns = batch.columns().to_vec();
                    for expr in exprs {
                        let value = expr.invoke_with_args(&batch, self.options.clone()).await?;
                        columns.push(value.to_array(batch.num_rows())?);
                    }
                    RecordBatch::try_new(schema.clone(), columns)?
                }
            };
        }
        Ok(batch)
    }
}

/// The `leads` table of a [`BatchPlan`].
struct BatchLeads {
    schema: SchemaRef,
}

impl fmt::Debug for BatchLeads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BatchLeads")
    }
}

impl PartitionStream for BatchLeads {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let leads = ctx
            .session_config()
            .get_extension::<Leads>()
            .and_then(|leads| leads.0.lock().expect("leads lock").take());
        // Never an empty answer for leads that went astray.
        let leads = leads.ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(
                "the leads table was opened without the execution's leads".into(),
            )
        });
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter([leads]),
        ))
    }
}

/// Where, in the query's output, the columns the summary counts are.
#[derive(Debug, Clone, Copy)]
struct OutputColumns {
    valid: Option<usize>,
    status: Option<usize>,
    line_type_status: Option<usize>,
}

/// How many times `plan` (subqueries included) scans `table`.
fn scans_of(plan: &datafusion::logical_expr::LogicalPlan, table: &str) -> Result<usize> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    use datafusion::logical_expr::LogicalPlan;
    let mut scans = 0;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == table
        {
            scans += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(scans)
}

/// A DataFusion session with leadflow's UDFs, `find_phone` over `waterfall`.
pub fn session(partitions: usize, batch_size: usize, waterfall: Arc<Waterfall>) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_batch_size(batch_size)
        .with_information_schema(true);
    // No cache of directory listings: `leadflow sql` lists an output's
    // tables through the commit log at each query (see
    // `publish::snapshot_store`), so a shell sees each new version.
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_cache_manager(
            datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
                .with_list_files_cache_limit(0),
        )
        .build_arc()
        .expect("a default runtime builds");
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    leadflow_udfs::register_all(&ctx);
    leadflow_udfs::register_waterfall(&ctx, waterfall);
    ctx
}

pub(crate) fn with_run_columns(schema: &SchemaRef) -> SchemaRef {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{LeadBuilder, LeadOptions};
    use crate::sources::kafka::decode::LeadDecoder;

    /// `leads` (JSON objects) as the `leads` table's batch.
    fn batch(leads: &[String]) -> RecordBatch {
        let options = LeadOptions {
            batch_size: leads.len(),
            default_country: None,
            owner: None,
        };
        let mut builder = LeadBuilder::new(leadflow_schemas::lead_schema([]), options);
        let mut decoder = LeadDecoder::new(usize::MAX);
        for lead in leads {
            decoder
                .push(None, Some(lead.as_bytes()), &mut builder)
                .expect("a lead");
        }
        builder.finish().expect("a batch")
    }

    fn leads(from: usize, n: usize) -> RecordBatch {
        let phones = ["+44 20 7946 0958", "(415) 555-2671", "555-HELP", "", "12"];
        let json: Vec<String> = (from..from + n)
            .map(|i| {
                format!(
                    r#"{{"lead_id":"L{i}","full_name":"Ada {i}","email":"ada{i}@example.com","country":"{}","phone":"{}"}}"#,
                    ["GB", "US", "DE"][i % 3],
                    phones[i % phones.len()]
                )
            })
            .collect();
        batch(&json)
    }

    async fn plan(query: &str, batch_rows: usize) -> BatchPlan {
        let waterfall = Waterfall::builder(Default::default())
            .build()
            .expect("a waterfall");
        BatchPlan::new(query, Arc::new(waterfall), batch_rows)
            .await
            .expect("the query plans")
    }

    async fn collect(plan: &BatchPlan, leads: RecordBatch) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        let mut batches = plan.execute(leads).await.expect("executes");
        while let Some(batch) = batches.next().await {
            out.push(batch.expect("a batch"));
        }
        out
    }

    /// Every metric the plan's operators hold.
    fn metrics(plan: &Arc<dyn ExecutionPlan>) -> usize {
        plan.metrics().map_or(0, |m| m.iter().count())
            + plan.children().into_iter().map(metrics).sum::<usize>()
    }

    fn sizes(batches: &[RecordBatch]) -> Vec<usize> {
        batches.iter().map(RecordBatch::num_rows).collect()
    }

    #[tokio::test]
    async fn the_shipped_query_runs_lean_with_the_answer_of_its_operators() {
        let config = crate::config::LeadflowConfig::default();
        for query in [
            crate::run::ENRICH_SQL.to_string(),
            // `[line_type] enabled = true`: another async function above.
            crate::config::LeadflowConfig {
                line_type: crate::config::LineTypeConfig { enabled: true },
                ..config.clone()
            }
            .enrichment_query(crate::run::ENRICH_SQL),
        ] {
            // A batch size under the leads': the operators still pass the
            // one batch through whole.
            let lean = plan(&query, 4).await;
            assert!(lean.lean.is_some(), "{query}");
            let full = BatchPlan {
                lean: None,
                ..plan(&query, 4).await
            };
            let leads = leads(0, 10);
            let got = collect(&lean, leads.clone()).await;
            let want = collect(&full, leads).await;
            assert_eq!(sizes(&got), sizes(&want));
            assert_eq!(got, want);
            assert_eq!(got[0].schema(), lean.plan.physical.schema());
            let none = RecordBatch::new_empty(leadflow_schemas::lead_schema([]));
            assert!(collect(&lean, none).await.is_empty());
        }
    }

    #[tokio::test]
    async fn plans_run_at_once_and_again_and_again_answer_their_own_leads_and_do_not_grow() {
        let queries = [
            // A sort.
            "select lead_id from leads order by lead_id desc",
            // A join and a scalar subquery: both keep state in the plan.
            "select l.lead_id from leads l \
             left join (values ('L1', 1), ('L2', 2)) r(id, n) on l.lead_id = r.id \
             order by l.lead_id desc",
            "select lead_id from leads \
             where length(lead_id) < (select max(x) from (values (9), (99)) t(x)) \
             order by lead_id desc",
        ];
        for query in queries {
            let plan = plan(query, 8192).await;
            assert!(plan.lean.is_none(), "{query}");
            let held = metrics(&plan.plan.physical);
            for round in 0..10 {
                // Eight executions at once, each with its own leads.
                let runs = (0..8).map(|k| {
                    let first = (round * 8 + k) * 3;
                    let plan = &plan;
                    async move { (first, collect(plan, leads(first, 3)).await) }
                });
                for (first, out) in futures::future::join_all(runs).await {
                    let ids = out[0].column(0).as_string::<i32>();
                    let ids: Vec<_> = ids.iter().flatten().collect();
                    let mut want: Vec<_> = (first..first + 3).map(|i| format!("L{i}")).collect();
                    want.sort_by(|a, b| b.cmp(a));
                    assert_eq!(ids, want, "{query}: another execution's leads");
                }
            }
            assert_eq!(metrics(&plan.plan.physical), held, "{query}");
        }
    }
}
