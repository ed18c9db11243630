//! The enrichment engine `run` and `stream` share: a DataFusion session
//! with leadflow's functions, the enrichment query planned once, and what
//! its output batches add up to. `leadflow sql` uses the same session.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::{SessionConfig, SessionContext};
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
/// each execution, the batch its task context carries: the stream runs it
/// on each cut, `serve` on each request, many at once, with no plan and no
/// lock per execution.
pub(crate) struct BatchPlan {
    pub(crate) plan: Plan,
    /// Every operator opens its input inside its own `execute` (no
    /// operator that starts it later, in a task or on first poll): the
    /// leads go through [`LEADS`] and every execution shares the session's
    /// task context. Else each execution gets a task context carrying them.
    eager: bool,
}

thread_local! {
    /// The leads of the execution being started on this thread: set by
    /// [`BatchPlan::execute`] around the plan's `execute`, when that
    /// reaches the `leads` table's partition synchronously, on this thread.
    static LEADS: std::cell::RefCell<Option<RecordBatch>> = const { std::cell::RefCell::new(None) };
}

/// The leads of one execution, in its task context's config (plans that
/// may open their input later than `execute`).
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
        let eager = opens_inputs_in_execute(&plan.physical);
        Ok(Self { plan, eager })
    }

    /// Runs the query over `leads`. With an eager plan the batch is handed
    /// to the `leads` table through [`LEADS`] while the plan's streams are
    /// built (no await in between), and every execution shares the
    /// session's task context: nothing is cloned per execution (the
    /// function maps and the config were a tenth of a lookup's CPU).
    pub(crate) fn execute(&self, leads: RecordBatch) -> Result<SendableRecordBatchStream> {
        if self.eager {
            LEADS.with(|slot| *slot.borrow_mut() = Some(leads));
            let stream = self.plan.physical.execute(0, self.plan.task_ctx.clone());
            // Taken by the table's partition; gone in any case.
            LEADS.with(|slot| slot.borrow_mut().take());
            return Ok(stream?);
        }
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
        Ok(self.plan.physical.execute(0, Arc::new(task))?)
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
        let leads = LEADS.with(|slot| slot.borrow_mut().take()).or_else(|| {
            ctx.session_config()
                .get_extension::<Leads>()
                .and_then(|leads| leads.0.lock().expect("leads lock").take())
        });
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

/// Whether each operator of `plan` opens its input inside its own
/// `execute`, so the `leads` table is opened before `execute` returns, on
/// the caller's thread: the operators a projection-only query plans to.
fn opens_inputs_in_execute(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const EAGER: &[&str] = &[
        "ProjectionExec",
        "StreamingTableExec",
        "CoalesceBatchesExec",
        "CooperativeExec",
        "async_func",
    ];
    EAGER.contains(&plan.name()) && plan.children().into_iter().all(opens_inputs_in_execute)
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
