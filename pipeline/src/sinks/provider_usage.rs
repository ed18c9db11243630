//! `provider_usage`: the usage ledger drained into its table as the
//! waterfall reports each call and skip, whatever the enrichment query
//! selects; and the tallies the run summary prints.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use leadflow_udfs::AttemptColumns;
pub use leadflow_waterfall::config::dollars;
use leadflow_waterfall::config::{BudgetConfig, usd_to_micros};
use leadflow_waterfall::{Attempt, Outcome, ProviderUsage};
use tokio::sync::{mpsc, oneshot};

use crate::error::Result;
use crate::sinks::parquet::{PartitionedWriter, WrittenFile};

/// Usage rows gathered before they are handed to the Parquet writer.
const BATCH_ROWS: usize = 8192;

/// Builds `provider_usage` batches from ledger rows.
pub(crate) struct UsageBatcher {
    schema: SchemaRef,
    run_id: String,
    lead_id: StringBuilder,
    organization_id: StringBuilder,
    attempts: AttemptColumns,
    rows: usize,
}

impl UsageBatcher {
    pub(crate) fn new(schema: SchemaRef, run_id: &str) -> Self {
        Self {
            schema,
            run_id: run_id.to_string(),
            lead_id: StringBuilder::new(),
            organization_id: StringBuilder::new(),
            attempts: AttemptColumns::new(BATCH_ROWS),
            rows: 0,
        }
    }

    fn push(&mut self, usage: &ProviderUsage) {
        self.lead_id.append_option(usage.lead.lead_id.as_deref());
        self.organization_id
            .append_option(usage.lead.organization_id.as_deref());
        self.attempts.append(&usage.attempt);
        self.rows += 1;
    }

    /// Appends `usage`, writing a batch to `writer` when one is full.
    pub(crate) async fn append(
        &mut self,
        usage: &ProviderUsage,
        writer: &mut PartitionedWriter,
    ) -> Result<()> {
        self.push(usage);
        if self.rows >= BATCH_ROWS {
            writer.write(&self.finish()?).await?;
        }
        Ok(())
    }

