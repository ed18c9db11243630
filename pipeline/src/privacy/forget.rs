//! `leadflow forget`: every row about a subject removed from an output's
//! three tables, as one commit, and their entries from Redis (GDPR Art. 17).
//!
//! **Which rows.** A subject is named by email (trimmed, any case), lead id
//! or phone (E.164). Their `enriched_leads` rows are those with that lead
//! id, that email, or that number as the lead's own or found phone; their
//! `provider_usage` rows are the calls about those rows' lead ids; their
//! `rejects` rows are those whose raw text holds the email, the number
//! (with or without its `+`) or one of those lead ids, as a whole token
//! (`ana@x.io` does not match `hana@x.io`).
//!
//! **How.** The subject columns of every file are read (only those column
//! chunks); a file that holds none of the subject's rows is never read
//! further nor written. Each file that does is rewritten without them and
//! the rewrites are committed at once ([`crate::publish::erase`]): readers
//! see the output before or after, never half, and the old files are gone
//! from the tables when this returns. Redis is purged before that commit
//! (its keys are derived from the rows about to go); an unreachable Redis
//! stops the erasure before anything is committed. Forgetting twice
//! changes nothing the second time.
//!
//! **The receipt** (`_leadflow/erasures/{id}.json`) says when, what went
//! from which table, and names each subject only by an HMAC-SHA256 keyed
//! with `[privacy] receipt_key_env`: an auditor holding the key checks
//! that a request was carried out; the receipt itself is not personal
//! data.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::{StreamExt, TryStreamExt};
use leadflow_fleet::purge::{collapse_phones, contains_token};
use leadflow_waterfall::CacheKey;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::config::LeadflowConfig;
use crate::error::{Error, Result};
use crate::publish::erase::{self, EraseRows, Erasure, LiveFile};
use crate::publish::log::{Operation, Snapshot};
use crate::storage::Location;

pub use crate::publish::erase::RECEIPTS;

/// Plans tried before giving up when other writers keep taking the files
/// an erasure rewrites.
const ATTEMPTS: usize = 20;

/// The people to forget, normalized.
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    /// Trimmed, lowercase.
    pub emails: BTreeSet<String>,
    pub lead_ids: BTreeSet<String>,
    /// E.164.
    pub phones: BTreeSet<String>,
}

impl Subjects {
    /// Adds an email.
    pub fn email(&mut self, email: &str) -> Result<()> {
        let email = email.trim().to_lowercase();
        let whole = email
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if !whole || email.chars().any(char::is_whitespace) {
            return Err(Error::Usage(format!(
                "email {email:?} is not an email address"
            )));
        }
        self.emails.insert(email);
        Ok(())
    }

    /// Adds a lead id.
    pub fn lead_id(&mut self, id: &str) -> Result<()> {
        let id = id.trim();
        if id.is_empty() {
            return Err(Error::Usage("an empty lead id names no one".into()));
        }
        self.lead_ids.insert(id.to_string());
        Ok(())
    }

    /// Adds a phone, given with its country code (`+49 30 1234567`).
    pub fn phone(&mut self, phone: &str) -> Result<()> {
        let mut info = leadflow_phone::PhoneInfo::default();
        leadflow_phone::PhoneParser::default().parse_into(phone, None, &mut info);
        if !info.parsed || info.e164.is_empty() {
            return Err(Error::Usage(format!(
                "phone {phone:?} is not a number with its country code; write it in E.164, \
                 e.g. +4930123456"
            )));
        }
        self.phones.insert(info.e164.clone());
        Ok(())
    }

