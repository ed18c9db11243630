//! The usage log: every provider request a run sends, written to a file of
//! its own *before* it is sent, and its row when it ends, so a run that is
//! killed, fails or loses its usage writer still leaves every paid call on
//! record. The next run into the same output, or `leadflow sql` on it,
//! commits a dead run's log as `provider_usage` rows ([`crate::publish`]);
//! a request with no row after it becomes a row with outcome `unknown`.
//!
//! One file per run, `{write_id}.log`, one JSON line per entry, appended
//! with one `write` each (no buffer a kill could lose); the run holds an
//! exclusive lock on it while it lives, which the kernel drops however the
//! process ends, so "unlocked" means "dead". The file survives a killed
//! process; it is not fsynced per request (a power loss may take the last
//! moments of it, as it takes the page cache).
//!
//! A stream keeps one log per cut it enriches, naming the cut: it is
//! removed the moment the cut is committed, and a dead one is committed
//! unless the stream ledger holds its cut's marker (the cut, and with it
//! the calls, made it into the output). A stream recovers dead logs when
//! it starts, before it consumes anything.
//!
//! Local outputs keep their logs in `OUT/_leadflow/usage-log/`; an output on
//! S3, where nothing can be appended, keeps them on this machine under
//! `$LEADFLOW_STATE_DIR` (default `~/.local/state/leadflow`), so a killed run
//! there is recovered by the next run or `leadflow sql` on the same machine.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use leadflow_waterfall::{Attempt, LeadRef, Outcome, Policy, ProviderUsage, Sending, UsageJournal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Location;

const SUFFIX: &str = ".log";

/// One line of a usage log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Entry<'a> {
    /// The first line: whose log it is.
    Run {
        run_id: Cow<'a, str>,
        write_id: Cow<'a, str>,
        /// The stream cut the log is for (a run's has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cut: Option<CutOf>,
    },
    /// A request about to be sent.
    Sending {
        ticket: u64,
        provider: Cow<'a, str>,
        attempt: i32,
        started_at: i64,
        lead_id: Option<Cow<'a, str>>,
        organization_id: Option<Cow<'a, str>>,
        /// The order the lead's providers were asked in (absent in logs
        /// written before there was a choice).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<Cow<'a, str>>,
    },
    /// A finished call (`ticket` of its request) or a skip.
    Row {
        ticket: Option<u64>,
        provider: Cow<'a, str>,
        attempt: i32,
        outcome: Cow<'a, str>,
        http_status: Option<i32>,
        cost_micros: i64,
        latency_ms: i64,
        started_at: i64,
        error: Option<Cow<'a, str>>,
        lead_id: Option<Cow<'a, str>>,
        organization_id: Option<Cow<'a, str>>,
        /// The order the lead's providers were asked in (absent in logs
        /// written before there was a choice).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<Cow<'a, str>>,
    },
}

/// The stream cut a usage log is for: its calls are in the output exactly
/// when the cut is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutOf {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

/// Where the usage logs of the runs into `location` are kept.
pub fn dir_for(location: &Location) -> PathBuf {
    match &location.local_root {
        Some(root) => root.join(crate::publish::META_DIR).join("usage-log"),
        None => {
            let url = location.url_of("");
            let key = xxhash_rust::xxh3::xxh3_64(url.as_bytes());
            state_dir().join("usage-log").join(format!("{key:016x}"))
        }
    }
}

fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LEADFLOW_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("leadflow");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/leadflow"),
        None => std::env::temp_dir().join("leadflow-state"),
    }
}

/// A live run's usage log. Its requests and rows are appended by the
/// waterfall (as its [`UsageJournal`]); [`UsageLog::remove`] deletes it once
/// the run's usage is committed.
#[derive(Debug)]
pub struct UsageLog {
    path: PathBuf,
    /// Locked while open; `None` once closed.
    file: Mutex<Option<File>>,
    next_ticket: AtomicU64,
    warned: AtomicBool,
}

impl UsageLog {
    /// Starts the log of run `write_id` in `dir`. The file appears under its
    /// final name only once it is locked and names its run, so a recovery
    /// never takes a log being born for a dead one.
    pub fn create(dir: &Path, run_id: &str, write_id: &str) -> Result<Arc<UsageLog>> {
        Self::create_for(dir, run_id, write_id, None)
    }

    /// Starts the log of one stream cut (see [`CutJournal`]).
    pub fn create_for_cut(
        dir: &Path,
        run_id: &str,
        write_id: &str,
        cut: CutOf,
    ) -> Result<Arc<UsageLog>> {
        Self::create_for(dir, run_id, write_id, Some(cut))
    }

