//! `leadflow report`: one self-contained HTML page (styles, script and data
//! inlined; no network needed to open it) drawn from the rows of the shipped
//! analytics queries over a run's output.

use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::ArrayWriter;

use crate::analytics;
use crate::error::{Error, Result};

const PAGE: &str = include_str!("page.html");
const CSS: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// The queries the page draws (`spend` is for billing, by organization).
const DRAWN: [&str; 7] = [
    "summary",
    "funnel",
    "provider_scorecard",
    "coverage",
    "line_types",
    "carriers",
    "rejects",
];

/// The report page for the output at `data`, as HTML.
pub async fn render(data: &str) -> Result<String> {
    let (ctx, _) = crate::sql::context(Some(data), &[]).await?;
    let mut queries = serde_json::Map::new();
    for name in DRAWN {
        let query = analytics::find(name).expect("a shipped query");
        let rows = async { ctx.sql(query.sql).await?.collect().await };
        let batches = rows
            .await
            .map_err(|e| e.context(format!("analytics query `{name}`")))?;
        queries.insert(name.to_string(), rows_json(&batches)?);
    }
    let payload = serde_json::json!({
        "source": data,
        "generated": chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "queries": queries,
    });
    // `<` only occurs inside JSON strings, where `\u003c` means the same:
    // no `</script>` in the data can end the script element early.
    let json = payload.to_string().replace('<', "\\u003c");
    Ok(PAGE
        .replace("{{title}}", &html_escape(data))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{css}}", CSS)
        .replace("{{js}}", SCRIPT)
        .replace("{{data}}", &json))
}

/// Renders the report for `data` and writes it to `out` (whole or not at all).
pub async fn write(data: &str, out: &Path) -> Result<usize> {
    let html = render(data).await?;
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, &html).map_err(|e| Error::io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out.display().to_string(), e))?;
    Ok(html.len())
}

/// The rows of `batches` as a JSON array of objects.
fn rows_json(batches: &[RecordBatch]) -> Result<serde_json::Value> {
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("report rows: {e}")))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
