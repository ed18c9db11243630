//! What `serve` answers, committed to the output in epochs: the leads,
//! their provider calls and the items that were not leads, one commit
//! every `[api] commit_ms` while there is traffic.
//!
//! Two slots take turns. Each has its own waterfall (over the shared
//! limits, cache and budget), whose usage ledger journals every request
//! into the slot's usage log before it is sent. An execution (the
//! requests waiting together, see [`Epochs::enrich`]) enters the current
//! slot and stays in it until its output is held (before any of its
//! requests is answered). Every `commit_ms` the
//! committer makes the other slot current, waits until the executions in
//! the old one are done (so each of their calls has its row), writes
//! what the slot holds, commits it as one run and removes its log, then
//! gives the slot a new log. A kill at any point leaves the calls not yet
//! committed in a log, which the next start (or any run, stream or `sql`
//! on the output) commits; the leads answered in the last epoch and not
//! yet committed are not in the tables then, though every call they cost is.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use leadflow_waterfall::{ProviderUsage, UsageLedger};
use tokio::sync::{RwLock, RwLockReadGuard, mpsc, oneshot, watch};

use super::lookup::{Answer, ResultColumns, Sent};
use super::{ServeConfig, ServeSummary};
use crate::engine::{BatchPlan, OutputCounts, RunStamp};
use crate::error::{Error, Result};
use crate::providers::Providers;
use crate::publish::{Publisher, new_write_id};
use crate::sinks::parquet::{ParquetSinkConfig, PartitionedWriter, WrittenFile};
use crate::sinks::rejects::Reject;
use crate::sinks::usage_log::{self, CutJournal, UsageLog};
use crate::sinks::write_usage_and_rejects;
use crate::storage::{self, Location};
use crate::telemetry;

/// Usage rows a slot's lookups may report before its drain takes them.
const USAGE_QUEUE: usize = 16 * 1024;

/// Rows per batch handed to the Parquet writer at a commit (a batch ends
/// at the request's that reaches it): about a millisecond of encoding,
/// after which the commit yields.
const WRITE_BATCH_ROWS: usize = 1024;

/// Leads of requests waiting together enriched as one batch: a batch
/// ends at the request that reaches this.
const GROUP_ROWS: usize = 1024;

/// Times a round yields while requests keep joining it.
const MAX_YIELDS: usize = 4;

pub(super) struct Epochs {
    location: Location,
    run_id: String,
    logs: PathBuf,
    slots: [Slot; 2],
    /// The slot new requests enter.
    current: AtomicUsize,
    every: Duration,
    write_schema: SchemaRef,
    /// The sandbox and the fleet the waterfalls use, alive until closed.
    providers: Arc<Providers>,
    summary: Mutex<ServeSummary>,
    /// Why the last commit that wrote failed, until one succeeds.
    unwritable: Mutex<Option<String>>,
    stop_committing: watch::Sender<bool>,
    /// The requests waiting to be enriched together.
    forming: Mutex<Forming>,
    /// How many tasks enriching requests together are running:
    /// [`Self::close`] waits for none before its last commits.
    groups: watch::Sender<usize>,
    /// Fills a blank `country` of the requests' leads.
    default_country: Option<&'static str>,
}

/// Requests waiting for the group a task has been started for.
#[derive(Default)]
struct Forming {
    waiting: Vec<Waiting>,
    /// A group's task is started and has not yet taken `waiting`.
    started: bool,
}

/// One request's leads, waiting to be enriched with others'.
struct Waiting {
    sent: Sent,
    /// Its answer's JSON body, or why there is none.
    reply: oneshot::Sender<Result<Vec<u8>>>,
}

struct Slot {
    engine: BatchPlan,
    journal: Arc<CutJournal>,
    /// The write id of the slot's log, which names its files.
    log_id: Mutex<String>,
    /// Read by each request in the slot, written by the commit.
    gate: RwLock<()>,
    held: Arc<Mutex<Held>>,
    /// Asks the drain to take every row its channel holds now.
    flush: mpsc::Sender<oneshot::Sender<()>>,
}

/// What a slot's requests wrote and its commit has not.
#[derive(Default)]
struct Held {
    leads: Vec<RecordBatch>,
    rejects: Vec<Reject>,
    usage: Vec<ProviderUsage>,
    counts: OutputCounts,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.leads.is_empty() && self.rejects.is_empty() && self.usage.is_empty()
    }
}

