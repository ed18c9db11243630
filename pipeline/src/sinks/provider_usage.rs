//! `provider_usage`: the enrichment query's `provider_calls` column (the
//! `attempts` lists of `find_phone`) unnested into one row per provider call
//! or skip, in the same pass that writes `enriched_leads`; and the tallies
//! the run summary prints.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Int32Type, Schema, SchemaRef};
use leadflow_schemas::PROVIDER_CALLS_COLUMN;

use crate::error::Result;
use crate::sinks::parquet::conform;

/// Where the columns `provider_usage` needs sit in the query's output.
#[derive(Debug, Clone, Copy)]
pub struct UsageColumns {
    calls: usize,
    lead_id: Option<usize>,
    organization_id: Option<usize>,
}

impl UsageColumns {
    /// `None` when the query has no `provider_calls` list of attempts.
    pub fn find(schema: &Schema) -> Option<Self> {
        let calls = schema.index_of(PROVIDER_CALLS_COLUMN).ok()?;
        let DataType::List(item) = schema.field(calls).data_type() else {
            return None;
        };
        let DataType::Struct(fields) = item.data_type() else {
            return None;
        };
        (fields == &leadflow_schemas::attempt_fields()).then(|| Self {
            calls,
            lead_id: schema.index_of("lead_id").ok(),
            organization_id: schema.index_of("organization_id").ok(),
        })
    }

    pub fn calls_index(&self) -> usize {
        self.calls
    }
}

/// The `provider_usage` rows of one output batch, or `None` when it made no
/// call or skip.
pub fn usage_batch(
    batch: &RecordBatch,
    columns: UsageColumns,
    run_id: &str,
    schema: &SchemaRef,
) -> Result<Option<RecordBatch>> {
    let list = batch.column(columns.calls).as_list::<i32>();
    let offsets = list.value_offsets();
    let (start, end) = (offsets[0] as usize, offsets[list.len()] as usize);
    if start == end {
        return Ok(None);
    }
    // The lead row of every attempt.
    let mut rows = Vec::with_capacity(end - start);
    for (row, pair) in offsets.windows(2).enumerate() {
        rows.extend(std::iter::repeat_n(
            row as u32,
            (pair[1] - pair[0]) as usize,
        ));
    }
    let rows = UInt32Array::from(rows);
    let n = rows.len();
    let per_lead = |index: Option<usize>| -> Result<ArrayRef> {
        Ok(match index {
            Some(i) => take(batch.column(i), &rows, None)?,
            None => new_null_array(&DataType::Utf8, n),
        })
    };
    let attempts = list.values().slice(start, n);
    let mut out: Vec<ArrayRef> = vec![
        per_lead(columns.lead_id)?,
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            run_id, n,
        ))),
        per_lead(columns.organization_id)?,
    ];
    out.extend(attempts.as_struct().columns().iter().cloned());
    Ok(Some(conform(&out, schema)?))
}

/// What the lookups of a run add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupTally {
    /// Leads per `lookup_status`.
    pub statuses: BTreeMap<String, u64>,
    /// Calls, hits and spend per provider.
    pub providers: BTreeMap<String, ProviderTally>,
    pub usage_rows: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderTally {
    /// Requests sent (retries included).
    pub calls: u64,
    pub hits: u64,
    /// Calls that failed: errors and timeouts.
    pub failures: u64,
    /// Skips: tier, rate limit, open circuit.
    pub skips: u64,
    pub cost_micros: i64,
}

impl LookupTally {
    /// Counts the lookup statuses of a batch (`status` is the `lookup_status` column).
    pub fn add_statuses(&mut self, status: &ArrayRef) -> Result<()> {
        let status = cast(status, &DataType::Utf8)?;
        for s in status.as_string::<i32>().iter().flatten() {
            match self.statuses.get_mut(s) {
                Some(n) => *n += 1,
                None => {
                    self.statuses.insert(s.to_string(), 1);
                }
            }
        }
        Ok(())
    }

    /// Counts the provider calls of a `provider_usage` batch.
    pub fn add_usage(&mut self, usage: &RecordBatch) -> Result<()> {
        let text = |name: &str| -> Result<ArrayRef> {
            Ok(cast(
                usage.column_by_name(name).expect("usage schema"),
                &DataType::Utf8,
            )?)
        };
        let (provider, outcome) = (text("provider")?, text("outcome")?);
        let (provider, outcome) = (provider.as_string::<i32>(), outcome.as_string::<i32>());
        let attempt = usage.column_by_name("attempt").expect("usage schema");
        let attempt = attempt.as_primitive::<Int32Type>();
        let cost = usage.column_by_name("cost_usd").expect("usage schema");
        let cost = cost.as_primitive::<Decimal128Type>();
        for i in 0..usage.num_rows() {
            let name = provider.value(i);
            let tally = match self.providers.get_mut(name) {
                Some(t) => t,
                None => self.providers.entry(name.to_string()).or_default(),
            };
            if attempt.value(i) > 0 {
                tally.calls += 1;
            } else {
                tally.skips += 1;
            }
            match outcome.value(i) {
                "hit" => tally.hits += 1,
                "error" | "timeout" => tally.failures += 1,
                _ => {}
            }
            tally.cost_micros += cost.value(i) as i64;
        }
        self.usage_rows += usage.num_rows() as u64;
        Ok(())
    }

    pub fn merge(&mut self, other: LookupTally) {
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        for (p, t) in other.providers {
            let mine = self.providers.entry(p).or_default();
            mine.calls += t.calls;
            mine.hits += t.hits;
            mine.failures += t.failures;
            mine.skips += t.skips;
            mine.cost_micros += t.cost_micros;
        }
        self.usage_rows += other.usage_rows;
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
}

/// µUSD as `$1.234567`-style dollars, trimmed to cents when whole.
pub fn dollars(micros: i64) -> String {
    let usd = micros as f64 / 1e6;
    if micros % 10_000 == 0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.4}")
    }
}

impl fmt::Display for LookupTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.statuses.keys().all(|s| s == "not_run") {
            return writeln!(
                f,
                "  lookups         not run (no providers configured: --config)"
            );
        }
        let looked_up = self.looked_up();
        let found = self.found();
        writeln!(
            f,
            "  phones found    {found} of {looked_up} looked up ({:.1}% hit rate), spend {}",
            100.0 * found as f64 / looked_up.max(1) as f64,
            dollars(self.spend_micros())
        )?;
        let others: Vec<String> = self
            .statuses
            .iter()
            .filter(|(s, _)| *s != "found")
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        writeln!(f, "  lookup status   {}", others.join(", "))?;
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
