//! What the fleet tests share: where Redis is, a prefix per test, workers.

use std::sync::Arc;

use leadflow_fleet::{Fleet, RedisConfig};
use leadflow_waterfall::{
    ProviderUsage, Services, SystemClock, UsageLedger, Waterfall, WaterfallConfig,
};
use tokio::sync::mpsc;

pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or earlier run) uses.
pub(crate) fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("lftest-{test}-{}-{nanos}", std::process::id())
}

/// A worker of the fleet under `prefix` at `url`.
pub(crate) async fn worker_at(
    url: &str,
    prefix: &str,
    tweak: impl FnOnce(&mut RedisConfig),
) -> Fleet {
    let mut config = RedisConfig {
        key_prefix: prefix.to_string(),
        ..RedisConfig::default()
    };
    tweak(&mut config);
    Fleet::connect(url, config).await.expect("fleet connects")
}

pub(crate) async fn worker(prefix: &str) -> Fleet {
    worker_at(&redis_url(), prefix, |_| {}).await
}

/// The waterfall's services of `fleet` for `config`, on the system clock.
pub(crate) fn services(fleet: &Fleet, config: &WaterfallConfig) -> Services {
    fleet.services(config, Arc::new(SystemClock))
}

/// `GET key` on the test Redis.
pub(crate) async fn get(url: &str, key: &str) -> Option<i64> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A waterfall over `config`'s providers (the sandbox's placeholder key for
/// each) with `fleet`'s services, and the usage it reports.
pub(crate) fn waterfall(
    fleet: &Fleet,
    config: &WaterfallConfig,
) -> (Waterfall, mpsc::Receiver<ProviderUsage>) {
    let (ledger, usage) = UsageLedger::channel(100_000);
    let waterfall = Waterfall::builder(config.clone())
        .services(services(fleet, config))
        .secrets(|_, _| Some("sandbox-key".into()))
        .ledger(ledger)
        .build()
        .unwrap();
    (waterfall, usage)
}

/// What this thread logs while the guard lives (tests on the current-thread
/// runtime: the fleet's own tasks run on it too).
///
/// One global subscriber writes each event to its thread's capture. A
/// subscriber per test (`set_default`) would race: tracing caches each
/// callsite's interest across all live dispatchers, and tests starting and
/// ending beside each other could leave a warning unrecorded.
pub(crate) fn capture_logs() -> (Logs, Capturing) {
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| ThisThread)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("only the fleet tests set a subscriber");
    });
    let logs = Logs::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
    (logs, Capturing(()))
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// Capturing this thread's logs until dropped.
pub(crate) struct Capturing(());

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Writes to the capture of the thread the event happened on, if any.
struct ThisThread;

impl std::io::Write for ThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| match &mut *c.borrow_mut() {
            Some(logs) => logs.write(buf),
            None => Ok(buf.len()),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Lines containing `needle`.
    pub(crate) fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
