//! One connection to Redis for the whole process (the connection manager
//! multiplexes every task's commands on it and reconnects by itself), and
//! what "Redis is gone" means here: a command that fails or is not answered
//! in `timeout_ms` marks Redis offline, with one warning; while offline no
//! command is sent (callers use their in-memory state) and the heartbeat
//! pings until Redis answers, then everyone switches back.
//!
//! A Redis that answers but refuses to record (`OOM` under `maxmemory`,
//! `READONLY`, `MISCONF`, a lost `AUTH`) is gone too, for what it matters
//! here: nothing sent was recorded, so what the callers spent is kept and
//! booked when it records again. A command sent and not answered may still
//! be applied later (a stalled Redis runs it when it resumes): callers that
//! hand something back treat that as *maybe applied* and never reuse it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, Script};

use crate::config::RedisConfig;
use crate::keys::Keys;

/// Why a command did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Not sent (Redis offline), or refused before it changed anything
    /// (`OOM`, `READONLY`…): nothing was recorded.
    NotApplied,
    /// Sent and not answered (a timeout, a dropped connection): Redis may
    /// still apply it.
    Unknown,
    /// Redis answered this command with an error about the data it
    /// touched (a foreign value under our prefix: `WRONGTYPE`): Redis is
    /// fine, this command is not. What Redis said.
    Refused(String),
}

impl Failed {
    fn of(e: &RedisError) -> Self {
        match e.code() {
            Some(code) if GONE_CODES.contains(&code) => Self::NotApplied,
            Some(_) => Self::Refused(said(e)),
            _ if e.kind() == ErrorKind::AuthenticationFailed || e.is_connection_refusal() => {
                Self::NotApplied
            }
            _ => Self::Unknown,
        }
    }
}

/// Error replies that mean Redis cannot record anything now, whatever the
/// command: it is gone for the fleet until it records again.
const GONE_CODES: &[&str] = &[
    "OOM",
    "READONLY",
    "MISCONF",
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
];