impl Epochs {
    pub(super) async fn start(config: &ServeConfig) -> Result<Arc<Self>> {
        let location = storage::create(&config.out)?;
        // The calls a killed server journaled go into the output first.
        Publisher::tidy(&location).await?;
        let logs = usage_log::dir_for(&location);
        let journals: [Arc<CutJournal>; 2] = Default::default();
        let mut receivers = Vec::new();
        let mut ledgers = Vec::new();
        for journal in &journals {
            let (ledger, rx) = UsageLedger::channel(USAGE_QUEUE);
            ledgers.push(ledger.with_journal(journal.clone()));
            receivers.push(rx);
        }
        let (providers, waterfalls) =
            Providers::start_scoped(&config.providers, UsageLedger::discard(), ledgers).await?;
        let query = config.providers.enrichment_query(&config.query);
        let batch_rows = config.providers.api.max_lookup_leads;
        let mut slots = Vec::new();
        for ((journal, waterfall), rx) in journals.into_iter().zip(waterfalls).zip(receivers) {
            let engine = BatchPlan::new(&query, waterfall, batch_rows)
                .await
                .map_err(|e| config.providers.explain_query_error(e))?;
            let id = new_write_id(&config.run_id);
            journal.begin(UsageLog::create(&logs, &config.run_id, &id)?);
            let held = Arc::new(Mutex::new(Held::default()));
            let (flush, flushes) = mpsc::channel(1);
            tokio::spawn(drain(rx, flushes, held.clone()));
            slots.push(Slot {
                engine,
                journal,
                log_id: Mutex::new(id),
                gate: RwLock::new(()),
                held,
                flush,
            });
        }
        let write_schema = slots[0].engine.plan.write_schema.clone();
        let slots: [Slot; 2] = slots
            .try_into()
            .map_err(|_| Error::Internal("serve: two slots were not built".into()))?;
        Ok(Arc::new(Self {
            location,
            run_id: config.run_id.clone(),
            logs,
            slots,
            current: AtomicUsize::new(0),
            every: Duration::from_millis(config.providers.api.commit_ms),
            write_schema,
            providers: Arc::new(providers),
            summary: Mutex::new(ServeSummary::default()),
            unwritable: Mutex::new(None),
            stop_committing: watch::channel(false).0,
            forming: Mutex::default(),
            groups: watch::channel(0).0,
            default_country: config.default_country,
        }))
    }

    /// The providers' rate limiter, which per-key limits share.
    pub(super) fn limiter(&self) -> Arc<dyn leadflow_waterfall::RateLimiter> {
        self.providers.limiter.clone()
    }

    /// The providers, which jobs' waterfalls share.
    pub(super) fn providers(&self) -> Arc<Providers> {
        self.providers.clone()
    }

    /// The schema `enriched_leads` is written with.
    pub(super) fn write_schema(&self) -> SchemaRef {
        self.write_schema.clone()
    }

    /// The fleet the waterfalls share limits with, when Redis is configured.
    pub(super) fn fleet(&self) -> Option<&leadflow_fleet::Fleet> {
        self.providers.fleet.as_ref()
    }

    /// The output it commits to.
    pub(super) fn location(&self) -> &Location {
        &self.location
    }

    /// Enters the current slot (or the other, when the current one is
    /// being committed), for as long as the guard lives.
    async fn enter(&self) -> (&Slot, RwLockReadGuard<'_, ()>) {
        let i = self.current.load(Ordering::Acquire);
        for slot in [&self.slots[i], &self.slots[1 - i]] {
            if let Ok(guard) = slot.gate.try_read() {
                return (slot, guard);
            }
        }
        let slot = &self.slots[i];
        (slot, slot.gate.read().await)
    }

