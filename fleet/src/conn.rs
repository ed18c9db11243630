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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind};

use crate::config::RedisConfig;
use crate::keys::Keys;

/// A Lua script sent by its SHA1 (`EVALSHA`), loaded again only when Redis
/// says it does not know it (`NOSCRIPT`): retrying on any other error could
/// apply the script twice.
#[derive(Debug)]
pub(crate) struct Lua {
    source: &'static str,
    sha: String,
}

impl Lua {
    pub(crate) fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: redis::Script::new(source).get_hash().to_string(),
        }
    }
}

/// Why a command did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Not sent (Redis offline), or refused before it changed anything
    /// (`OOM`, `READONLY`…): nothing was recorded.
    NotApplied,
    /// Sent and not answered (a timeout, a dropped connection): Redis may
    /// still apply it.
    Unknown,
}

impl Failed {
    fn of(e: &RedisError) -> Self {
        match e.code() {
            Some(code) if GONE_CODES.contains(&code) => Self::NotApplied,
            _ if e.is_connection_refusal() => Self::NotApplied,
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
}

/// How long a leaving worker waits between tries to book what it owes.
const LEAVING_RETRY: Duration = Duration::from_millis(100);

impl Redis {
    pub(crate) async fn connect(url: &str, config: &RedisConfig) -> Result<Arc<Self>, String> {
        config.check()?;
        let client =
            redis::Client::open(url).map_err(|e| format!("redis url `{}`: {e}", redacted(url)))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| format!("redis `{}`: {e}", redacted(url)))?;
        let redis = Arc::new(Self {
            conn,
            online: AtomicBool::new(true),
            keys: Keys::new(&config.key_prefix),
            worker: worker_id(),
            shift: AtomicI64::new(0),
            timeout,
            leaving_until: OnceLock::new(),
        });
        if !redis.probe().await {
            tracing::warn!(
                url = redacted(url),
                "Redis does not answer: limits, cache, breakers and budget are kept in memory until it does (rate limits allow nothing they cannot account for)"
            );
        } else {
            tracing::info!(
                url = redacted(url),
                "sharing limits, cache, breakers and budget through Redis"
            );
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
        if !self.online() {
            return None;
        }
        let result = pipe.query_async(&mut self.conn.clone()).await;
        self.answered(result).ok()
    }

    /// Runs a script with `keys` and `args`; `None` when it did not go through.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        lua: &LazyLock<Lua>,
        keys: &[String],
        args: &[String],
    ) -> Option<T> {
        self.try_script(lua, keys, args).await.ok()
    }

    /// Runs a script with `keys` and `args`, saying why it did not go through.
    pub(crate) async fn try_script<T: FromRedisValue>(
        &self,
        lua: &LazyLock<Lua>,
        keys: &[String],
        args: &[String],
    ) -> Result<T, Failed> {
        if !self.online() {
            return Err(Failed::NotApplied);
        }
        let call = |sha_or_source: &str, command: &str| {
            let mut cmd = redis::cmd(command);
            cmd.arg(sha_or_source).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        let mut conn = self.conn.clone();
        let mut result = call(&lua.sha, "EVALSHA").query_async(&mut conn).await;
        if let Err(e) = &result
            && e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
        {
            let loaded: Result<String, RedisError> = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(lua.source)
                .query_async(&mut conn)
                .await;
            result = match loaded {
                Ok(_) => call(&lua.sha, "EVALSHA").query_async(&mut conn).await,
                Err(e) => Err(e),
            };
        }
        self.answered(result)
    }

    fn answered<T>(&self, result: Result<T, RedisError>) -> Result<T, Failed> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => {
                if self.online.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        error = %said(&e),
                        "Redis stopped answering: going on with in-memory limits, cache, breakers and budget until it is back"
                    );
                }
                Err(Failed::of(&e))
            }
        }
    }

    /// Pings Redis whether or not it is thought online; marks it online
    /// when it answers.
    pub async fn probe(&self) -> bool {
        let pong: Result<String, RedisError> =
            redis::cmd("PING").query_async(&mut self.conn.clone()).await;
        let ok = pong.is_ok();
        if ok && !self.online.swap(true, Ordering::AcqRel) {
            tracing::info!("Redis is back: limits, cache, breakers and budget are shared again");
        } else if !ok {
            self.online.store(false, Ordering::Release);
        }
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

static HEARTBEAT: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("lua/heartbeat.lua")));

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