    fn create_for(
        dir: &Path,
        run_id: &str,
        write_id: &str,
        cut: Option<CutOf>,
    ) -> Result<Arc<UsageLog>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(format!("{write_id}{SUFFIX}"));
        let born = dir.join(format!("{write_id}.new"));
        let mut file = File::options()
            .append(true)
            .create_new(true)
            .open(&born)
            .map_err(|e| Error::io(&born, e))?;
        file.try_lock().map_err(|e| {
            Error::Internal(format!("{}: cannot lock a new file: {e}", born.display()))
        })?;
        let mut header = serde_json::to_vec(&Entry::Run {
            run_id: run_id.into(),
            write_id: write_id.into(),
            cut,
        })
        .expect("an entry serializes");
        header.push(b'\n');
        file.write_all(&header).map_err(|e| Error::io(&born, e))?;
        std::fs::rename(&born, &path).map_err(|e| Error::io(&path, e))?;
        Ok(Arc::new(UsageLog {
            path,
            file: Mutex::new(Some(file)),
            next_ticket: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }))
    }

    /// Closes the log, releasing its lock: from here it is a dead run's,
    /// for [`dead_logs`] to commit. Later entries are not kept.
    pub fn close(&self) {
        self.file.lock().expect("usage log lock").take();
    }

    /// Deletes the log: the run's usage is committed.
    pub fn remove(&self) {
        self.close();
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not delete a committed run's usage log");
        }
    }

    fn append(&self, entry: &Entry<'_>) {
        let mut line = serde_json::to_vec(entry).expect("an entry serializes");
        line.push(b'\n');
        let mut file = self.file.lock().expect("usage log lock");
        let Some(file) = file.as_mut() else { return };
        // One write per line: a kill leaves whole lines, never a line torn
        // by a buffer.
        if let Err(e) = file.write_all(&line)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "cannot write the usage log: a crash from here on may lose provider calls from provider_usage"
            );
        }
    }
}

impl UsageJournal for UsageLog {
    fn sending(&self, request: Sending<'_>) -> u64 {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.append(&Entry::Sending {
            ticket,
            provider: request.provider.into(),
            attempt: request.attempt,
            started_at: request.started_at,
            lead_id: request.lead.lead_id.as_deref().map(Cow::Borrowed),
            organization_id: request.lead.organization_id.as_deref().map(Cow::Borrowed),
            policy: request.policy.map(|p| p.as_str().into()),
        });
        ticket
    }

    fn ended(&self, ticket: Option<u64>, usage: &ProviderUsage) {
        let a = &usage.attempt;
        self.append(&Entry::Row {
            ticket,
            provider: Cow::Borrowed(&a.provider),
            attempt: a.attempt,
            outcome: a.outcome.as_str().into(),
            http_status: a.http_status,
            cost_micros: a.cost_micros,
            latency_ms: a.latency_ms,
            started_at: a.started_at,
            error: a.error.as_deref().map(Cow::Borrowed),
            lead_id: usage.lead.lead_id.as_deref().map(Cow::Borrowed),
            organization_id: usage.lead.organization_id.as_deref().map(Cow::Borrowed),
            policy: a.policy.map(|p| p.as_str().into()),
        });
    }
}

/// A stream worker's journal: the usage log of the cut it is enriching
/// (a worker enriches one cut at a time, and every call of a cut ends
/// before the cut is committed), started by [`CutJournal::begin`] and
/// handed back by [`CutJournal::end`].
#[derive(Debug, Default)]
pub struct CutJournal {
    current: Mutex<Option<Arc<UsageLog>>>,
}

impl CutJournal {
    /// Journals into `log` from here on.
    pub fn begin(&self, log: Arc<UsageLog>) {
        *self.current.lock().expect("cut journal") = Some(log);
    }

    /// The cut's log, no longer journaled into.
    pub fn end(&self) -> Option<Arc<UsageLog>> {
        self.current.lock().expect("cut journal").take()
    }

    fn log(&self) -> Option<Arc<UsageLog>> {
        self.current.lock().expect("cut journal").clone()
    }
}

impl UsageJournal for CutJournal {
    fn sending(&self, request: Sending<'_>) -> u64 {
        // Outside a cut nothing is asked; a ticket then pairs with nothing.
        self.log().map_or(0, |log| log.sending(request))
    }

    fn ended(&self, ticket: Option<u64>, usage: &ProviderUsage) {
        if let Some(log) = self.log() {
            log.ended(ticket, usage);
        }
    }
}

/// The log of a run that is no longer alive, locked by whoever found it
/// until it is committed and removed.
#[derive(Debug)]
pub struct DeadLog {
    pub path: PathBuf,
    pub run_id: String,
    pub write_id: String,
    /// The stream cut it was for, if a stream's.
    pub cut: Option<CutOf>,
    _lock: File,
}

/// The logs in `dir` whose runs are gone (nobody holds their lock).
pub fn dead_logs(dir: &Path) -> Result<Vec<DeadLog>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut dead = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // A `.new` file is a log being born (created, then locked, then
        // renamed): it holds no request yet, and between its creation and
        // its lock nothing tells a live one from one whose run died right
        // there, so it is left alone (a kill in that moment leaves a file
        // of one line).
        if !name.ends_with(SUFFIX) {
            continue;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue, // a live run's
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let mut first = String::new();
        BufReader::new(&file)
            .read_line(&mut first)
            .map_err(|e| Error::io(&path, e))?;
        let Ok(Entry::Run {
            run_id,
            write_id,
            cut,
        }) = serde_json::from_str::<Entry<'_>>(&first)
        else {
            return Err(Error::Usage(format!(
                "{}: not a leadflow usage log (its first line names no run)",
                path.display()
            )));
        };
        dead.push(DeadLog {
            run_id: run_id.into_owned(),
            write_id: write_id.into_owned(),
            cut,
            path,
            _lock: file,
        });
    }
    dead.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(dead)
}

