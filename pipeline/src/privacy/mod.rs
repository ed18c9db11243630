//! What leadflow holds about one person (GDPR Art. 15, the right of
//! access): `leadflow export-subject` gathers every row about a subject
//! from the output's three tables into one JSON document.
//!
//! A subject is named by email, matched as `leadflow forget` matches it
//! (one planner: the export holds exactly what an erasure removes). Their
//! leads are the `enriched_leads` rows with that email (trimmed, any case)
//! and any other row of those leads' ids; their provider calls are the
//! `provider_usage` rows of those ids; their rejects are the `rejects` rows
//! whose raw text holds the email as a whole word. `forget` erases them
//! (`privacy/forget.rs`), `retain` ages whole partitions out
//! (`privacy/retain.rs`).

use crate::error::{Error, Result};

pub mod forget;
pub mod retain;

/// Every row about the subject with `email` in the output at `data`, as
/// `{"subject": {"email"}, "enriched_leads": [...], "provider_usage":
/// [...], "rejects": [...]}`: exactly the rows `leadflow forget` would
/// erase for the same email (see [`forget`]).
pub async fn export_subject(data: &str, email: &str) -> Result<serde_json::Value> {
    let mut subjects = forget::Subjects::default();
    subjects.email(email)?;
    let location = crate::storage::open(data)?;
    refuse_non_output(&location).await?;
    let rows = forget::rows_about(&location, &subjects).await?;
    let table = |name: &str| crate::report::rows_json(&rows[name]);
    Ok(serde_json::json!({
        "subject": { "email": subjects.emails.first() },
        "enriched_leads": table("enriched_leads")?,
        "provider_usage": table("provider_usage")?,
        "rejects": table("rejects")?,
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
