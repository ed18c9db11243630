//! `leadflow batch`: the nightly run of one date. Its input is a template
//! with `{date}` in it; its output replaces that date's earlier batch output
//! and nothing else, in one step (the run's publish protocol, keyed by the
//! date); `_batches/dt=DATE/_manifest.json` is written last, so readers can
//! wait for it; a webhook says how it went.

pub mod webhook;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::run::{RunConfig, RunSummary};
use crate::sinks::parquet::WrittenFile;
use crate::sinks::provider_usage::dollars;
use crate::storage::{self, Location};

/// The exit code of a batch whose output is written but some of whose leads
/// were not looked up because the provider budget ran out.
pub const EXIT_BUDGET_EXHAUSTED: i32 = 4;

/// One date's run.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub date: NaiveDate,
    /// The run, its input already the template with the date put in.
    pub run: RunConfig,
}

/// The input for `date`: `template` with every `{date}` replaced by it.
pub fn input_for(template: &str, date: NaiveDate) -> Result<String> {
    if !template.contains("{date}") {
        return Err(Error::Usage(format!(
            "--input `{template}`: put {{date}} where the date goes, e.g. \
             's3://leads/incoming/dt={{date}}/' (a batch reads one date's files)"
        )));
    }
    Ok(template.replace("{date}", &date.format("%Y-%m-%d").to_string()))
}

/// Where a date's manifest is, relative to the output.
pub fn manifest_path(date: NaiveDate) -> String {
    manifest_path_of(&format!("dt={}", date.format("%Y-%m-%d")))
}

/// Where the manifest of the batch published as `batch` (`dt=DATE`) is.
pub(crate) fn manifest_path_of(batch: &str) -> String {
    format!("_batches/{batch}/_manifest.json")
}

