//! What leadflow holds about one person (GDPR Art. 15, the right of
//! access): `leadflow export-subject` gathers every row about a subject
//! from the output's three tables into one JSON document.
//!
//! A subject is named by email, matched as leadflow matches leads (trimmed,
//! any case). Their leads are the `enriched_leads` rows with that email;
//! their provider calls are the `provider_usage` rows of those leads' ids;
//! their rejects are the `rejects` rows whose raw text holds the email.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::functions::expr_fn::{btrim, lower, strpos};
use datafusion::prelude::{col, lit};

use crate::error::{Error, Result};

pub mod forget;
pub mod retain;

/// Every row about the subject with `email` in the output at `data`, as
/// `{"subject": {"email"}, "enriched_leads": [...], "provider_usage":
/// [...], "rejects": [...]}`.
pub async fn export_subject(data: &str, email: &str) -> Result<serde_json::Value> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') {
        return Err(Error::Usage(format!(
            "--email {email:?} is not an email address"
        )));
    }
    let (ctx, _) = crate::sql::context(Some(data), &[]).await?;
    let lead_rows = ctx
        .table("enriched_leads")
        .await?
        .filter(lower(btrim(vec![col("email")])).eq(lit(email.as_str())))?
        .collect()
        .await?;
    let ids = lead_ids(&lead_rows);
    let calls = match ids.is_empty() {
        true => Vec::new(),
        false => {
            ctx.table("provider_usage")
                .await?
                .filter(col("lead_id").in_list(ids.into_iter().map(lit).collect(), false))?
                .collect()
                .await?
        }
    };
    let rejects = ctx
        .table("rejects")
        .await?
        .filter(strpos(lower(col("raw")), lit(email.as_str())).gt(lit(0)))?
        .collect()
        .await?;
    Ok(serde_json::json!({
        "subject": { "email": email },
        "enriched_leads": crate::report::rows_json(&lead_rows)?,
        "provider_usage": crate::report::rows_json(&calls)?,
        "rejects": crate::report::rows_json(&rejects)?,
    }))
}

/// Refuses a directory that is not an output (a typo, a table's own
/// directory): forget and retain would otherwise find nothing, say so,
/// and leave their bookkeeping in it.
pub(crate) async fn refuse_non_output(location: &crate::storage::Location) -> Result<()> {
    use futures::TryStreamExt;
    let snapshot = crate::publish::Snapshot::read(location).await?;
    if snapshot.version.is_some() || snapshot.legacy.is_some() {
        return Ok(());
    }
    for table in crate::sql::OUTPUT_TABLES {
        let mut files = location.store.list(Some(&location.child(table)));
        if files.try_next().await?.is_some() {
            return Ok(());
        }
    }
    Err(Error::Usage(format!(
        "{}: not a leadflow output (no _leadflow/log, no enriched_leads, provider_usage or \
         rejects directory); give the directory a run wrote (--out)",
        location.url_of("").trim_end_matches('/')
    )))
}

/// The distinct `lead_id`s of `batches`.
fn lead_ids(batches: &[RecordBatch]) -> Vec<String> {
    let mut ids = std::collections::BTreeSet::new();
    for batch in batches {
        let Some(column) = batch.column_by_name("lead_id") else {
            continue;
        };
        let Ok(column) = datafusion::arrow::compute::cast(column, &DataType::Utf8) else {
            continue;
        };
        let column = column.as_string::<i32>();
        for i in 0..column.len() {
            if column.is_valid(i) {
                ids.insert(column.value(i).to_string());
            }
        }
    }
    ids.into_iter().collect()
}