    /// Reads a CSV with a header naming any of `email`, `lead_id` and
    /// `phone`; each row names one subject.
    pub fn read_csv(&mut self, path: &std::path::Path) -> Result<usize> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
        let headers = reader
            .headers()
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?
            .clone();
        let headers: Vec<String> = headers.iter().map(|h| h.to_lowercase()).collect();
        for h in &headers {
            if !["email", "lead_id", "phone"].contains(&h.as_str()) {
                return Err(Error::Usage(format!(
                    "{}: column {h:?} is not one forget reads (email, lead_id, phone)",
                    path.display()
                )));
            }
        }
        let mut rows = 0;
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
            let mut named = false;
            for (h, value) in headers.iter().zip(record.iter()) {
                if value.is_empty() {
                    continue;
                }
                named = true;
                let added = match h.as_str() {
                    "email" => self.email(value),
                    "lead_id" => self.lead_id(value),
                    _ => self.phone(value),
                };
                added.map_err(|e| Error::Usage(format!("{}:{line}: {e}", path.display())))?;
            }
            if !named {
                return Err(Error::Usage(format!(
                    "{}:{line}: the row names no subject (email, lead_id and phone are empty)",
                    path.display()
                )));
            }
            rows += 1;
        }
        if rows == 0 {
            return Err(Error::Usage(format!(
                "{}: the file has a header and no subject rows",
                path.display()
            )));
        }
        Ok(rows)
    }

    pub fn is_empty(&self) -> bool {
        self.emails.is_empty() && self.lead_ids.is_empty() && self.phones.is_empty()
    }

    /// Each subject as the receipt names it: `kind:value`.
    fn named(&self) -> impl Iterator<Item = String> + '_ {
        let emails = self.emails.iter().map(|e| format!("email:{e}"));
        let ids = self.lead_ids.iter().map(|e| format!("lead_id:{e}"));
        let phones = self.phones.iter().map(|e| format!("phone:{e}"));
        emails.chain(ids).chain(phones)
    }
}

/// What `forget` was asked to do besides the subjects.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// Find and report, change nothing.
    pub dry_run: bool,
    /// `[redis]` (purged when it has a URL) and `[privacy]`.
    pub config: LeadflowConfig,
    /// The receipt's id (`er_` and hex); a new one when absent.
    pub id: Option<String>,
}

/// A new receipt id.
pub fn new_receipt_id() -> String {
    format!("er_{}", crate::publish::new_write_id("erasure"))
}