    /// Enriches one request's leads and holds the output (and the items
    /// that were not leads) for the next commit: its answer's JSON body,
    /// one item per lead sent, in order.
    ///
    /// When the query keeps every lead (a plan of projections and function
    /// calls, as the shipped query is), the requests waiting at the same
    /// moment are decoded into one batch and enriched together: running
    /// the plan costs about the same for one lead as for a hundred, and
    /// under load that cost was most of a lookup's, with building each
    /// request's own lead batch (and concatenating them) next. Only
    /// requests that [`Sent::goes_with`] one another: one organization's,
    /// under one tier cap. The first request to wait starts the round in
    /// a task of its own (so a client that hangs up takes no one else's
    /// answer with it); the task yields, which lets the requests this
    /// thread already read join (again while more joined, up to
    /// [`MAX_YIELDS`] times), then takes every request waiting and runs
    /// each group. A request alone waits two yields, no timer. Groups run
    /// concurrently: a group waiting on providers holds up only its own
    /// requests. A group that fails is run again one request at a time,
    /// so a request fails only for its own leads.
    pub(super) async fn enrich(self: &Arc<Self>, sent: Sent) -> Result<Vec<u8>> {
        if !self.slots[0].engine.keeps_rows() {
            return self.enrich_alone(&sent).await;
        }
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut forming = self.forming.lock().expect("forming lock");
            forming.waiting.push(Waiting { sent, reply });
            !std::mem::replace(&mut forming.started, true)
        };
        if start {
            self.spawn_group(self.clone().enrich_waiting());
        }
        match answer.await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Internal(
                "the lookup's group ended without answering it".into(),
            )),
        }
    }

    /// Enriches one request's leads as a batch of their own.
    async fn enrich_alone(&self, sent: &Sent) -> Result<Vec<u8>> {
        let mut builder = Sent::builder(std::iter::once(sent), self.default_country);
        let (answer, rejects) = sent.decode(&mut builder);
        match builder.finish() {
            Ok(leads) => self.answer_alone(answer, leads, rejects).await,
            Err(e) => {
                self.hold_rejects(rejects).await;
                Err(e)
            }
        }
    }

    /// Enriches one request's lead rows and answers it from their output.
    async fn answer_alone(
        &self,
        answer: Answer,
        leads: RecordBatch,
        rejects: Vec<Reject>,
    ) -> Result<Vec<u8>> {
        telemetry::lookup_group(1);
        let out = self.enrich_batch(leads.clone(), rejects).await?;
        Ok(answer.fill(&leads, &out))
    }

    /// Holds `rejects` for the next commit.
    async fn hold_rejects(&self, rejects: Vec<Reject>) {
        if !rejects.is_empty() {
            let (slot, _in) = self.enter().await;
            slot.held.lock().expect("held lock").rejects.extend(rejects);
        }
    }

    /// Runs `work` in a task of its own, which [`Self::close`] waits for.
    fn spawn_group(self: &Arc<Self>, work: impl Future<Output = ()> + Send + 'static) {
        /// Counts its task out however it ends (a panic included).
        struct Running(Arc<Epochs>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.groups.send_modify(|n| *n -= 1);
            }
        }
        // Counted in before the task that starts it can end.
        self.groups.send_modify(|n| *n += 1);
        let running = Running(self.clone());
        tokio::spawn(async move {
            let _running = running;
            work.await;
        });
    }

    /// Takes the requests waiting once this task has yielded and enriches
    /// them by group: requests that [`Sent::goes_with`] one another, up to
    /// about [`GROUP_ROWS`] leads; a lone group in this task, several each
    /// in a task of its own. Requests whose client hung up are dropped
    /// unanswered, as a request's own execution is when hyper drops its
    /// handler.
    async fn enrich_waiting(self: Arc<Self>) {
        let mut seen = 0;
        for _ in 0..MAX_YIELDS {
            tokio::task::yield_now().await;
            let waiting = self.forming.lock().expect("forming lock").waiting.len();
            if waiting == seen {
                break;
            }
            seen = waiting;
        }
        let waiting = {
            let mut forming = self.forming.lock().expect("forming lock");
            forming.started = false;
            std::mem::take(&mut forming.waiting)
        };
        let mut together: Vec<Vec<Waiting>> = Vec::new();
        for request in waiting.into_iter().filter(|w| !w.reply.is_closed()) {
            match together
                .iter_mut()
                .find(|t| t[0].sent.goes_with(&request.sent))
            {
                Some(requests) => requests.push(request),
                None => together.push(vec![request]),
            }
        }
        let mut groups = Vec::new();
        for requests in together {
            let sizes: Vec<usize> = groups_of_rows(&requests, |w| w.sent.len(), GROUP_ROWS)
                .map(<[Waiting]>::len)
                .collect();
            let mut requests = requests.into_iter();
            for n in sizes {
                groups.push(requests.by_ref().take(n).collect::<Vec<Waiting>>());
            }
        }
        // One group (the usual case) runs in this task, already its own.
        if groups.len() == 1 {
            let group = groups.pop().expect("one group");
            return self.enrich_together(group).await;
        }
        for group in groups {
            let epochs = self.clone();
            self.spawn_group(async move { epochs.enrich_together(group).await });
        }
    }

    /// Decodes `group`'s leads into one batch, enriches it and answers
    /// each request from its own rows; if the execution fails, each
    /// request alone.
    async fn enrich_together(&self, group: Vec<Waiting>) {
        telemetry::lookup_group(group.len());
        let mut builder = Sent::builder(group.iter().map(|w| &w.sent), self.default_country);
        let mut answers = Vec::with_capacity(group.len());
        let mut rejects = Vec::with_capacity(group.len());
        for waiting in &group {
            let (answer, refused) = waiting.sent.decode(&mut builder);
            answers.push(answer);
            rejects.push(refused);
        }
        let leads = match builder.finish() {
            Ok(leads) => leads,
            Err(e) => {
                self.hold_rejects(rejects.into_iter().flatten().collect())
                    .await;
                for waiting in group {
                    let _ = waiting.reply.send(Err(Error::Internal(e.to_string())));
                }
                return;
            }
        };
        let out = match self.enrich_batch(leads.clone(), Vec::new()).await {
            Ok(out) => out,
            // Nothing of the group is held: each request runs alone.
            Err(e) => {
                tracing::warn!(error = %e, requests = group.len(), "a group of lookups failed; each is enriched alone");
                let mut offset = 0;
                for ((waiting, answer), refused) in group.into_iter().zip(answers).zip(rejects) {
                    let own = leads.slice(offset, answer.rows());
                    offset += answer.rows();
                    // Nobody waits for it: its leads are not enriched again.
                    if waiting.reply.is_closed() {
                        self.hold_rejects(refused).await;
                        continue;
                    }
                    let body = self.answer_alone(answer, own, refused).await;
                    let _ = waiting.reply.send(body);
                }
                return;
            }
        };
        // The output is held from here: every request is answered from it.
        let rows = self.one_batch(out).and_then(|rows| {
            if rows.num_rows() == leads.num_rows() {
                Ok(rows)
            } else {
                Err(Error::Internal(format!(
                    "the enrichment query returned {} rows for {} leads",
                    rows.num_rows(),
                    leads.num_rows()
                )))
            }
        });
        drop(leads);
        // Held before any request is answered, so before the server can
        // make its last commit.
        self.hold_rejects(rejects.into_iter().flatten().collect())
            .await;
        let columns = rows.as_ref().map(ResultColumns::of);
        let mut offset = 0;
        for (waiting, answer) in group.into_iter().zip(answers) {
            let n = answer.rows();
            let body = match &columns {
                Ok(columns) => Ok(answer.in_order(columns, offset)),
                Err(e) => Err(Error::Internal(e.to_string())),
            };
            offset += n;
            // A request whose client hung up no longer waits.
            let _ = waiting.reply.send(body);
        }
    }

    /// An execution's output as one batch.
    fn one_batch(&self, out: Vec<RecordBatch>) -> Result<RecordBatch> {
        match <[RecordBatch; 1]>::try_from(out) {
            Ok([rows]) => Ok(rows),
            Err(out) => {
                let schema = match out.first() {
                    Some(batch) => batch.schema(),
                    None => self.slots[0].engine.plan.physical.schema(),
                };
                Ok(concat_batches(&schema, &out)?)
            }
        }
    }

    /// Enriches `leads` in the current slot and holds the output for the
    /// next commit, and `rejects` whether or not the execution succeeds.
    /// The output batches as written.
    async fn enrich_batch(
        &self,
        leads: RecordBatch,
        rejects: Vec<Reject>,
    ) -> Result<Vec<RecordBatch>> {
        let stamp = RunStamp {
            run_id: self.run_id.clone(),
            at_micros: Utc::now().timestamp_micros(),
        };
        let (slot, _in) = self.enter().await;
        let mut counts = OutputCounts::default();
        let executed: Result<Vec<RecordBatch>> = async {
            let mut out = Vec::new();
            if leads.num_rows() > 0 {
                let mut batches = slot.engine.execute(leads).await?;
                while let Some(batch) = batches.next().await {
                    out.push(slot.engine.plan.output(&batch?, &stamp, &mut counts)?);
                }
            }
            Ok(out)
        }
        .await;
        let mut held = slot.held.lock().expect("held lock");
        held.rejects.extend(rejects);
        let out = executed?;
        held.leads.extend(out.iter().cloned());
        held.counts.merge(counts);
        Ok(out)
    }

    /// Commits a slot every `every`, the slots in turn, until closed.
    pub(super) async fn commit_every(self: Arc<Self>) {
        let mut stop = self.stop_committing.subscribe();
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let i = self.current.load(Ordering::Acquire);
            self.current.store(1 - i, Ordering::Release);
            if let Err(e) = self.commit(i).await {
                tracing::warn!(error = %e, "could not commit the leads served; their provider calls are committed from the usage log");
            }
        }
    }

    /// Why the server is not ready, if it is not: Redis, when configured,
    /// does not answer, or the last commit could not write the output.
    pub(super) fn not_ready(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Some(fleet) = &self.providers.fleet
            && !fleet.redis().online()
        {
            why.push("Redis does not answer".to_string());
        }
        if let Some(e) = self.unwritable.lock().expect("unwritable lock").clone() {
            why.push(format!("the output could not be written ({e})"));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Stops [`Self::commit_every`] after the commit it is making.
    pub(super) fn stop_committing(&self) {
        let _ = self.stop_committing.send(true);
    }

    /// After the last request was answered: commits both slots, closes the
    /// waterfalls (leases and spend go back to the fleet) and says what
    /// was served.
    pub(super) async fn close(&self) -> Result<ServeSummary> {
        self.stop_committing();
        // A group a hung-up request left may still be running: what it
        // pays for is committed with the rest.
        let _ = self.groups.subscribe().wait_for(|n| *n == 0).await;
        let first = self.current.load(Ordering::Acquire);
        let mut result = Ok(());
        for i in [1 - first, first] {
            if let Err(e) = self.commit(i).await {
                tracing::warn!(error = %e, "could not commit the leads served last");
                result = result.and(Err(e));
            }
        }
        self.providers.waterfall.close().await;
        if let Some(fleet) = &self.providers.fleet {
            fleet.leave().await;
        }
        // Both logs are empty now (or left for recovery by a failed commit).
        for slot in &self.slots {
            if let Some(log) = slot.journal.end() {
                log.remove();
            }
        }
        result.map(|()| self.summary.lock().expect("summary lock").clone())
    }

    /// Commits what slot `i` holds, once the requests in it are answered.
    async fn commit(&self, i: usize) -> Result<()> {
        let slot = &self.slots[i];
        let _all_answered = slot.gate.write().await;
        let (ack, acked) = oneshot::channel();
        if slot.flush.send(ack).await.is_ok() {
            let _ = acked.await;
        }
        let held = std::mem::take(&mut *slot.held.lock().expect("held lock"));
        if held.is_empty() {
            return Ok(());
        }
        let log = slot
            .journal
            .end()
            .ok_or_else(|| Error::Internal("serve: a slot has no usage log".into()))?;
        let id = slot.log_id.lock().expect("log id lock").clone();
        let written = self.write(&id, &log, held).await;
        *self.unwritable.lock().expect("unwritable lock") =
            written.as_ref().err().map(ToString::to_string);
        // The next epoch's calls go to a new log, whatever became of this one.
        let next = new_write_id(&self.run_id);
        slot.journal
            .begin(UsageLog::create(&self.logs, &self.run_id, &next)?);
        *slot.log_id.lock().expect("log id lock") = next;
        written
    }

    /// Writes and commits one epoch as the run `id`, then removes its log;
    /// on failure the log's calls are committed alone (or left to the next
    /// writer into the output).
    async fn write(&self, id: &str, log: &UsageLog, held: Held) -> Result<()> {
        let publisher =
            match Publisher::open_as(self.location.clone(), &self.run_id, id.into()).await {
                Ok(publisher) => publisher,
                Err(e) => {
                    log.close();
                    return Err(e);
                }
            };
        let staging = publisher.staging();
        let (rejects, usage_rows) = (held.rejects.len() as u64, held.usage.len() as u64);
        let files = match self.write_files(&staging, id, &held).await {
            Ok(files) => files,
            Err(e) => {
                publisher.abandon(Some(log)).await;
                return Err(e);
            }
        };
        if let Err(e) = publisher.commit(Vec::new(), None, &files).await {
            log.close();
            return Err(e);
        }
        log.remove();
        held.counts.count_in_metrics();
        telemetry::rejects(rejects);
        let mut summary = self.summary.lock().expect("summary lock");
        summary.leads_written += held.counts.rows;
        summary.rejects += rejects;
        summary.usage_rows += usage_rows;
        summary.commits += 1;
        Ok(())
    }

    async fn write_files(
        &self,
        staging: &Location,
        id: &str,
        held: &Held,
    ) -> Result<Vec<WrittenFile>> {
        let today = Utc::now().date_naive();
        let sink =
            |table: &str, dt: Option<&str>| ParquetSinkConfig::new(table, id.into(), dt, today);
        let mut files = Vec::new();
        if !held.leads.is_empty() {
            let mut writer = PartitionedWriter::new(
                staging.clone(),
                sink("enriched_leads", Some("received_at")),
                self.write_schema.clone(),
            );
            // An execution's leads are a batch of one request's few rows
            // or of a group's; written one by one, each paid the writer's
            // per-batch work (the `dt` split, a write per column, the
            // memory check). Between batches the commit yields: encoding
            // a second of traffic takes tens of milliseconds, which the
            // lookups waiting on this thread would otherwise wait out
            // (their p99 did, at 30k/s: 17 ms, 1.6 ms with no commit).
            for group in groups_of_rows(&held.leads, RecordBatch::num_rows, WRITE_BATCH_ROWS) {
                writer
                    .write(&concat_batches(&self.write_schema, group)?)
                    .await?;
                tokio::task::yield_now().await;
            }
            files.extend(writer.close().await?);
        }
        files.extend(
            write_usage_and_rejects(
                staging,
                sink,
                (&self.run_id, Utc::now().timestamp_micros()),
                &held.usage,
                &held.rejects,
                |_| {},
            )
            .await?,
        );
        Ok(files)
    }
}

/// Consecutive runs of `items` of about `rows` rows each, `rows_of` an
/// item's (a run ends at the item that reaches `rows`).
fn groups_of_rows<T>(
    items: &[T],
    rows_of: impl Fn(&T) -> usize,
    rows: usize,
) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut total = 0;
        let end = rest
            .iter()
            .position(|item| {
                total += rows_of(item);
                total >= rows
            })
            .map_or(rest.len(), |i| i + 1);
        let (group, tail) = rest.split_at(end);
        rest = tail;
        Some(group)
    })
}

