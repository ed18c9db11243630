//! Bulk jobs (`POST /v1/jobs`): the body goes to durable storage under the
//! output before the job is accepted, then runs as a `leadflow run` over
//! that file, in this process, through the server's providers (the same
//! limits, cache, breakers and budget as its lookups). Its output is one
//! commit, a run whose `run_id` is the job's id and whose input is the
//! job (`job:{id}`), so its results are that run's `enriched_leads` files.
//!
//! `OUT/_leadflow/jobs/{id}/` holds `input.ndjson` or `input.csv` and
//! `job.json`, the job's state. A job not ended when its server died is
//! run again by the next server on that output (on local disk the job's
//! lease, `_leadflow/leases/job-{id}`, says whether its server lives). The
//! run again commits the job once (a commit of the same input replaces an
//! earlier one); the providers the first run paid answer from the lookup
//! cache (shared through Redis when configured), and every call either
//! run sent is a `provider_usage` row.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use futures::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::ServeConfig;
use super::problem::Problem;
use super::webhooks::Hooks;
use crate::config::ApiKeyConfig;
use crate::error::{Error, Result};
use crate::lead::{FieldMapping, LeadOptions, Owner};
use crate::providers::Providers;
use crate::publish::{Lease, Snapshot};
use crate::run::{JobContext, RunConfig};
use crate::sources::SourceProgress;
use crate::sources::files::{FileSourceConfig, Format};
use crate::storage::{Location, ObjectStoreReader};

/// Where jobs live, under the output.
const JOBS_DIR: &str = "_leadflow/jobs";

/// Leads per batch of a job's run, as `leadflow run`'s default.
const JOB_BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Canceled,
}

impl JobState {
    fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub(super) fn ended(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Canceled)
    }
}

/// What a job's leads came to (`looked_up`, `found` and `spend_usd` once
/// it ended).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct Counts {
    /// Records read from the body.
    pub read: u64,
    /// Leads written to `enriched_leads`.
    pub written: u64,
    /// Records that were not leads (in `rejects`).
    pub rejected: u64,
    /// Leads the providers were asked about (not skipped).
    pub looked_up: u64,
    /// Leads a phone was found for (by a provider or the cache).
    pub found: u64,
    /// What the providers' calls cost.
    pub spend_usd: f64,
}

/// `job.json`: a job's state, written whole at each change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub id: String,
    pub organization_id: String,
    /// The name of the key that made it.
    pub key: String,
    pub format: String,
    pub state: JobState,
    /// Records in the body (lines; a CSV's header excluded).
    pub leads: u64,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub counts: Counts,
    #[serde(default)]
    pub error: Option<String>,
    /// Times a server started it: more than one after a crash.
    #[serde(default)]
    pub attempts: u32,
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct JobView {
    id: String,
    state: JobState,
    leads: u64,
    /// Of the records, the share read so far (1 once it ended).
    progress: f64,
    #[serde(flatten)]
    counts: Counts,
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = DateTime)]
    started_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Times a server started it: 2 or more when a server died running it.
    attempts: u32,
    results: String,
}

/// A job in flight, as the console shows it.
#[derive(Debug, Serialize)]
pub(super) struct InFlight {
    organization_id: String,
    #[serde(flatten)]
    job: JobView,
}

impl JobView {
    pub(super) fn ended(&self) -> bool {
        self.state.ended()
    }
}

/// The body formats a job takes, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFormat {
    Ndjson,
    Csv,
    /// A JSON array of leads, kept as NDJSON.
    JsonArray,
}

impl BodyFormat {
    pub(super) fn of(content_type: Option<&str>) -> std::result::Result<Self, Problem> {
        let essence = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Ok(Self::Ndjson),
            "text/csv" => Ok(Self::Csv),
            "application/json" => Ok(Self::JsonArray),
            _ => Err(Problem::unsupported_media_type(
                "a job's body is NDJSON (application/x-ndjson), CSV (text/csv) or a JSON array \
                 of leads (application/json)",
            )),
        }
    }

    fn stored(self) -> (&'static str, Format) {
        match self {
            Self::Csv => ("csv", Format::Csv),
            Self::Ndjson | Self::JsonArray => ("ndjson", Format::Ndjson),
        }
    }
}

