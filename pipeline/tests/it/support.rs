//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

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

/// The bundled example, `examples/leads.csv` (403 rows, 400 leads).
pub(crate) fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/leads.csv")
        .display()
        .to_string()
}

/// The error a run fails with, as text.
pub(crate) async fn run_err(config: RunConfig) -> String {
    leadflow_pipeline::run::run(config)
        .await
        .expect_err("the run fails")
        .to_string()
}

/// `(rows, distinct lead_ids)` of a run's `enriched_leads`, as `leadflow sql` reads it.
pub(crate) async fn lead_counts(out: &str) -> (String, String) {
    let got = rows(
        &query(
            out,
            "select count(*), count(distinct lead_id) from enriched_leads",
        )
        .await,
    );
    (got[0][0].clone(), got[0][1].clone())
}

/// Writes `batch` as a Parquet file at `path`.
pub(crate) fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// Every file under `dir`, recursively, sorted.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