    /// Writes what is left to `writer`.
    pub(crate) async fn flush(&mut self, writer: &mut PartitionedWriter) -> Result<()> {
        if self.rows > 0 {
            writer.write(&self.finish()?).await?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let n = std::mem::take(&mut self.rows);
        let attempts = std::mem::replace(&mut self.attempts, AttemptColumns::new(BATCH_ROWS));
        let mut run_id = StringBuilder::with_capacity(n, n * self.run_id.len());
        for _ in 0..n {
            run_id.append_value(&self.run_id);
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.lead_id.finish()),
            Arc::new(run_id.finish()),
            Arc::new(self.organization_id.finish()),
        ];
        columns.extend(attempts.finish()?.columns().iter().cloned());
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Drains the usage ledger into the `provider_usage` table, tallying each
/// provider's calls as they come. When `done` fires (or its sender is
/// dropped) no lookup is left running: the ledger is closed, what it still
/// holds is written, and the files are closed.
pub async fn write_usage(
    mut ledger: mpsc::Receiver<ProviderUsage>,
    mut done: oneshot::Receiver<()>,
    run_id: &str,
    mut writer: PartitionedWriter,
) -> Result<(LookupTally, Vec<WrittenFile>)> {
    let mut batcher = UsageBatcher::new(writer.schema().clone(), run_id);
    let mut tally = LookupTally::default();
    let mut closing = false;
    loop {
        tokio::select! {
            usage = ledger.recv() => match usage {
                Some(usage) => {
                    tally.add_attempt(&usage.attempt);
                    crate::telemetry::attempt(&usage.attempt);
                    batcher.append(&usage, &mut writer).await?;
                }
                None => break,
            },
            _ = &mut done, if !closing => {
                ledger.close();
                closing = true;
            }
        }
    }
    batcher.flush(&mut writer).await?;
    Ok((tally, writer.close().await?))
}

/// What the lookups of a run add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupTally {
    /// Leads per `lookup_status`.
    pub statuses: BTreeMap<String, u64>,
    /// Leads per `line_type_status` (when the run describes numbers).
    pub line_types: BTreeMap<String, u64>,
    /// Calls, hits and spend per provider.
    pub providers: BTreeMap<String, ProviderTally>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderTally {
    /// Requests sent (retries included).
    pub calls: u64,
    pub hits: u64,
    /// Calls that failed: errors and timeouts.
    pub failures: u64,
    /// Skips: tier, rate limit, open circuit, spent budget.
    pub skips: u64,
    /// Of the skips, those for a spent budget.
    pub unbudgeted: u64,
    pub cost_micros: i64,
}

impl LookupTally {
    /// Counts the lookup statuses of a batch (`status` is the `lookup_status` column).
    pub fn add_statuses(&mut self, status: &ArrayRef) -> Result<()> {
        count_values(&mut self.statuses, status)
    }

    /// Counts the line-type statuses of a batch (the `line_type_status` column).
    pub fn add_line_types(&mut self, status: &ArrayRef) -> Result<()> {
        count_values(&mut self.line_types, status)
    }

    /// Counts one provider call or skip.
    pub fn add_attempt(&mut self, a: &Attempt) {
        let tally = match self.providers.get_mut(&*a.provider) {
            Some(t) => t,
            None => self.providers.entry(a.provider.to_string()).or_default(),
        };
        if a.called() {
            tally.calls += 1;
        } else {
            tally.skips += 1;
        }
        match a.outcome {
            Outcome::Hit => tally.hits += 1,
            Outcome::Error | Outcome::Timeout => tally.failures += 1,
            Outcome::BudgetExhausted => tally.unbudgeted += 1,
            _ => {}
        }
        tally.cost_micros += a.cost_micros;
    }

    pub fn merge(&mut self, other: LookupTally) {
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        for (s, n) in other.line_types {
            *self.line_types.entry(s).or_default() += n;
        }
        for (p, t) in other.providers {
            let mine = self.providers.entry(p).or_default();
            mine.calls += t.calls;
            mine.hits += t.hits;
            mine.failures += t.failures;
            mine.skips += t.skips;
            mine.unbudgeted += t.unbudgeted;
            mine.cost_micros += t.cost_micros;
        }
    }

    fn status(&self, s: &str) -> u64 {
        self.statuses.get(s).copied().unwrap_or(0)
    }

    /// Leads that went down the waterfall (not skipped for their own phone,
    /// not served from the cache, not `not_run`).
    pub fn looked_up(&self) -> u64 {
        self.statuses.values().sum::<u64>()
            - self.status("skipped_has_phone")
            - self.status("cached")
            - self.status("not_run")
    }

    pub fn found(&self) -> u64 {
        self.status("found")
    }

    pub fn spend_micros(&self) -> i64 {
        self.providers.values().map(|p| p.cost_micros).sum()
    }

    /// What the spent budget left undone: leads not looked up, and leads
    /// whose phone has no line type.
    pub fn left_by_budget(&self) -> (u64, u64) {
        let of = |m: &BTreeMap<String, u64>| m.get("budget_exhausted").copied().unwrap_or(0);
        (of(&self.statuses), of(&self.line_types))
    }

    /// Whether the budget stopped any provider call: leads or numbers left
    /// unasked, or (for a query that returns neither status column) the
    /// `budget_exhausted` rows of `provider_usage`.
    pub fn budget_ran_out(&self) -> bool {
        let (leads, numbers) = self.left_by_budget();
        leads + numbers + self.unbudgeted() > 0
    }

    fn unbudgeted(&self) -> u64 {
        self.providers.values().map(|p| p.unbudgeted).sum()
    }

    /// The summary's last line when the budget ran out: what it left
    /// undone and what to raise (`budget`: the config's `[budget]`).
    pub fn budget_note(&self, budget: &BudgetConfig) -> Option<String> {
        if !self.budget_ran_out() {
            return None;
        }
        let (leads, numbers) = self.left_by_budget();
        let mut undone = Vec::new();
        if leads > 0 {
            undone.push(format!("{leads} leads not looked up"));
        }
        if numbers > 0 {
            undone.push(format!("{numbers} leads without a line type"));
        }
        if undone.is_empty() {
            // The query returns no status: the calls not made say it.
            undone.push(format!("{} provider calls not made", self.unbudgeted()));
        }
        let caps: Vec<String> = [
            ("per_run_usd", budget.per_run_usd),
            ("per_day_usd", budget.per_day_usd),
            ("per_org_day_usd", budget.per_org_day_usd),
        ]
        .into_iter()
        .filter_map(|(key, cap)| Some(format!("{key} (now {})", dollars(usd_to_micros(cap?)))))
        .collect();
        let raise = if caps.is_empty() {
            "the [budget] in the config".to_string()
        } else {
            format!("[budget] {} in the config", caps.join(" or "))
        };
        Some(format!(
            "the provider budget ran out: {} (budget_exhausted); raise {raise} and rerun",
            undone.join(", ")
        ))
    }
}

/// `found 59, not_found 22, …`: every status and its count.
fn listed(counts: &BTreeMap<String, u64>) -> String {
    let items: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    items.join(", ")
}

/// Adds one to `counts` per non-NULL value of `column`, read as text.
fn count_values(counts: &mut BTreeMap<String, u64>, column: &ArrayRef) -> Result<()> {
    let column = cast(column, &DataType::Utf8)?;
    for s in column.as_string::<i32>().iter().flatten() {
        match counts.get_mut(s) {
            Some(n) => *n += 1,
            None => {
                counts.insert(s.to_string(), 1);
            }
        }
    }
    Ok(())
}

impl fmt::Display for LookupTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.providers.is_empty() && self.statuses.keys().all(|s| s == "not_run") {
            if !self.statuses.is_empty() {
                writeln!(
                    f,
                    "  lookups         not run (no providers configured: --config)"
                )?;
            }
            return Ok(());
        }
        if self.statuses.is_empty() {
            // The query returns no `lookup_status`: only the calls are known.
            writeln!(f, "  spend           {}", dollars(self.spend_micros()))?;
        } else {
            let looked_up = self.looked_up();
            let found = self.found();
            writeln!(
                f,
                "  phones found    {found} of {looked_up} looked up ({:.1}% hit rate), spend {}",
                100.0 * found as f64 / looked_up.max(1) as f64,
                dollars(self.spend_micros())
            )?;
            // Every status, `found` too: the line adds up to the leads written.
            writeln!(f, "  lookup status   {}", listed(&self.statuses))?;
        }
        if !self.line_types.is_empty() {
            writeln!(f, "  line type       {}", listed(&self.line_types))?;
        }
        for (name, p) in &self.providers {
            writeln!(
                f,
                "    {name:<14}{} calls, {} hits ({:.1}%), {} failed, {} skipped, {}",
                p.calls,
                p.hits,
                100.0 * p.hits as f64 / p.calls.max(1) as f64,
                p.failures,
                p.skips,
                dollars(p.cost_micros)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_names_what_it_left_undone_and_the_key_to_raise() {
        let mut tally = LookupTally::default();
        assert_eq!(tally.budget_note(&BudgetConfig::default()), None);
        tally.statuses.insert("budget_exhausted".into(), 29);
        tally.line_types.insert("budget_exhausted".into(), 2_394);
        tally.line_types.insert("found".into(), 308);
        let budget = BudgetConfig {
            per_run_usd: Some(25.0),
            ..Default::default()
        };
        assert_eq!(
            tally.budget_note(&budget).as_deref(),
            Some(
                "the provider budget ran out: 29 leads not looked up, 2394 leads without a \
                 line type (budget_exhausted); raise [budget] per_run_usd (now $25.00) \
                 in the config and rerun"
            )
        );
    }
}