/// A job running in this process: what its run reports as it goes.
struct Live {
    progress: Arc<SourceProgress>,
    written: Arc<AtomicU64>,
}

pub(super) struct Jobs {
    location: Location,
    config: ServeConfig,
    providers: Arc<Providers>,
    max_leads: u64,
    queue: mpsc::UnboundedSender<String>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// The leases of the jobs this server holds, until each ends.
    leases: Mutex<HashMap<String, Lease>>,
    /// One change to a `job.json` at a time.
    records: tokio::sync::Mutex<()>,
    /// The jobs this server holds that have not ended, for the console.
    active: Mutex<BTreeMap<String, JobRecord>>,
    hooks: Arc<Hooks>,
}

impl Jobs {
    /// The jobs of the output at `location`, and the queue its worker
    /// takes them from ([`Jobs::work`]), with every job a dead server left
    /// unfinished queued again.
    pub(super) async fn start(
        location: Location,
        config: &ServeConfig,
        providers: Arc<Providers>,
        hooks: Hooks,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<String>)> {
        let (queue, queued) = mpsc::unbounded_channel();
        let jobs = Arc::new(Self {
            location,
            config: config.clone(),
            providers,
            max_leads: config.providers.api.max_job_leads,
            queue,
            live: Mutex::default(),
            leases: Mutex::default(),
            records: tokio::sync::Mutex::new(()),
            active: Mutex::default(),
            hooks: Arc::new(hooks),
        });
        jobs.resume().await?;
        Ok((jobs, queued))
    }

    /// Queues again, oldest first, the jobs of servers that died.
    async fn resume(&self) -> Result<()> {
        let prefix = self.location.child(JOBS_DIR);
        let listed = self
            .location
            .store
            .list_with_delimiter(Some(&prefix))
            .await?;
        let mut unfinished = Vec::new();
        for dir in listed.common_prefixes {
            let Some(id) = dir.filename().map(str::to_string) else {
                continue;
            };
            let Some(record) = self.read(&id).await? else {
                continue;
            };
            if record.state.ended() {
                continue;
            }
            let Some(lease) = Lease::claim(&self.location, &lease_id(&id))? else {
                continue; // its server lives
            };
            self.leases.lock().expect("leases lock").insert(id, lease);
            self.note(&record);
            unfinished.push(record);
        }
        unfinished.sort_by_key(|r| r.created_at);
        for record in unfinished {
            tracing::info!(
                job = record.id,
                "a job its server did not finish is queued again"
            );
            let _ = self.queue.send(record.id);
        }
        Ok(())
    }

    /// Where the jobs' webhooks go, and how they are signed.
    pub(super) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    fn dir(&self, id: &str) -> String {
        format!("{JOBS_DIR}/{id}")
    }

    fn record_path(&self, id: &str) -> ObjectPath {
        self.location.child(&format!("{}/job.json", self.dir(id)))
    }

