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
