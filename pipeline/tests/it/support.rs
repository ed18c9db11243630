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
                owner: None,
            },
            skip_output: None,
        },
        out: out.to_string(),
        query: ENRICH_SQL.to_string(),
        run_id: "test-run".to_string(),
        partitions: 2,
        progress: false,
        providers: Default::default(),
        batch: None,
        job: None,
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

/// The analytics fixture (`tests/data/analytics/TABLE/dt=DAY.csv`) written
/// under `out` as a run's output: `TABLE/dt=DAY/part-0.parquet`, each column
/// typed as the table's own.
pub(crate) fn analytics_fixture(out: &Path) {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/analytics");
    let mut enriched: Vec<Field> = leadflow_schemas::enriched_lead_schema([])
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    enriched.push(Field::new("line_type", DataType::Utf8, true));
    enriched.push(Field::new("carrier_name", DataType::Utf8, true));
    enriched.push(Field::new("line_type_status", DataType::Utf8, true));
    let tables = [
        ("enriched_leads", enriched),
        (
            "provider_usage",
            fields(&leadflow_schemas::provider_usage_schema()),
        ),
        ("rejects", fields(&leadflow_schemas::reject_schema())),
    ];
    for (table, all) in tables {
        for entry in std::fs::read_dir(data.join(table)).unwrap() {
            let csv = entry.unwrap().path();
            let day = csv.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&csv).unwrap();
            let header = text.lines().next().unwrap();
            let schema = std::sync::Arc::new(Schema::new(
                header
                    .split(',')
                    .map(|name| {
                        let field = all.iter().find(|f| f.name() == name);
                        field
                            .unwrap_or_else(|| panic!("{table} has no column {name}"))
                            .clone()
                    })
                    .collect::<Vec<_>>(),
            ));
            let reader = datafusion::arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .build(text.as_bytes())
                .unwrap();
            let dir = out.join(table).join(&day);
            std::fs::create_dir_all(&dir).unwrap();
            let file = std::fs::File::create(dir.join("part-0.parquet")).unwrap();
            let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
            for batch in reader {
                writer.write(&batch.unwrap()).unwrap();
            }
            writer.close().unwrap();
        }
    }
}

fn fields(
    schema: &datafusion::arrow::datatypes::Schema,
) -> Vec<datafusion::arrow::datatypes::Field> {
    schema.fields().iter().map(|f| f.as_ref().clone()).collect()
}

/// A plain HTTP/1.0 GET on localhost.
pub(crate) fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// Checks the Prometheus text format line by line and returns every sample
/// (`name{labels}` → value).
pub(crate) fn prometheus_samples(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            assert!(
                matches!(words.first(), Some(&"TYPE") | Some(&"HELP")),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels in {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

/// Two providers answered by a sandbox the test owns (so what it served
/// outlives a killed run or stream), slow enough (100 ms) that a kill lands
/// mid-run; a test that needs no wait replaces the latency.
/// The test Redis: `REDIS_URL`, default the local one.
pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

pub(crate) const TWO_SANDBOX_PROVIDERS: &str = r#"
[lookup]
concurrency = 16

[sandbox]
hit_rate = 0.3
latency_ms = 100

[[providers]]
name = "orion"
kind = "orion"
priority = 10
max_requests_per_hour = 1000000
cost_per_call_usd = 0.002
cost_per_hit_usd = 0.04
base_url = "sandbox"
api_key_env = "ORION_API_KEY"

[[providers]]
name = "astra"
kind = "astra"
priority = 20
max_requests_per_hour = 1000000
cost_per_hit_usd = 0.08
base_url = "sandbox"
api_key_env = "ASTRA_API_KEY"
"#;

/// A loopback address nothing listens on (yet).
pub(crate) fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}