/// Why a worker cannot use its Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The URL or a `[redis]` setting is wrong: the user's to fix.
    Config(String),
    /// Redis answered and refused this worker (`WRONGPASS`, `NOAUTH`,
    /// `NOPERM`), in Redis's words (never the password).
    Refused(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) | Self::Refused(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Whether `e` says Redis will not serve this worker as it connects.
fn refuses_worker(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Redis's own words for an `AUTH` it refused: the client library reports
/// only "Password authentication failed", so the `AUTH` is sent again on a
/// connection of its own to read the reply.
async fn auth_words(client: &redis::Client, e: &RedisError, timeout: Duration) -> String {
    let info = client.get_connection_info();
    let settings = info.redis_settings();
    let (Some(password), None) = (settings.password(), e.code()) else {
        return said(e);
    };
    let mut auth = redis::cmd("AUTH");
    if let Some(user) = settings.username() {
        auth.arg(user);
    }
    auth.arg(password);
    let bare = info
        .clone()
        .set_redis_settings(redis::RedisConnectionInfo::default());
    let reply = async {
        let mut conn = redis::Client::open(bare)?
            .get_multiplexed_async_connection()
            .await?;
        auth.query_async::<()>(&mut conn).await
    };
    match tokio::time::timeout(timeout, reply).await {
        Ok(Err(refused)) if refused.code().is_some() => said(&refused),
        _ => said(e),
    }
}

/// What Redis said, as it said it (`OOM command not allowed…`), or the
/// client's error when Redis said nothing.
pub(crate) fn said(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

/// The fleet's Redis.
#[derive(Debug)]
pub struct Redis {
    conn: ConnectionManager,
    online: AtomicBool,
    keys: Keys,
    worker: String,
    /// µs added to Redis's clock in scripts: 0, except in tests, which move
    /// time instead of waiting for it.
    shift: AtomicI64,
    timeout: Duration,
    /// Until when a leaving worker tries to book what it owes, set by the
    /// first part that closes and shared by the others.
    leaving_until: OnceLock<Instant>,
    notices: Notices,
}

/// The warning for Redis gone or not recording.
const OUTAGE: &str = "redis";

/// Warnings said once, then counted: a Redis gone for an hour, or a
/// foreign key read on every call, is one line, then one a minute with how
/// many more times it happened, and one when it is over.
#[derive(Debug, Default)]
struct Notices {
    troubled: AtomicBool,
    open: Mutex<HashMap<String, Notice>>,
}

#[derive(Debug)]
struct Notice {
    since: Instant,
    told_at: Instant,
    /// Times it happened again since it was last told.
    again: u64,
}

/// How often a warning still happening is counted in the log.
const RETELL: Duration = Duration::from_secs(60);

impl Notices {
    fn troubled(&self) -> bool {
        self.troubled.load(Ordering::Acquire)
    }

    fn tell(&self, what: &str, message: impl FnOnce() -> String) {
        let mut open = self.open.lock().expect("notices lock");
        let now = Instant::now();
        match open.get_mut(what) {
            None => {
                tracing::warn!("{}", message());
                open.insert(
                    what.to_string(),
                    Notice {
                        since: now,
                        told_at: now,
                        again: 0,
                    },
                );
                self.troubled.store(true, Ordering::Release);
            }
            Some(n) => {
                n.again += 1;
                if now.duration_since(n.told_at) >= RETELL {
                    tracing::warn!(
                        "{}: still, {} more times in the last {} s",
                        message(),
                        n.again,
                        now.duration_since(n.told_at).as_secs()
                    );
                    n.told_at = now;
                    n.again = 0;
                }
            }
        }
    }

    fn over(&self, what: &str, message: &str) {
        let mut open = self.open.lock().expect("notices lock");
        if let Some(n) = open.remove(what) {
            let secs = n.since.elapsed().as_secs();
            if n.again > 0 {
                tracing::info!(
                    "{message} (after {secs} s; {} more times in the last {} s)",
                    n.again,
                    n.told_at.elapsed().as_secs()
                );
            } else {
                tracing::info!("{message} (after {secs} s)");
            }
        }
        self.troubled.store(!open.is_empty(), Ordering::Release);
    }
}

/// How long a leaving worker waits between tries to book what it owes.
const LEAVING_RETRY: Duration = Duration::from_millis(100);

impl Redis {
    pub(crate) async fn connect(
        url: &str,
        config: &RedisConfig,
    ) -> Result<Arc<Self>, ConnectError> {
        config.check().map_err(ConnectError::Config)?;
        let client = redis::Client::open(url)
            .map_err(|e| ConnectError::Config(format!("redis url `{}`: {e}", redacted(url))))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| ConnectError::Config(format!("redis `{}`: {e}", redacted(url))))?;
        let redis = Arc::new(Self {
            conn,
            online: AtomicBool::new(true),
            keys: Keys::new(&config.key_prefix),
            worker: worker_id(),
            shift: AtomicI64::new(0),
            timeout,
            leaving_until: OnceLock::new(),
            notices: Notices::default(),
        });
        // One round trip (with AUTH, when the URL has a password) before
        // any lookup: a Redis that refuses this worker is the operator's to
        // fix, not an outage to wait out with every lead rate_limited.
        let pong: Result<String, RedisError> = redis::cmd("PING")
            .query_async(&mut redis.conn.clone())
            .await;
        match pong {
            Ok(_) => tracing::info!(
                url = redacted(url),
                "sharing limits, cache, breakers and budget through Redis"
            ),
            Err(e) if refuses_worker(&e) => {
                return Err(ConnectError::Refused(format!(
                    "Redis at {} refuses this worker: {}",
                    redacted(url),
                    auth_words(&client, &e, timeout).await
                )));
            }
            Err(e) => {
                redis.online.store(false, Ordering::Release);
                redis.notices.tell(OUTAGE, || {
                    format!(
                        "Redis at {} does not answer ({}): limits, cache, breakers and budget are kept in memory until it does (rate limits allow nothing they cannot account for)",
                        redacted(url),
                        said(&e)
                    )
                });
            }
        }
        Ok(redis)
    }

    /// Whether commands are being sent.
    pub fn online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// This worker's id in the fleet.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Moves the scripts' clock (Redis `TIME`) by `by`: for tests.
    pub fn shift_clock(&self, by: Duration) {
        self.shift
            .fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }

    pub(crate) fn clock_shift(&self) -> i64 {
        self.shift.load(Ordering::SeqCst)
    }

    /// Runs `cmd`; `None` when Redis is offline or the command fails.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Option<T> {
        self.try_query(cmd).await.ok()
    }

    /// Runs `cmd`, saying why it did not go through.
    pub(crate) async fn try_query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Failed> {
        if !self.online() {
            return Err(Failed::NotApplied);
        }
        let result = cmd.query_async(&mut self.conn.clone()).await;
        self.answered(result)
    }

    /// Runs a pipeline in one round trip; `None` when Redis is offline or it fails.
    pub(crate) async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Option<T> {
        self.try_pipe(pipe).await.ok()
    }

    /// Runs a pipeline in one round trip, saying why it did not go through.
    pub(crate) async fn try_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, Failed> {
        if !self.online() {
            return Err(Failed::NotApplied);
        }
        let result = pipe.query_async(&mut self.conn.clone()).await;
        self.answered(result)
    }

    /// Runs a script with `keys` and `args`; `None` when it did not go through.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        lua: &Script,
        keys: &[String],
        args: &[String],
    ) -> Option<T> {
        self.try_script(lua, keys, args).await.ok()
    }

    /// Runs a script with `keys` and `args`, saying why it did not go through.
    pub(crate) async fn try_script<T: FromRedisValue>(
        &self,
        lua: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, Failed> {
        if !self.online() {
            return Err(Failed::NotApplied);
        }
        // `EVALSHA`, loaded again (`SCRIPT LOAD`) only when Redis says it
        // does not know the script (`NOSCRIPT`): retrying on any other
        // error could apply it twice.
        let result = lua
            .key(keys)
            .arg(args)
            .invoke_async(&mut self.conn.clone())
            .await;
        self.answered(result)
    }

    fn answered<T>(&self, result: Result<T, RedisError>) -> Result<T, Failed> {
        match result {
            Ok(value) => {
                if self.notices.troubled() {
                    self.notices.over(
                        OUTAGE,
                        "Redis is back: limits, cache, breakers and budget are shared again",
                    );
                }
                Ok(value)
            }
            Err(e) => {
                let failed = Failed::of(&e);
                if matches!(failed, Failed::Refused(_)) {
                    // About this command's keys; the caller says which.
                    return Err(failed);
                }
                self.online.store(false, Ordering::Release);
                self.notices.tell(OUTAGE, || {
                    format!(
                        "Redis stopped answering or recording ({}): going on with in-memory limits, cache, breakers and budget until it records again",
                        said(&e)
                    )
                });
                Err(failed)
            }
        }
    }

    /// Warns once that `what` is wrong (then a count every minute, and
    /// when it is over): for the callers' own refusals.
    pub(crate) fn tell(&self, what: &str, message: impl FnOnce() -> String) {
        self.notices.tell(what, message);
    }

    /// Whether `what` was warned about and is not over.
    pub(crate) fn told(&self, what: &str) -> bool {
        self.notices.troubled()
            && self
                .notices
                .open
                .lock()
                .expect("notices lock")
                .contains_key(what)
    }

    /// `what` is no longer wrong: says how often it was since the warning.
    pub(crate) fn over(&self, what: &str, message: &str) {
        if self.notices.troubled() {
            self.notices.over(what, message);
        }
    }

    /// The keys among `keys` that hold another type than `types` (their
    /// own, in order), as `key (type)`: what a `WRONGTYPE` was about.
    pub(crate) async fn foreign(&self, keys: &[String], types: &[&str]) -> String {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("TYPE").arg(key);
        }
        let found: Vec<String> = self.pipe(&pipe).await.unwrap_or_default();
        let foreign: Vec<String> = keys
            .iter()
            .zip(types)
            .zip(&found)
            .filter(|((_, want), got)| got.as_str() != "none" && got.as_str() != **want)
            .map(|((key, want), got)| format!("{key} holds a {got}, not a {want}"))
            .collect();
        if foreign.is_empty() {
            keys.join(", ")
        } else {
            foreign.join("; ")
        }
    }

    /// Pings Redis whether or not it is thought online; marks it online
    /// when it answers.
    pub async fn probe(&self) -> bool {
        let pong: Result<String, RedisError> =
            redis::cmd("PING").query_async(&mut self.conn.clone()).await;
        // Answering PING is not recording: "back" is said when a command
        // that records goes through (a Redis refusing writes answers PING).
        let ok = pong.is_ok();
        self.online.store(ok, Ordering::Release);
        ok
    }

    /// For a worker leaving with something to book: whether to try (again).
    /// The first call starts a deadline of three `timeout_ms` and says yes;
    /// until the deadline each later call waits a moment and says yes, then
    /// no. A Redis thought gone is pinged before each try.
    pub(crate) async fn leaving_try(&self, first: bool) -> bool {
        let until = *self
            .leaving_until
            .get_or_init(|| Instant::now() + self.timeout * 3);
        let now = Instant::now();
        if !first {
            if now >= until {
                return false;
            }
            tokio::time::sleep(LEAVING_RETRY.min(until - now)).await;
        }
        if !self.online() {
            self.probe().await;
        }
        true
    }

    /// Takes this worker out of the live workers.
    pub(crate) async fn leave(&self) {
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(self.keys.workers()).arg(&self.worker);
        let _: Option<i64> = self.query(&zrem).await;
    }

    /// Records this worker's heartbeat and returns how many workers were
    /// heard from in the last three beats.
    pub(crate) async fn heartbeat(&self, every: Duration) -> Option<u32> {
        let alive = every.as_micros() as i64 * 3;
        let args = [
            self.worker.clone(),
            alive.to_string(),
            self.clock_shift().to_string(),
        ];
        let workers: u32 = self
            .script(&HEARTBEAT, &[self.keys.workers()], &args)
            .await?;
        Some(workers.max(1))
    }
}

static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));

/// A worker id: host and process, unique enough in a fleet.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

/// `url` without its password, for logs.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}