/// Moves a slot's usage rows from its ledger's channel into what it holds,
/// all of them when asked to flush.
async fn drain(
    mut rows: mpsc::Receiver<ProviderUsage>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    held: Arc<Mutex<Held>>,
) {
    loop {
        tokio::select! {
            row = rows.recv() => match row {
                Some(row) => held.lock().expect("held lock").usage.push(row),
                None => return,
            },
            ack = flushes.recv() => match ack {
                Some(ack) => {
                    while let Ok(row) = rows.try_recv() {
                        held.lock().expect("held lock").usage.push(row);
                    }
                    let _ = ack.send(());
                }
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::groups_of_rows;

    #[test]
    fn groups_end_at_the_batch_that_reaches_the_rows_and_keep_every_batch_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let batch = |rows: i32| {
            let column = Arc::new(Int32Array::from_iter_values(0..rows));
            RecordBatch::try_new(schema.clone(), vec![column]).unwrap()
        };
        let batches: Vec<_> = [1, 1, 1, 5000, 4000, 1, 8192, 3]
            .into_iter()
            .map(batch)
            .collect();
        let sizes: Vec<Vec<usize>> = groups_of_rows(&batches, RecordBatch::num_rows, 8192)
            .map(|g| g.iter().map(RecordBatch::num_rows).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![vec![1, 1, 1, 5000, 4000], vec![1, 8192], vec![3]]
        );
        assert_eq!(groups_of_rows(&[], RecordBatch::num_rows, 8192).count(), 0);
    }
}