impl DeadLog {
    /// Reads the log: every row it holds, in order, then one `unknown` row
    /// per request whose row never came.
    pub fn reader(&self) -> Result<LogReader> {
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut lines = BufReader::new(file).lines();
        lines.next(); // the run line
        Ok(LogReader {
            path: self.path.clone(),
            lines,
            pending: HashMap::new(),
            counts: ReplayCounts::default(),
            torn: 0,
            done: false,
        })
    }

    /// Deletes the log: its rows are committed.
    pub fn remove(self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }
}

/// A dead log's rows, a chunk at a time (memory bounded by the chunk and
/// the requests in flight when the run stopped, not by the log).
pub struct LogReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    /// Requests whose row has not come (yet), by ticket.
    pending: HashMap<u64, ProviderUsage>,
    counts: ReplayCounts,
    torn: usize,
    done: bool,
}

impl LogReader {
    /// Up to `n` rows; `None` once all are read.
    pub fn next_chunk(&mut self, n: usize) -> Result<Option<Vec<ProviderUsage>>> {
        if self.done {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(n.min(8192));
        while rows.len() < n {
            let Some(line) = self.lines.next() else {
                self.done = true;
                if self.torn > 0 {
                    tracing::warn!(path = %self.path.display(), lines = self.torn, "usage log lines that could not be read were skipped");
                }
                let mut unanswered: Vec<ProviderUsage> =
                    std::mem::take(&mut self.pending).into_values().collect();
                unanswered.sort_by_key(|u| u.attempt.started_at);
                self.counts.unknown = unanswered.len() as u64;
                rows.extend(unanswered);
                break;
            };
            let line = line.map_err(|e| Error::io(&self.path, e))?;
            match serde_json::from_str::<Entry<'_>>(&line) {
                Ok(Entry::Sending {
                    ticket,
                    provider,
                    attempt,
                    started_at,
                    lead_id,
                    organization_id,
                    policy,
                }) => {
                    let unanswered = Attempt {
                        provider: provider.as_ref().into(),
                        attempt,
                        outcome: Outcome::Unknown,
                        http_status: None,
                        cost_micros: 0,
                        latency_ms: 0,
                        started_at,
                        error: Some(UNANSWERED.into()),
                        policy: policy.as_deref().and_then(Policy::parse),
                    };
                    self.pending
                        .insert(ticket, usage(lead_id, organization_id, unanswered));
                }
                Ok(Entry::Row {
                    ticket,
                    provider,
                    attempt,
                    outcome,
                    http_status,
                    cost_micros,
                    latency_ms,
                    started_at,
                    error,
                    lead_id,
                    organization_id,
                    policy,
                }) => {
                    if let Some(ticket) = ticket {
                        self.pending.remove(&ticket);
                    }
                    let outcome = Outcome::parse(&outcome).ok_or_else(|| {
                        Error::Usage(format!(
                            "{}: unknown outcome `{outcome}`",
                            self.path.display()
                        ))
                    })?;
                    let ended = Attempt {
                        provider: provider.as_ref().into(),
                        attempt,
                        outcome,
                        http_status,
                        cost_micros,
                        latency_ms,
                        started_at,
                        error: error.map(Cow::into_owned),
                        policy: policy.as_deref().and_then(Policy::parse),
                    };
                    rows.push(usage(lead_id, organization_id, ended));
                    self.counts.rows += 1;
                }
                // A line cut by a full disk, or an edit by hand.
                Ok(Entry::Run { .. }) | Err(_) => self.torn += 1,
            }
        }
        Ok(Some(rows))
    }

    /// What the log held; final once [`LogReader::next_chunk`] gave `None`.
    pub fn counts(&self) -> ReplayCounts {
        self.counts
    }
}

/// The `error` of a request whose answer was never recorded.
pub const UNANSWERED: &str = "no answer recorded: the run stopped while this request was in flight; the provider may have billed it";

/// What a dead log held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Rows of calls and skips that ended.
    pub rows: u64,
    /// Requests sent whose answer was never recorded.
    pub unknown: u64,
}

fn usage(
    lead_id: Option<Cow<'_, str>>,
    organization_id: Option<Cow<'_, str>>,
    attempt: Attempt,
) -> ProviderUsage {
    ProviderUsage {
        lead: LeadRef {
            lead_id: lead_id.map(|s| s.as_ref().into()),
            organization_id: organization_id.map(|s| s.as_ref().into()),
        },
        attempt,
    }
}
