//! What Redis says is said: a wrong password stops the worker at start, a
//! foreign value under one provider's keys stops that provider only, and an
//! outage is one warning, not one per call.

use leadflow_fleet::{ConnectError, Fleet, RedisConfig};
use leadflow_waterfall::WaterfallConfig;

use crate::outage::{Killed, accepting, config_set, free_port, redis_server_with};
use crate::support::{capture_logs, prefix, redis_url, services, worker, worker_at};

const WINDOW: i64 = 3_600 * 1_000_000;

#[tokio::test]
async fn a_wrong_password_stops_the_worker_at_start_in_redis_words() {
    let port = free_port();
    let _server = Killed(redis_server_with(port, &["--requirepass", "right-pw-123"]));
    accepting(port).await;
    let config = RedisConfig {
        key_prefix: prefix("wrongpass"),
        ..RedisConfig::default()
    };
    let url = format!("redis://:wrong-pw-456@127.0.0.1:{port}");
    let Err(ConnectError::Refused(e)) = Fleet::connect(&url, config.clone()).await else {
        panic!("a wrong password must not start the worker");
    };
    assert!(e.contains("WRONGPASS"), "Redis's words: {e}");
    assert!(
        !e.contains("wrong-pw-456"),
        "the password is never printed: {e}"
    );

    let url = format!("redis://127.0.0.1:{port}");
    let Err(ConnectError::Refused(e)) = Fleet::connect(&url, config.clone()).await else {
        panic!("no password where one is required must not start the worker");
    };
    assert!(e.contains("NOAUTH"), "Redis's words: {e}");

    let url = format!("redis://:right-pw-123@127.0.0.1:{port}");
    let fleet = Fleet::connect(&url, config)
        .await
        .expect("the right password");
    assert!(fleet.redis().online());
}

#[tokio::test]
async fn a_foreign_value_under_one_providers_keys_stops_that_provider_only() {
    let (logs, _guard) = capture_logs();
    let prefix = prefix("foreign");
    let leases = format!("{prefix}:{{limit:orion}}:leases");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(&leases)
        .arg("someone else's")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fleet = worker(&prefix).await;
    let limiter = services(&fleet, &WaterfallConfig::default()).limiter;
    for _ in 0..5 {
        assert!(!limiter.try_acquire("orion", 100, WINDOW, 0).await);
        assert!(limiter.try_acquire("astra", 100, WINDOW, 0).await);
    }
    assert!(
        fleet.redis().online(),
        "Redis is not gone for a foreign key"
    );
    let said = logs.lines_with("WRONGTYPE");
    assert_eq!(said.len(), 1, "said once: {}", logs.text());
    assert!(
        said[0].contains(&format!("{leases} holds a string, not a zset")),
        "names the key: {}",
        said[0]
    );
    assert!(said[0].contains("orion"), "{}", said[0]);
    limiter.close().await;
}

#[tokio::test]
async fn a_redis_refusing_writes_is_one_warning_then_one_line_when_it_is_back() {
    let (logs, _guard) = capture_logs();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let _server = Killed(redis_server_with(
        port,
        &["--maxmemory-policy", "noeviction"],
    ));
    accepting(port).await;
    let fleet = worker_at(&url, &prefix("flood"), |c| c.max_lease = 1).await;
    let limiter = services(&fleet, &WaterfallConfig::default()).limiter;
    assert!(limiter.try_acquire("orion", 100, WINDOW, 0).await);

    config_set(&url, "maxmemory", "1").await;
    for _ in 0..30 {
        // As the heartbeat does: PING answers, the next write is refused.
        fleet.redis().probe().await;
        limiter.try_acquire("orion", 100, WINDOW, 0).await;
    }
    let warned = logs.lines_with("OOM");
    assert_eq!(warned.len(), 1, "one warning: {}", logs.text());
    assert!(
        logs.lines_with("Redis is back").is_empty(),
        "{}",
        logs.text()
    );

    config_set(&url, "maxmemory", "0").await;
    fleet.redis().probe().await;
    assert!(limiter.try_acquire("orion", 100, WINDOW, 0).await);
    let back = logs.lines_with("Redis is back");
    assert_eq!(back.len(), 1, "{}", logs.text());
    assert!(back[0].contains("more times"), "with a count: {}", back[0]);
    limiter.close().await;
}