    /// `job.json` of `id`, if there is such a job.
    async fn read(&self, id: &str) -> Result<Option<JobRecord>> {
        let path = self.record_path(id);
        let bytes = match self.location.store.get(&path).await {
            Ok(got) => got.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => Err(e),
        }?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Internal(format!("{path}: {e}")))
    }

    async fn write(&self, record: &JobRecord) -> Result<()> {
        let path = self.record_path(&record.id);
        let bytes = serde_json::to_vec_pretty(record).expect("a job serializes");
        self.location
            .store
            .put(&path, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Changes `id`'s record with `change`, one change at a time.
    async fn update(&self, id: &str, change: impl FnOnce(&mut JobRecord)) -> Result<JobRecord> {
        let _one = self.records.lock().await;
        let mut record = self
            .read(id)
            .await?
            .ok_or_else(|| Error::Internal(format!("job {id}: its job.json is gone")))?;
        change(&mut record);
        self.write(&record).await?;
        self.note(&record);
        Ok(record)
    }

    /// Keeps the console's list of jobs in flight up to date.
    fn note(&self, record: &JobRecord) {
        let mut active = self.active.lock().expect("active lock");
        if record.state.ended() {
            active.remove(&record.id);
        } else {
            active.insert(record.id.clone(), record.clone());
        }
    }

    /// The jobs this server holds that have not ended, of `organization`
    /// (every organization's with `None`), oldest first.
    pub(super) fn in_flight(&self, organization: Option<&str>) -> Vec<InFlight> {
        let mut records: Vec<JobRecord> = self
            .active
            .lock()
            .expect("active lock")
            .values()
            .filter(|r| organization.is_none_or(|o| r.organization_id == o))
            .cloned()
            .collect();
        records.sort_by_key(|r| r.created_at);
        records
            .into_iter()
            .map(|record| InFlight {
                organization_id: record.organization_id.clone(),
                job: self.view_of(record),
            })
            .collect()
    }

    /// Keeps `body` under the output as job `id`'s input: (its format,
    /// its records, the hex SHA-256 of its bytes). Memory holds a part of
    /// the body at a time, whatever its size.
    pub(super) async fn upload(
        &self,
        id: &str,
        format: BodyFormat,
        body: Body,
    ) -> std::result::Result<(&'static str, u64, String), Problem> {
        let (extension, _) = format.stored();
        let path = self
            .location
            .child(&format!("{}/input.{extension}", self.dir(id)));
        let store_error = |e: object_store::Error| Problem::internal(Error::from(e));
        let upload = self
            .location
            .store
            .put_multipart(&path)
            .await
            .map_err(store_error)?;
        let mut upload = WriteMultipart::new(upload);
        let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
        let mut records = RecordCounter::default();
        let mut array = (format == BodyFormat::JsonArray).then(JsonArraySplitter::default);
        let mut lines = Vec::new();
        let mut chunks = body.into_data_stream();
        let failed = loop {
            let chunk = match chunks.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => break Some(Problem::bad_body(&e.to_string())),
            };
            sha.update(&chunk);
            let bytes: &[u8] = match &mut array {
                None => &chunk,
                Some(splitter) => {
                    lines.clear();
                    if let Err(e) = splitter.push(&chunk, &mut lines) {
                        break Some(Problem::bad_job_body(e));
                    }
                    &lines
                }
            };
            records.count(bytes);
            if records.records(format) > self.max_leads {
                break Some(Problem::too_many_leads(self.max_leads));
            }
            if let Err(e) = upload.wait_for_capacity(4).await {
                break Some(store_error(e));
            }
            upload.write(bytes);
        };
        let failed = failed.or_else(|| match &array {
            Some(splitter) => splitter.finish().err().map(Problem::bad_job_body),
            None => None,
        });
        if let Some(problem) = failed {
            let _ = upload.abort().await;
            return Err(problem);
        }
        let leads = records.records(format);
        if leads == 0 {
            let _ = upload.abort().await;
            return Err(Problem::invalid(
                "body",
                "the body holds no lead: send 1 or more".into(),
            ));
        }
        upload.finish().await.map_err(store_error)?;
        let sha = sha.finish();
        Ok((extension, leads, super::keys::hex(sha.as_ref())))
    }

    /// Records job `id` (its body uploaded) as queued, and queues it.
    pub(super) async fn create(
        &self,
        id: &str,
        key: &ApiKeyConfig,
        format: &'static str,
        leads: u64,
        webhook_url: Option<String>,
    ) -> Result<JobRecord> {
        let lease = Lease::take(&self.location, &lease_id(id))?;
        let record = JobRecord {
            id: id.to_string(),
            organization_id: key.organization_id.clone(),
            key: key.name.clone(),
            format: format.to_string(),
            state: JobState::Queued,
            leads,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            webhook_url,
            counts: Counts::default(),
            error: None,
            attempts: 0,
        };
        self.write(&record).await?;
        self.note(&record);
        self.leases
            .lock()
            .expect("leases lock")
            .insert(id.to_string(), lease);
        let _ = self.queue.send(id.to_string());
        Ok(record)
    }

    /// Deletes what an upload left of job `id` that was not created (a
    /// replayed or refused request).
    pub(super) async fn forget_upload(&self, id: &str) {
        let prefix = self.location.child(&self.dir(id));
        let _ = crate::publish::delete_under(&self.location, &prefix).await;
        if let Some(root) = &self.location.local_root {
            let _ = std::fs::remove_dir_all(root.join(self.dir(id)));
        }
    }

    /// Job `id` as `organization` may see it: another's job is not there.
    pub(super) async fn view(&self, id: &str, organization: &str) -> Result<Option<JobView>> {
        if !valid_id(id) {
            return Ok(None);
        }
        let Some(record) = self.read(id).await? else {
            return Ok(None);
        };
        if record.organization_id != organization {
            return Ok(None);
        }
        Ok(Some(self.view_of(record)))
    }

    pub(super) fn view_of(&self, record: JobRecord) -> JobView {
        let live = self
            .live
            .lock()
            .expect("live lock")
            .get(&record.id)
            .cloned();
        let (counts, progress) = match (&live, record.state) {
            (Some(live), JobState::Running) => {
                let read = SourceProgress::get(&live.progress.records_read);
                let counts = Counts {
                    read,
                    written: live.written.load(Ordering::Relaxed),
                    rejected: SourceProgress::get(&live.progress.rejects),
                    ..Counts::default()
                };
                (counts, (read as f64 / record.leads.max(1) as f64).min(1.0))
            }
            (_, state) if state.ended() => (record.counts, 1.0),
            _ => (record.counts, 0.0),
        };
        JobView {
            results: format!("/v1/jobs/{}/results", record.id),
            id: record.id,
            state: record.state,
            leads: record.leads,
            progress,
            counts,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            error: record.error,
            attempts: record.attempts,
        }
    }

    /// Cancels job `id` of `organization`: a queued job ends now, a
    /// running one stops reading and commits what it read. `None`: no such
    /// job.
    pub(super) async fn cancel(&self, id: &str, organization: &str) -> Result<Option<JobView>> {
        if self.view(id, organization).await?.is_none() {
            return Ok(None);
        }
        if let Some(live) = self.live.lock().expect("live lock").get(id) {
            live.progress.stop.store(true, Ordering::Relaxed);
        }
        let record = self
            .update(id, |record| {
                if record.state == JobState::Queued {
                    record.state = JobState::Canceled;
                    record.finished_at = Some(Utc::now());
                }
            })
            .await?;
        let canceled_now = record.state == JobState::Canceled
            && self
                .leases
                .lock()
                .expect("leases lock")
                .remove(id)
                .is_some();
        if canceled_now {
            self.tell(record.clone());
        }
        Ok(Some(self.view_of(record)))
    }

    /// Runs the queued jobs, one at a time, until the queue closes.
    pub(super) async fn work(self: Arc<Self>, mut queued: mpsc::UnboundedReceiver<String>) {
        while let Some(id) = queued.recv().await {
            if let Err(e) = self.run_one(&id).await {
                tracing::warn!(job = id, error = %e, "could not run a job; the next server on this output runs it again");
            }
        }
    }

    async fn run_one(&self, id: &str) -> Result<()> {
        let record = self
            .update(id, |record| {
                if record.state.ended() {
                    return;
                }
                record.state = JobState::Running;
                record.started_at = Some(Utc::now());
                record.attempts += 1;
            })
            .await?;
        if record.state != JobState::Running {
            return Ok(()); // canceled while queued
        }
        let live = Arc::new(Live {
            progress: Arc::default(),
            written: Arc::default(),
        });
        self.live
            .lock()
            .expect("live lock")
            .insert(id.to_string(), live.clone());
        tracing::info!(job = id, leads = record.leads, "job started");
        let ran = crate::run::run(self.run_config(&record, &live)).await;
        let canceled = live.progress.stopped();
        let ended = self
            .update(id, |record| {
                record.finished_at = Some(Utc::now());
                match &ran {
                    Ok(summary) => {
                        record.state = if canceled {
                            JobState::Canceled
                        } else {
                            JobState::Done
                        };
                        record.counts = counts_of(summary);
                    }
                    Err(e) => {
                        record.state = JobState::Failed;
                        record.error = Some(e.to_string());
                    }
                }
            })
            .await;
        self.live.lock().expect("live lock").remove(id);
        let ended = ended?;
        if let Some(lease) = self.leases.lock().expect("leases lock").remove(id) {
            lease.release();
        }
        tracing::info!(job = id, state = ?ended.state, written = ended.counts.written, "job ended");
        self.tell(ended);
        Ok(())
    }

    /// Posts a job's end to its `webhook_url`, if it has one, on its own
    /// task: the next job need not wait for a slow receiver.
    fn tell(&self, ended: JobRecord) {
        let Some(url) = ended.webhook_url.clone() else {
            return;
        };
        let (hooks, key) = (self.hooks.clone(), ended.key.clone());
        let event = format!("job.{}", ended.state.name());
        let message_id = format!("msg_{}_{}", ended.id, ended.attempts);
        let view = self.view_of(ended);
        tokio::spawn(async move {
            hooks.send(&key, &url, &message_id, &event, &view).await;
        });
    }

    fn run_config(&self, record: &JobRecord, live: &Live) -> RunConfig {
        let format = if record.format == "csv" {
            Format::Csv
        } else {
            Format::Ndjson
        };
        let input = format!("{}/input.{}", self.dir(&record.id), record.format);
        let input = match &self.location.local_root {
            Some(root) => root.join(&input).display().to_string(),
            None => self
                .location
                .url_of(&input)
                .trim_end_matches('/')
                .to_string(),
        };
        RunConfig {
            source: FileSourceConfig {
                input,
                format: Some(format),
                mapping: FieldMapping::default(),
                delimiter: None,
                options: LeadOptions {
                    batch_size: JOB_BATCH_ROWS,
                    default_country: self.config.default_country,
                    owner: Some(Arc::new(Owner {
                        organization_id: record.organization_id.clone(),
                        max_user_tier: self
                            .config
                            .providers
                            .api
                            .keys
                            .iter()
                            .find(|k| k.name == record.key)
                            .and_then(|k| k.max_user_tier),
                    })),
                },
                skip_output: None,
            },
            out: self.config.out.clone(),
            query: self.config.query.clone(),
            run_id: record.id.clone(),
            partitions: std::thread::available_parallelism().map_or(1, usize::from),
            progress: false,
            providers: self.config.providers.clone(),
            batch: None,
            job: Some(JobContext {
                providers: self.providers.clone(),
                progress: live.progress.clone(),
                written: live.written.clone(),
                input_id: format!("job:{}", record.id),
            }),
        }
    }

    /// The enriched leads of job `id` of `organization`, once it ended:
    /// `None` when there is no such job, a problem while it runs.
    pub(super) async fn results(
        &self,
        id: &str,
        organization: &str,
    ) -> std::result::Result<Option<Vec<ObjectPath>>, Problem> {
        let Some(view) = self
            .view(id, organization)
            .await
            .map_err(Problem::internal)?
        else {
            return Ok(None);
        };
        if !view.ended() {
            return Err(Problem::job_not_ended(&view.id));
        }
        let snapshot = Snapshot::read(&self.location)
            .await
            .map_err(Problem::internal)?;
        let mut files = Vec::new();
        for run in snapshot
            .runs
            .iter()
            .filter(|r| r.run_id == view.id && !r.usage_only)
        {
            for file in run
                .files
                .iter()
                .filter(|f| f.starts_with("enriched_leads/"))
            {
                files.push(self.readable(file, run.staging_of(file)).await);
            }
        }
        Ok(Some(files))
    }

    /// Where a committed file is read: its table, or its writer's staging
    /// while it has not been moved in.
    async fn readable(&self, file: &str, staging: &str) -> ObjectPath {
        let moved = self.location.child(file);
        if staging.is_empty() || self.location.store.head(&moved).await.is_ok() {
            return moved;
        }
        self.location.child(&format!("{staging}/{file}"))
    }

    /// The batches of `files`, one file after another.
    pub(super) fn batches(
        &self,
        files: Vec<ObjectPath>,
    ) -> impl Stream<Item = Result<RecordBatch>> + Send + 'static {
        let store = self.location.store.clone();
        futures::stream::iter(files)
            .then(move |path| {
                let store = store.clone();
                async move {
                    let reader = ObjectStoreReader::new(store, path);
                    Ok::<_, Error>(
                        ParquetRecordBatchStreamBuilder::new(reader)
                            .await?
                            .build()?,
                    )
                }
            })
            .map(|opened| match opened {
                Ok(stream) => stream.map(|b| b.map_err(Error::from)).boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
    }
}

/// The jobs' lease names.
fn lease_id(id: &str) -> String {
    format!("job-{id}")
}

/// A fresh job id: `job_` and 24 hex digits.
pub(super) fn new_id() -> String {
    let random = super::keys::random_hex::<12>().expect("the system's random source");
    format!("job_{random}")
}

/// Whether `id` could be a job id (anything else is never looked up: it
/// names a path).
fn valid_id(id: &str) -> bool {
    id.strip_prefix("job_")
        .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn counts_of(summary: &crate::run::RunSummary) -> Counts {
    let statuses = &summary.lookups.statuses;
    let status = |s: &str| statuses.get(s).copied().unwrap_or(0);
    let not_asked = status("skipped_has_phone") + status("skipped_tier") + status("not_run");
    Counts {
        read: summary.records_read,
        written: summary.leads_written,
        rejected: summary.rejects,
        looked_up: statuses.values().sum::<u64>().saturating_sub(not_asked),
        found: status("found") + status("cached"),
        spend_usd: summary.lookups.spend_micros() as f64 / 1e6,
    }
}

/// Counts the non-blank lines of a body, across its chunks.
#[derive(Debug, Default)]
struct RecordCounter {
    lines: u64,
    /// The line being read has a character other than whitespace.
    open: bool,
}

impl RecordCounter {
    fn count(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.lines += u64::from(self.open);
                self.open = false;
            } else if !b.is_ascii_whitespace() {
                self.open = true;
            }
        }
    }

    /// The records so far: lines, but a CSV's first (its header).
    fn records(&self, format: BodyFormat) -> u64 {
        let lines = self.lines + u64::from(self.open);
        match format {
            BodyFormat::Csv => lines.saturating_sub(1),
            BodyFormat::Ndjson | BodyFormat::JsonArray => lines,
        }
    }
}

