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
const DRAWN: [&str; 8] = [
    "summary",
    "funnel",
    "provider_scorecard",
    "policy_compare",
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
    let title = html_escape(data);
    Ok(fill(
        PAGE,
        &[
            ("title", title.as_str()),
            ("version", env!("CARGO_PKG_VERSION")),
            ("css", CSS),
            ("js", SCRIPT),
            ("data", json.as_str()),
        ],
    ))
}

/// `template` with each `{{name}}` replaced by its value, in one pass over
/// the template only: a value (a path the user gave, the data) is never
/// searched for placeholders, so `{{data}}` in it stays text.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let value = after.find("}}").and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v, close + 2))
        });
        match value {
            Some((value, used)) => {
                out.push_str(value);
                rest = &after[used..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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
pub(crate) fn rows_json(batches: &[RecordBatch]) -> Result<serde_json::Value> {
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
