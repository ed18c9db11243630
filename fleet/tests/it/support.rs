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
pub(crate) fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
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