/// Turns a JSON array, arriving in chunks, into one line per element
/// (NDJSON), without parsing the elements: it follows strings and nesting
/// only to find where each element ends.
#[derive(Debug, Default)]
struct JsonArraySplitter {
    state: ArrayState,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Bytes seen, for errors.
    offset: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    #[default]
    BeforeArray,
    /// After `[` or a `,`: an element or (after `[`) the end.
    BeforeElement,
    InElement,
    /// After an element: `,` or `]`.
    AfterElement,
    Ended,
}

impl JsonArraySplitter {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
        for &b in chunk {
            self.offset += 1;
            let at = self.offset;
            match self.state {
                ArrayState::BeforeArray | ArrayState::Ended if b.is_ascii_whitespace() => {}
                ArrayState::BeforeArray if b == b'[' => self.state = ArrayState::BeforeElement,
                ArrayState::BeforeArray => {
                    return Err(format!(
                        "byte {at}: an application/json job body is an array of leads, `[{{…}}, …]`"
                    ));
                }
                ArrayState::Ended => {
                    return Err(format!("byte {at}: something after the array's `]`"));
                }
                ArrayState::BeforeElement | ArrayState::AfterElement if b.is_ascii_whitespace() => {
                }
                ArrayState::BeforeElement if b == b']' => self.state = ArrayState::Ended,
                ArrayState::AfterElement if b == b']' => self.state = ArrayState::Ended,
                ArrayState::AfterElement if b == b',' => self.state = ArrayState::BeforeElement,
                ArrayState::AfterElement => {
                    return Err(format!("byte {at}: expected `,` or `]` after an element"));
                }
                ArrayState::BeforeElement if b == b',' => {
                    return Err(format!("byte {at}: an empty element (`,,`)"));
                }
                ArrayState::BeforeElement | ArrayState::InElement => {
                    if self.state == ArrayState::BeforeElement {
                        self.state = ArrayState::InElement;
                    } else if self.depth == 0
                        && !self.in_string
                        && (b == b',' || b == b']' || b.is_ascii_whitespace())
                    {
                        // The end of a scalar element.
                        out.push(b'\n');
                        self.state = match b {
                            b',' => ArrayState::BeforeElement,
                            b']' => ArrayState::Ended,
                            _ => ArrayState::AfterElement,
                        };
                        continue;
                    }
                    // A raw line break inside an element is whitespace in JSON.
                    out.push(if b == b'\n' || b == b'\r' { b' ' } else { b });
                    if self.in_string {
                        match (self.escaped, b) {
                            (true, _) => self.escaped = false,
                            (false, b'\\') => self.escaped = true,
                            (false, b'"') => self.in_string = false,
                            _ => {}
                        }
                        if !self.in_string && self.depth == 0 {
                            out.push(b'\n');
                            self.state = ArrayState::AfterElement;
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth = self.depth.checked_sub(1).ok_or_else(|| {
                                format!("byte {at}: a `{}` closes nothing", b as char)
                            })?;
                            if self.depth == 0 {
                                out.push(b'\n');
                                self.state = ArrayState::AfterElement;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&self) -> std::result::Result<(), String> {
        match self.state {
            ArrayState::Ended => Ok(()),
            ArrayState::BeforeArray => Err("the body is empty: expected a JSON array".into()),
            _ => Err(format!(
                "byte {}: the body ended inside the array (no closing `]`)",
                self.offset
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> std::result::Result<String, String> {
        let mut splitter = JsonArraySplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk.as_bytes(), &mut out)?;
        }
        splitter.finish()?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_json_array_becomes_one_line_per_element_whatever_its_chunks() {
        let body =
            "[ {\"a\": \"x,]}\\\"\", \"b\": [1, {\"c\": 2}]},\n {\"d\":\n 3}, 5, \"s\" , null]";
        let whole = split(&[body]).unwrap();
        assert_eq!(
            whole,
            "{\"a\": \"x,]}\\\"\", \"b\": [1, {\"c\": 2}]}\n{\"d\":  3}\n5\n\"s\"\nnull\n"
        );
        for lines in whole.lines() {
            assert!(!lines.is_empty());
        }
        // Byte by byte, the same lines.
        let bytes: Vec<String> = body.chars().map(String::from).collect();
        let chunks: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(split(&chunks).unwrap(), whole);
        assert_eq!(split(&["[]"]).unwrap(), "");
    }

    #[test]
    fn a_body_that_is_not_one_json_array_is_refused_saying_where() {
        assert!(split(&["{\"leads\": []}"]).unwrap_err().contains("byte 1"));
        assert!(split(&["[{}", ""]).unwrap_err().contains("no closing"));
        assert!(split(&["[{}] x"]).unwrap_err().contains("after the array"));
        assert!(split(&["[{} {}]"]).unwrap_err().contains("`,` or `]`"));
        assert!(split(&["[1,,2]"]).unwrap_err().contains("empty element"));
        assert!(split(&[""]).unwrap_err().contains("empty"));
    }

    #[test]
    fn records_are_counted_across_chunks_without_blank_lines_or_a_csv_header() {
        let mut counter = RecordCounter::default();
        for chunk in ["{\"a\":1}\n\n  \n{\"a\"", ":2}\r\n{\"a\":3}"] {
            counter.count(chunk.as_bytes());
        }
        assert_eq!(counter.records(BodyFormat::Ndjson), 3);
        assert_eq!(counter.records(BodyFormat::Csv), 2);
    }
}
