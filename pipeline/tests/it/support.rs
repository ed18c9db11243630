//! Helpers shared by the integration tests.

use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use leadflow_pipeline::lead::{FieldMapping, LeadOptions};
use leadflow_pipeline::run::{ENRICH_SQL, RunConfig, RunSummary};
use leadflow_pipeline::sources::files::FileSourceConfig;

/// A run config over `input` writing to `out`, with the shipped query.
pub(crate) fn config(input: &str, out: &str) -> RunConfig {
    RunConfig {
        source: FileSourceConfig {
            input: input.to_string(),
            format: None,
            mapping: FieldMapping::default(),
            delimiter: None,
            options: LeadOptions {
                batch_size: 64,
                default_country: None,
            },
            skip_output: None,
        },
        out: out.to_string(),
        query: ENRICH_SQL.to_string(),
        run_id: "test-run".to_string(),
        partitions: 2,
        progress: false,
        providers: Default::default(),
    }
}

pub(crate) async fn run(config: RunConfig) -> RunSummary {
    leadflow_pipeline::run::run(config)
        .await
        .expect("run succeeds")
}

/// Runs SQL over a run's output directory.
pub(crate) async fn query(out: &str, sql: &str) -> Vec<RecordBatch> {
    let (ctx, _) = leadflow_pipeline::sql::context(Some(out), &[])
        .await
        .expect("context");
    ctx.sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("execute")
}

/// Rows as `Vec<Vec<String>>` (NULL as "NULL"), for compact asserts.
pub(crate) fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c, &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}