/// `_manifest.json`: what one date's batch read, wrote and spent.
#[derive(Debug, Clone, Serialize)]
pub struct BatchManifest {
    pub date: NaiveDate,
    pub run_id: String,
    pub leadflow_version: &'static str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub input: String,
    pub inputs: Vec<ManifestInput>,
    pub rows: ManifestRows,
    pub lookups: BTreeMap<String, u64>,
    /// Leads per `line_type_status`, when the run describes numbers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub line_types: BTreeMap<String, u64>,
    /// Dollars per provider, as text (`"1.234567"`): exact, as in Parquet.
    pub spend_usd: BTreeMap<String, String>,
    pub spend_total_usd: String,
    pub outputs: Vec<ManifestOutput>,
    /// Why the batch read nothing, when it did not (a day without input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestInput {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestRows {
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestOutput {
    pub table: String,
    /// Relative to the output.
    pub path: String,
    pub rows: u64,
}

/// What a batch did.
#[derive(Debug)]
pub struct BatchReport {
    pub summary: RunSummary,
    pub manifest: BatchManifest,
    /// Where the manifest was written.
    pub manifest_url: String,
    /// The old partitions `[retention]` dropped after it, when configured.
    pub retained: Option<crate::privacy::retain::Retained>,
}

impl BatchReport {
    /// What the spent budget left undone: leads not looked up, and numbers
    /// without a line type; `(0, 0)` when it held.
    pub fn budget_exhausted(&self) -> (u64, u64) {
        self.summary.lookups.left_by_budget()
    }
}

/// Runs the date's batch: the run (published as the date's batch, replacing
/// its earlier output), then the manifest.
pub async fn run(config: BatchConfig) -> Result<BatchReport> {
    let started_at = Utc::now();
    let input = config.run.source.input.clone();
    let out = config.run.out.clone();
    let mut run = config.run;
    let retention = run.providers.retention.clone();
    let batch_key = format!("dt={}", config.date.format("%Y-%m-%d"));
    run.batch = Some(batch_key.clone());
    let run_id = run.run_id.clone();
    let (summary, note) = match crate::run::run(run).await {
        Ok(summary) => (summary, None),
        // A day without files is a day, not a failure: its manifest says
        // so, and whoever waits for it does not wait forever.
        Err(Error::NoInput(what)) => (
            RunSummary::nothing_read(run_id, out.clone()),
            Some(format!("no input files: {what}")),
        ),
        Err(Error::Io { path, source }) if source.kind() == std::io::ErrorKind::NotFound => (
            RunSummary::nothing_read(run_id, out.clone()),
            Some(format!("no input files: {} does not exist", path.display())),
        ),
        Err(e) => return Err(e),
    };
    let location = storage::create(&out)?;
    let path = manifest_path(config.date);
    // An earlier batch of the date wrote its output (and manifest, unless a
    // rerun was killed around its commit): with no input now, both stay as
    // they are (its input is gone, its leads are not).
    let keep_earlier =
        note.is_some() && crate::publish::Publisher::has_batch(&location, &batch_key).await?;
    if keep_earlier {
        tracing::warn!(
            date = %config.date,
            "no input files for this date; its earlier output and manifest stay as they were"
        );
    }
    let manifest = BatchManifest {
        date: config.date,
        run_id: summary.run_id.clone(),
        leadflow_version: env!("CARGO_PKG_VERSION"),
        started_at,
        finished_at: Utc::now(),
        input,
        inputs: summary
            .inputs
            .iter()
            .map(|f| ManifestInput {
                path: f.name.clone(),
                bytes: f.size,
            })
            .collect(),
        rows: ManifestRows {
            read: summary.records_read,
            written: summary.leads_written,
            rejected: summary.rejects,
        },
        lookups: summary.lookups.statuses.clone(),
        line_types: summary.lookups.line_types.clone(),
        spend_usd: summary
            .lookups
            .providers
            .iter()
            .map(|(name, p)| (name.clone(), decimal_usd(p.cost_micros)))
            .collect(),
        spend_total_usd: decimal_usd(summary.lookups.spend_micros()),
        outputs: [
            ("enriched_leads", &summary.output_files),
            ("provider_usage", &summary.usage_files),
            ("rejects", &summary.reject_files),
        ]
        .into_iter()
        .flat_map(|(table, files)| outputs(&location, table, files))
        .collect(),
        note,
    };
    if !keep_earlier {
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        location
            .store
            .put(&location.child(&path), PutPayload::from(json))
            .await?;
    }
    let manifest_url = location.url_of(&path);
    let retained = retain_after(&location, &retention).await;
    Ok(BatchReport {
        summary: RunSummary {
            manifest: Some(manifest_url.clone()),
            ..summary
        },
        manifest_url,
        manifest,
        retained,
    })
}

/// `[retention]` applied after a batch published: what went. A failure
/// is a warning (the batch itself is done); the next batch tries again.
async fn retain_after(
    location: &Location,
    retention: &crate::config::RetentionConfig,
) -> Option<crate::privacy::retain::Retained> {
    if *retention == Default::default() {
        return None;
    }
    let today = Utc::now().date_naive();
    match crate::privacy::retain::retain(location, retention, today, false).await {
        Ok(retained) => Some(retained),
        Err(e) => {
            tracing::warn!(error = %e, "[retention] was not applied after this batch; the next one tries again");
            None
        }
    }
}

fn outputs<'a>(
    location: &'a Location,
    table: &'a str,
    files: &'a [WrittenFile],
) -> impl Iterator<Item = ManifestOutput> + 'a {
    files.iter().map(move |f| {
        let path = ObjectPath::from(f.path.as_str());
        let relative = path
            .prefix_match(&location.prefix)
            .map(|parts| ObjectPath::from_iter(parts).to_string())
            .unwrap_or_else(|| f.path.clone());
        ManifestOutput {
            table: table.to_string(),
            path: relative,
            rows: f.rows,
        }
    })
}

/// µUSD as exact dollars with six decimals, as the Parquet `DECIMAL(12,6)`.
fn decimal_usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// The one-line outcome for logs and the webhook's text.
pub fn headline(report: &BatchReport) -> String {
    let s = &report.summary;
    let found = s.lookups.found();
    format!(
        "{} leads written, {} rejected, {} phones found, {} spent",
        s.leads_written,
        s.rejects,
        found,
        dollars(s.lookups.spend_micros())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_goes_into_the_input_template_and_a_template_without_it_is_refused() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        assert_eq!(
            input_for("s3://leads/incoming/dt={date}/", date).unwrap(),
            "s3://leads/incoming/dt=2026-11-26/"
        );
        let err = input_for("s3://leads/incoming/", date).unwrap_err();
        assert!(err.to_string().contains("{date}"), "{err}");
        assert_eq!(manifest_path(date), "_batches/dt=2026-11-26/_manifest.json");
        assert_eq!(decimal_usd(4_872_000), "4.872000");
        assert_eq!(decimal_usd(-5), "-0.000005");
    }
}