/// Whether `id` is one [`new_receipt_id`] could have made (so it names a
/// receipt file and nothing else).
pub fn is_receipt_id(id: &str) -> bool {
    id.strip_prefix("er_")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Why erasures cannot be carried out with `config`, if they cannot: the
/// receipt key is missing.
pub fn check_receipt_key(config: &LeadflowConfig) -> Result<()> {
    receipt_key(config, false).map(|_| ())
}

/// The receipt of erasure `id` in the output, if it has one.
pub async fn read_receipt(location: &Location, id: &str) -> Result<Option<serde_json::Value>> {
    if !is_receipt_id(id) {
        return Ok(None);
    }
    let path = location.child(&format!("{RECEIPTS}/{id}.json"));
    match location.store.get(&path).await {
        Ok(got) => Ok(serde_json::from_slice(&got.bytes().await?).ok()),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The receipt of one erasure (also what a dry run would do).
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub id: String,
    pub format: u32,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The commit that removed the rows; none when nothing was found.
    pub version: Option<u64>,
    /// Each subject as `HMAC-SHA256(key, "email:…" | "lead_id:…" |
    /// "phone:…")`, hex, in the order of the request's normalized
    /// values.
    pub subjects: Vec<String>,
    pub rows_removed: BTreeMap<String, u64>,
    /// Files read past their subject columns and written again.
    pub files_rewritten: usize,
    /// Files whose every row went: deleted, not rewritten.
    pub files_emptied: usize,
    /// Files whose subject columns were read.
    pub files_checked: usize,
    /// Redis keys removed, when Redis is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisPurged>,
    /// Kafka topics the output's stream read: their messages are the
    /// operator's to age out (see README, "Personal data").
    pub kafka_topics: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RedisPurged {
    pub cache_keys: u64,
    pub idempotency_keys: u64,
}

impl Receipt {
    /// Rows removed from every table.
    pub fn rows(&self) -> u64 {
        self.rows_removed.values().sum()
    }
}

/// What one file holds of the subjects.
struct Found {
    file: LiveFile,
    rows: u64,
}

/// Forgets `subjects` in the output at `location` (see the module docs).
pub async fn forget(
    location: &Location,
    subjects: &Subjects,
    options: &ForgetOptions,
) -> Result<Receipt> {
    if subjects.is_empty() {
        return Err(Error::Usage(
            "name a subject: --email, --lead-id, --phone or --subjects FILE.csv".into(),
        ));
    }
    let key = receipt_key(&options.config, options.dry_run)?;
    super::refuse_non_output(location).await?;
    let fleet = match (&options.config.redis.url, options.dry_run) {
        (Some(url), false) => Some(
            leadflow_fleet::Fleet::observe(url, options.config.redis.clone())
                .await
                .map_err(|e| Error::Usage(format!("[redis]: {e}")))?,
        ),
        _ => None,
    };
    let stream = crate::stream::ledger::StreamCommits::read(location).await?;
    let receipt = Receipt {
        id: options.id.clone().unwrap_or_else(new_receipt_id),
        format: 1,
        dry_run: options.dry_run,
        started_at: Utc::now(),
        finished_at: Utc::now(),
        version: None,
        subjects: match &key {
            Some(key) => subjects.named().map(|s| hmac_hex(key, &s)).collect(),
            None => Vec::new(),
        },
        rows_removed: crate::sql::OUTPUT_TABLES
            .iter()
            .map(|t| (t.to_string(), 0))
            .collect(),
        files_rewritten: 0,
        files_emptied: 0,
        files_checked: 0,
        redis: None,
        kafka_topics: stream.topics().into_iter().map(str::to_string).collect(),
    };
    let erasure = match options.dry_run {
        true => None,
        false => Some(Erasure::open(location).await?),
    };
    let result = attempt(
        location,
        subjects,
        fleet.as_ref(),
        erasure.as_ref(),
        receipt,
    )
    .await;
    if let Some(erasure) = erasure {
        erasure.close().await;
    }
    let mut receipt = result?;
    // A committed erasure's receipt is written with its commit's files
    // (by whoever finishes it, should this process die first); a request
    // that found nothing gets one too.
    if receipt.version.is_none() && !receipt.dry_run {
        receipt.finished_at = Utc::now();
        let path = location.child(&format!("{RECEIPTS}/{}.json", receipt.id));
        let body = serde_json::to_vec_pretty(&receipt).expect("a receipt serializes");
        location.store.put(&path, body.into()).await?;
    }
    Ok(receipt)
}

/// The receipt's HMAC key; a real erasure needs one.
fn receipt_key(config: &LeadflowConfig, dry_run: bool) -> Result<Option<Vec<u8>>> {
    let Some(var) = config
        .privacy
        .receipt_key_env
        .as_ref()
        .filter(|v| !v.is_empty())
    else {
        if dry_run {
            return Ok(None);
        }
        return Err(Error::Usage(
            "forget writes a receipt naming each subject by an HMAC, and needs its key: set \
             [privacy] receipt_key_env = \"LEADFLOW_RECEIPT_KEY\" in --config and put a secret \
             (32 random bytes, e.g. `openssl rand -hex 32`) in that variable"
                .into(),
        ));
    };
    match std::env::var(var) {
        Ok(key) if key.len() >= 16 => Ok(Some(key.into_bytes())),
        Ok(_) => Err(Error::Usage(format!(
            "[privacy] receipt_key_env: ${var} holds fewer than 16 bytes; use a longer secret"
        ))),
        Err(_) if dry_run => Ok(None),
        Err(_) => Err(Error::Usage(format!(
            "[privacy] receipt_key_env names ${var}, which is not set"
        ))),
    }
}

fn hmac_hex(key: &[u8], text: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    crate::serve::keys::hex(ring::hmac::sign(&key, text.as_bytes()).as_ref())
}

/// Plans, purges and commits, planning again when another writer took a
/// file first: the receipt, with its commit's version (if any).
async fn attempt(
    location: &Location,
    subjects: &Subjects,
    fleet: Option<&leadflow_fleet::Fleet>,
    erasure: Option<&Erasure>,
    base: Receipt,
) -> Result<Receipt> {
    let mut compacted = BTreeSet::new();
    for _ in 0..ATTEMPTS {
        let snapshot = Snapshot::read(location).await?;
        let tried = async {
            let plan = plan(location, &snapshot, subjects).await?;
            if moved(location, &snapshot, &plan).await? {
                tracing::info!(
                    "a file this erasure was to read was compacted away; planning again"
                );
                return Ok(None);
            }
            if !plan.stream_dirs.is_empty() && erasure.is_some() {
                super::compact_streamed(location, plan.stream_dirs, &mut compacted).await?;
                return Ok(None);
            }
            let mut receipt = plan.receipt(&base);
            let Some(erasure) = erasure else {
                return Ok(Some(receipt));
            };
            if let Some(fleet) = fleet {
                let purged = fleet.purge(&plan.purge).await.map_err(|e| {
                    Error::Unavailable(format!(
                        "nothing was erased: the subject's Redis entries could not be purged \
                         ({e}); run it again"
                    ))
                })?;
                receipt.redis = Some(RedisPurged {
                    cache_keys: purged.cache_keys,
                    idempotency_keys: purged.idempotency_keys,
                });
            }
            if plan.found.is_empty() {
                return Ok(Some(receipt));
            }
            let files: Vec<LiveFile> = plan.found.iter().map(|f| f.file.clone()).collect();
            let done = erasure.rewrite_all(files, &plan.matcher.rows()).await?;
            receipt.rows_removed.values_mut().for_each(|n| *n = 0);
            receipt.files_rewritten = 0;
            let mut rewrites = Vec::new();
            for (found, done) in plan.found.iter().zip(done) {
                *receipt
                    .rows_removed
                    .entry(found.file.table().to_string())
                    .or_default() += done.rows_removed;
                match done.rewrite.to {
                    Some(_) => receipt.files_rewritten += 1,
                    None => receipt.files_emptied += 1,
                }
                rewrites.push(done.rewrite);
            }
            receipt.finished_at = Utc::now();
            let stamped = serde_json::to_value(&receipt).expect("a receipt serializes");
            let committed = erasure
                .commit(Operation::Erase, &snapshot, rewrites, Some(stamped))
                .await?;
            if committed.is_none() {
                tracing::info!(
                    "a file this erasure rewrote left the output meanwhile; planning again"
                );
            }
            Ok(committed.map(|version| Receipt {
                version: Some(version),
                ..receipt
            }))
        };
        match tried.await {
            Ok(Some(receipt)) => return Ok(receipt),
            Ok(None) => {}
            // A file read was taken out of the output by a commit since
            // (a rerun, a compaction): plan again from the newer version.
            Err(e) if Snapshot::read(location).await?.version != snapshot.version => {
                tracing::info!(error = %e, "the output changed while this erasure read it; planning again");
                if let Some(erasure) = erasure {
                    erasure.clear().await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(format!(
        "{}: other writers kept changing the files holding the subject ({ATTEMPTS} tries); \
         nothing was erased. Run it again.",
        location.url_of("").trim_end_matches('/')
    )))
}

/// Whether a file in `plan.gone` (left the output after `snapshot`, before
/// it was read) had its rows moved into files that hold the subject (by a
/// compaction, an erasure or a retention): then the plan is made again. A
/// file a rerun replaced took its rows out of the output; one compacted
/// into files without the subject (most are: other people's) changes
/// nothing, and only those new files are read to tell.
async fn moved(location: &Location, snapshot: &Snapshot, plan: &Plan) -> Result<bool> {
    if plan.gone.is_empty() {
        return Ok(false);
    }
    let latest = Snapshot::read(location).await?;
    let since = latest.commits_after(location, snapshot.version).await?;
    let into: HashSet<&str> = since
        .iter()
        .filter(|c| {
            matches!(
                c.operation,
                Operation::Compact | Operation::Erase | Operation::Retain
            ) && c.remove.iter().any(|f| plan.gone.contains(f))
        })
        .flat_map(|c| c.add())
        .collect();
    if into.is_empty() {
        return Ok(false);
    }
    let tables = crate::sql::OUTPUT_TABLES;
    let files: Vec<LiveFile> = erase::live_files(location, &latest, &tables)
        .await?
        .into_iter()
        .filter(|f| into.contains(f.rel.as_str()))
        .collect();
    let scanned = scan(location, files, &SUBJECT_COLUMNS, plan.matcher.clone()).await?;
    Ok(!scanned.is_empty())
}

/// What an erasure will do.
struct Plan {
    found: Vec<Found>,
    /// Files that left the output before they could be read.
    gone: BTreeSet<String>,
    /// Directories whose stream files hold rows to erase.
    stream_dirs: BTreeSet<String>,
    matcher: Arc<Matcher>,
    checked: usize,
    purge: leadflow_fleet::purge::Subject,
}

impl Plan {
    /// `base` with what this plan would remove.
    fn receipt(&self, base: &Receipt) -> Receipt {
        let mut receipt = base.clone();
        for found in &self.found {
            *receipt
                .rows_removed
                .entry(found.file.table().to_string())
                .or_default() += found.rows;
        }
        receipt.files_rewritten = self.found.len();
        receipt.files_checked = self.checked;
        receipt
    }
}

/// Every column a row is found about a subject by, in any table (a file
/// is read by those it has).
const SUBJECT_COLUMNS: [&str; 6] = [
    "lead_id",
    "email",
    "phone_e164",
    "found_phone_e164",
    "phone_raw",
    "raw",
];

/// The columns that decide whether a row is about a subject.
const LEAD_COLUMNS: [&str; 6] = [
    "lead_id",
    "email",
    "phone_e164",
    "found_phone_e164",
    "full_name",
    "company_website",
];

/// Every row the output holds about `subjects`, by table: exactly the
/// rows `forget` would erase (an access request sees what an erasure
/// removes).
pub async fn rows_about(
    location: &Location,
    subjects: &Subjects,
) -> Result<BTreeMap<String, Vec<RecordBatch>>> {
    let snapshot = Snapshot::read(location).await?;
    let plan = plan(location, &snapshot, subjects).await?;
    let mut rows: BTreeMap<String, Vec<RecordBatch>> = crate::sql::OUTPUT_TABLES
        .iter()
        .map(|t| (t.to_string(), Vec::new()))
        .collect();
    for found in &plan.found {
        let keep = plan.matcher.rows();
        let batches: Vec<RecordBatch> =
            erase::select(location, &found.file, &SUBJECT_COLUMNS, None, keep)
                .await?
                .try_collect()
                .await?;
        rows.entry(found.file.table().to_string())
            .or_default()
            .extend(batches);
    }
    Ok(rows)
}

/// What one file holds of the subjects.
#[derive(Default)]
struct Hits {
    rows: u64,
    /// Lead ids of the rows found (from `enriched_leads`).
    ids: Vec<String>,
    keys: Vec<CacheKey>,
    /// Numbers of the rows found.
    numbers: Vec<String>,
    /// The file left the output while it was to be read.
    gone: bool,
}

/// Reads `files`, as many at once as there are cores, and finds in each
/// the rows `matcher` matches by their `by` columns (the others of
/// [`LEAD_COLUMNS`] decoded for those rows only): the files with hits.
async fn scan(
    location: &Location,
    files: Vec<LiveFile>,
    by: &'static [&'static str],
    matcher: Arc<Matcher>,
) -> Result<Vec<(LiveFile, Hits)>> {
    let jobs = files.into_iter().map(|file| {
        let (location, matcher) = (location.clone(), matcher.clone());
        async move {
            tokio::spawn(async move {
                let hits = scan_file(&location, &file, by, matcher).await?;
                Ok::<_, Error>((file, hits))
            })
            .await
            .map_err(|e| Error::Internal(format!("a scan failed: {e}")))?
        }
    });
    let scanned: Vec<(LiveFile, Hits)> = futures::stream::iter(jobs)
        .buffer_unordered(erase::cores())
        .try_collect()
        .await?;
    Ok(scanned
        .into_iter()
        .filter(|(_, h)| h.rows > 0 || h.gone)
        .collect())
}

/// What `file` holds of the subjects, chosen by its `by` columns.
async fn scan_file(
    location: &Location,
    file: &LiveFile,
    by: &[&str],
    matcher: Arc<Matcher>,
) -> Result<Hits> {
    let table = file.table();
    let mut hits = Hits::default();
    let keep = matcher.rows();
    // The `by` columns too: a table without the others still counts rows.
    let columns: Vec<&str> = LEAD_COLUMNS.iter().chain(by).copied().collect();
    let read = async {
        let mut batches = erase::select(location, file, by, Some(&columns), keep).await?;
        let mut read = Vec::new();
        while let Some(batch) = batches.next().await.transpose()? {
            read.push(batch);
        }
        Ok::<_, Error>(read)
    };
    let batches = match read.await {
        Ok(batches) => batches,
        Err(_) if erase::is_gone(location, file).await? => {
            hits.gone = true;
            return Ok(hits);
        }
        Err(e) => return Err(e),
    };
    for batch in batches {
        hits.rows += batch.num_rows() as u64;
        if table != "enriched_leads" {
            continue;
        }
        let text = |name: &str| strings(&batch, name);
        let [ids, emails, phones, found_phones, names, websites] = LEAD_COLUMNS.map(text);
        for i in 0..batch.num_rows() {
            let at = |c: &Option<ArrayRef>| value(c, i).unwrap_or_default().to_string();
            if let Some(id) = value(&ids, i) {
                hits.ids.push(id.to_string());
            }
            hits.keys
                .extend(CacheKey::new(&at(&emails), &at(&names), &at(&websites)));
            for phone in [value(&phones, i), value(&found_phones, i)]
                .into_iter()
                .flatten()
            {
                hits.keys.push(CacheKey::of_number(phone));
                hits.numbers.push(phone.to_string());
            }
        }
    }
    Ok(hits)
}

/// Finds the files holding the subjects' rows: `enriched_leads` first (its
/// rows give the lead ids whose calls go too), then the other tables.
async fn plan(location: &Location, snapshot: &Snapshot, subjects: &Subjects) -> Result<Plan> {
    let mut matcher = Matcher::new(subjects);
    let mut purge = leadflow_fleet::purge::Subject::default();
    for email in &subjects.emails {
        purge.keys.extend(CacheKey::new(email, "", ""));
    }
    for phone in &subjects.phones {
        purge.keys.insert(CacheKey::of_number(phone));
    }
    let leads = erase::live_files(location, snapshot, &["enriched_leads"]).await?;
    let checked = leads.len();
    // Only the columns the request names subjects by are read whole.
    let by: &'static [&'static str] = match (
        subjects.lead_ids.is_empty(),
        subjects.emails.is_empty(),
        subjects.phones.is_empty(),
    ) {
        (true, false, true) => &["email"],
        (false, true, true) => &["lead_id"],
        (true, true, false) => &["phone_e164", "found_phone_e164", "phone_raw"],
        _ => &SUBJECT_COLUMNS,
    };
    let first = scan(location, leads.clone(), by, Arc::new(matcher.clone())).await?;
    let mut found = BTreeMap::new();
    let mut gone = BTreeSet::new();
    for (file, hits) in first {
        if hits.gone {
            gone.insert(file.rel);
            continue;
        }
        matcher.found_ids.extend(hits.ids);
        purge.keys.extend(hits.keys);
        purge.needles.extend(hits.numbers);
        found.insert(
            file.rel.clone(),
            Found {
                file,
                rows: hits.rows,
            },
        );
    }
    // The lead ids found are part of the subject from here on: in the
    // leads' own rows (another row of the same lead, with another email),
    // their calls and their rejects. The lead files are read again (their
    // ids only) when ids were found.
    let matcher = Arc::new(matcher);
    let mut again = Vec::new();
    if !matcher.found_ids.is_empty() {
        again.extend(scan(location, leads, &["lead_id"], matcher.clone()).await?);
    }
    let usage = erase::live_files(location, snapshot, &["provider_usage"]).await?;
    let rejects = erase::live_files(location, snapshot, &["rejects"]).await?;
    let checked = checked + usage.len() + rejects.len();
    if !matcher.found_ids.is_empty() || !matcher.ids.is_empty() {
        again.extend(scan(location, usage, &["lead_id"], matcher.clone()).await?);
    }
    again.extend(scan(location, rejects, &["raw"], matcher.clone()).await?);
    for (file, hits) in again {
        if hits.gone {
            gone.insert(file.rel);
            continue;
        }
        let rows = found.get(&file.rel).map_or(0, |f| f.rows).max(hits.rows);
        found.insert(file.rel.clone(), Found { file, rows });
    }
    purge.needles.extend(subjects.emails.iter().cloned());
    purge.needles.extend(
        matcher
            .found_ids
            .iter()
            .chain(&subjects.lead_ids)
            .map(|id| serde_json::Value::String(id.clone()).to_string()),
    );
    let found: Vec<Found> = found.into_values().collect();
    let stream_dirs = found
        .iter()
        .filter(|f| f.file.stream)
        .map(|f| f.file.dir().to_string())
        .collect();
    Ok(Plan {
        found,
        gone,
        stream_dirs,
        matcher,
        checked,
        purge,
    })
}

/// A set of strings looked up once per row of every file: a fast hash.
type Set = HashSet<String, xxhash_rust::xxh3::Xxh3DefaultBuilder>;

/// Decides, row by row, whether a row is about a subject.
#[derive(Debug, Clone)]
struct Matcher {
    emails: Set,
    phones: Set,
    /// Lead ids given, and those of the subject's leads found.
    ids: Set,
    found_ids: Set,
    /// The subjects' numbers as a raw line may hold them: E.164, without
    /// its `+`, in national format (separators dropped).
    numbers: Vec<String>,
}

impl Matcher {
    fn new(subjects: &Subjects) -> Self {
        let mut numbers = Vec::new();
        let mut parser = leadflow_phone::PhoneParser::default();
        let mut info = leadflow_phone::PhoneInfo::default();
        for phone in &subjects.phones {
            numbers.push(phone.clone());
            numbers.push(phone.trim_start_matches('+').to_string());
            // As written at home (`030 123456`), separators dropped.
            parser.parse_into(phone, None, &mut info);
            let national = collapse_phones(&info.national);
            if national.bytes().filter(u8::is_ascii_digit).count() >= 6 {
                numbers.push(national);
            }
        }
        Self {
            emails: subjects.emails.iter().cloned().collect(),
            phones: subjects.phones.iter().cloned().collect(),
            ids: subjects.lead_ids.iter().cloned().collect(),
            found_ids: Set::default(),
            numbers,
        }
    }

    /// Whether `text` (a raw line, a phone as written) holds one of the
    /// subjects' emails or numbers as a whole token, in any case and with
    /// any separators between a number's digits.
    fn in_text(&self, text: &str, emails: bool) -> bool {
        let text = text.to_lowercase();
        if emails && self.emails.iter().any(|e| contains_token(&text, e)) {
            return true;
        }
        if self.numbers.is_empty() {
            return false;
        }
        let collapsed = collapse_phones(&text);
        self.numbers.iter().any(|n| contains_token(&collapsed, n))
    }

    /// [`Self::matches`] as the row choice `erase` reads and rewrites by.
    fn rows(self: &Arc<Self>) -> EraseRows {
        let matcher = self.clone();
        Arc::new(move |table, batch| matcher.matches(table, batch))
    }

    fn has_id(&self, id: &str) -> bool {
        self.ids.contains(id) || self.found_ids.contains(id)
    }

    /// `true` for each row of `batch` (of `table`) about a subject.
    fn matches(&self, table: &str, batch: &RecordBatch) -> Result<BooleanArray> {
        let rows = batch.num_rows();
        let mut hit = vec![false; rows];
        match table {
            "enriched_leads" => {
                if let Some(ids) = strings(batch, "lead_id") {
                    mark(&mut hit, &ids, |v| self.has_id(v));
                }
                if let Some(emails) = strings(batch, "email") {
                    mark(&mut hit, &emails, |v| {
                        // Most addresses are written trimmed and in lower
                        // case: looked up as they are, without a copy.
                        let plain = !v
                            .bytes()
                            .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
                            && v.is_ascii();
                        match plain {
                            true => self.emails.contains(v),
                            false => self.emails.contains(v.trim().to_lowercase().as_str()),
                        }
                    });
                }
                for column in ["phone_e164", "found_phone_e164"] {
                    if let Some(phones) = strings(batch, column) {
                        mark(&mut hit, &phones, |v| self.phones.contains(v));
                    }
                }
                // A number the lead came with that did not parse as valid
                // (no country to read it in) is still theirs.
                if !self.numbers.is_empty()
                    && let Some(raw) = strings(batch, "phone_raw")
                {
                    mark(&mut hit, &raw, |v| self.in_text(v, false));
                }
            }
            "provider_usage" => {
                if let Some(ids) = strings(batch, "lead_id") {
                    mark(&mut hit, &ids, |v| self.has_id(v));
                }
            }
            // A reject is a line that became no lead: it is found by the
            // address or number it holds (not by lead id: a short one,
            // `2`, is in many lines about others).
            _ => {
                if let Some(raw) = strings(batch, "raw") {
                    mark(&mut hit, &raw, |v| self.in_text(v, true));
                }
            }
        }
        Ok(BooleanArray::from(hit))
    }
}

/// Sets `hit[i]` where row `i` of `column` is valid and `test` holds.
fn mark(hit: &mut [bool], column: &ArrayRef, test: impl Fn(&str) -> bool) {
    let column = column.as_string::<i32>();
    for (i, h) in hit.iter_mut().enumerate() {
        if !*h && column.is_valid(i) && test(column.value(i)) {
            *h = true;
        }
    }
}

/// Column `name` of `batch` as UTF-8, when it has it.
fn strings(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    let column = batch.column_by_name(name)?;
    match column.data_type() {
        DataType::Utf8 => Some(column.clone()),
        _ => cast(column, &DataType::Utf8).ok(),
    }
}

fn value(column: &Option<ArrayRef>, i: usize) -> Option<&str> {
    let column = column.as_ref()?.as_string::<i32>();
    column.is_valid(i).then(|| column.value(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_found_in_a_line_however_it_is_written_and_an_id_never() {
        let mut s = Subjects::default();
        s.phone("+49 30 123456").unwrap();
        s.lead_id("2").unwrap();
        let m = Matcher::new(&s);
        assert!(m.in_text("x,+49 30 123456,y", true));
        assert!(m.in_text("x,(030) 123-456,y", true));
        assert!(m.in_text("x,+49-30-123456", true));
        assert!(!m.in_text("x,+49 30 1234567,y", true));
        assert!(!m.in_text("lead 2,tier 2", true));
    }

    #[test]
    fn subjects_are_normalized_and_bad_ones_named() {
        let mut s = Subjects::default();
        s.email("  Ana@X.io ").unwrap();
        s.phone("+49 30 1234567").unwrap();
        assert_eq!(s.emails.iter().next().unwrap(), "ana@x.io");
        assert_eq!(s.phones.iter().next().unwrap(), "+49301234567");
        assert!(s.email("ana").is_err());
        let e = s.phone("030 1234567").unwrap_err().to_string();
        assert!(e.contains("E.164"), "{e}");
    }

    #[test]
    fn receipts_name_subjects_by_keyed_hash_only() {
        let a = hmac_hex(b"0123456789abcdef", "email:ana@x.io");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("ana"));
        assert_ne!(a, hmac_hex(b"0123456789abcdeg", "email:ana@x.io"));
    }
}
