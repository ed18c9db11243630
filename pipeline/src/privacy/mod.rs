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

/// Compacts the partitions in `dirs`, whose stream files (which no run
/// lists) hold rows an erasure or a retention must take, so those rows are
/// a compacted run's file. `compacted` holds the partitions compacted for
/// it before: needing one again means a live stream is still moving its
/// newest cut's files in, which no compaction takes yet.
pub(crate) async fn compact_streamed(
    location: &crate::storage::Location,
    dirs: std::collections::BTreeSet<String>,
    compacted: &mut std::collections::BTreeSet<String>,
) -> Result<()> {
    use crate::publish::compact::{CompactOptions, compact};
    if let Some(dir) = dirs.intersection(compacted).next() {
        return Err(Error::Conflict(format!(
            "{}: a stream is still moving its newest cut's files into this partition; \
             nothing was changed. Run it again in a moment.",
            location.url_of(dir).trim_end_matches('/')
        )));
    }
    for dir in &dirs {
        let Some((table, dt)) = dir
            .split_once("/dt=")
            .and_then(|(t, d)| Some((t, chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?)))
        else {
            return Err(Error::Internal(format!(
                "{dir}: a stream file outside a dt= partition"
            )));
        };
        let options = CompactOptions {
            tables: vec![table.to_string()],
            dt: Some(dt),
            min_files: 1,
            ..Default::default()
        };
        compact(location, &options).await?;
    }
    compacted.extend(dirs);
    Ok(())
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
