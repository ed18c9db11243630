//! Redis going away mid-run and coming back, with a `redis-server` this
//! test starts and kills: lookups go on, the limit holds, the worker returns
//! to Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use leadflow_waterfall::{Budget, Clock, OwnPhone, RateLimiter, SystemClock, WaterfallConfig};

use crate::support::{get, prefix, services, waterfall, worker_at};

const WINDOW: i64 = 3_600 * 1_000_000;

/// A `redis-server` on `port`, keeping nothing on disk.
fn redis_server(port: u16) -> Child {
    redis_server_with(port, &[])
}

/// A `redis-server` on `port`, keeping nothing on disk, with `more` options.
pub(crate) fn redis_server_with(port: u16, more: &[&str]) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(more)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts (scripts/test.sh installs it)")
}

/// Waits until the server started on `port` accepts connections.
pub(crate) async fn accepting(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("redis-server on {port} did not start");
}

/// Starts a server on `port` again and waits until `fleet` is back on it.
async fn restart(port: u16, fleet: &leadflow_fleet::Fleet) -> Child {
    let mut server = redis_server(port);
    accepting(port).await;
    for _ in 0..40 {
        if fleet.redis().probe().await {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    panic!("the worker did not return to the restarted Redis");
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn take(limiter: &Arc<dyn RateLimiter>, n: usize) -> u64 {
    let mut granted = 0;
    for _ in 0..n {
        if limiter.try_acquire("orion", 100, WINDOW, 0).await {
            granted += 1;
        }
    }
    granted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_worker_keeps_its_share_and_returns_when_redis_does() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut server = redis_server(port);
    accepting(port).await;
    let prefix = prefix("outage");
    let fleet = worker_at(&url, &prefix, |c| {
        c.timeout_ms = 300;
        c.lease_ms = 60_000;
        c.max_lease = 8;
    })
    .await;
    let limiter = services(&fleet, &WaterfallConfig::default()).limiter;
    assert_eq!(take(&limiter, 40).await, 40);
    assert!(fleet.redis().online());

    server.kill().unwrap();
    server.wait().unwrap();
    // Its lease, then its share of the 60 left (one worker: all of it), then no more.
    assert_eq!(take(&limiter, 100).await, 60, "never past the limit of 100");
    assert!(!fleet.redis().online(), "noticed the outage");

    // Back (empty: it kept nothing). The worker returns to it and records
    // what it spent while it was gone.
    let mut server = restart(port, &fleet).await;
    assert_eq!(
        take(&limiter, 1).await,
        1,
        "a fresh server has a fresh window"
    );
    let used = get(&url, &format!("{prefix}:{{limit:orion}}:used")).await;
    assert!(
        used.is_some_and(|u| u > 53),
        "the 53 spent offline and the new lease: {used:?}"
    );
    limiter.close().await;
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn a_worker_that_never_reached_redis_pays_for_nothing() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let fleet = worker_at(&url, &prefix("never"), |c| c.timeout_ms = 200).await;
    assert!(!fleet.redis().online());
    let limiter = services(&fleet, &WaterfallConfig::default()).limiter;
    assert_eq!(
        take(&limiter, 10).await,
        0,
        "its share of an unknown window is nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_go_on_when_redis_dies_mid_run_and_the_limit_holds() {
    use leadflow_sandbox::Sandbox;
    use leadflow_waterfall::{LeadQuery, LeadRef};

    let (sandbox, text) = Sandbox::start_for_config(
        r#"
[[providers]]
name = "orion"
kind = "orion"
priority = 1
max_requests_per_hour = 150
base_url = "sandbox"
[sandbox]
hit_rate = 0.0
"#,
    )
    .await
    .unwrap();
    let config = WaterfallConfig::from_toml(&text).unwrap();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut server = redis_server(port);
    accepting(port).await;
    let fleet = worker_at(&url, &prefix("midrun"), |c| {
        c.timeout_ms = 300;
        c.lease_ms = 60_000;
    })
    .await;
    let (waterfall, _usage) = waterfall(&fleet, &config);
    let find = |i: usize| {
        let lead = LeadQuery {
            email: format!("p{i}@mid.run"),
            full_name: format!("P {i}"),
            company_website: "mid.run".into(),
            country: Some("US".into()),
            user_tier: Some(1),
            own_phone: OwnPhone::None,
        };
        let waterfall = &waterfall;
        async move { waterfall.find(&lead, &LeadRef::default()).await }
    };
    let served = || sandbox.stats().get("orion").map_or(0, |s| s.requests);

    for i in 0..100 {
        find(i).await;
    }
    assert_eq!(served(), 100);
    server.kill().unwrap();
    server.wait().unwrap();
    let mut answered = 0;
    for i in 100..200 {
        find(i).await;
        answered += 1;
    }
    assert_eq!(answered, 100, "every lookup came back");
    assert_eq!(
        served(),
        150,
        "the limit of 150, exactly: one worker's share is all that was left"
    );
    assert!(!fleet.redis().online());

    let mut server = restart(port, &fleet).await;
    // The restarted server is empty: a fresh window (plus the 50 spent
    // while it was gone, recorded now).
    find(500).await;
    assert_eq!(served(), 151);
    waterfall.close().await;
    server.kill().unwrap();
    server.wait().unwrap();
}

/// `CONFIG SET name value` on the Redis at `url`.
pub(crate) async fn config_set(url: &str, name: &str, value: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// `n` calls of `cost` µUSD each, reserved and spent in full.
async fn spend(budget: &Arc<dyn Budget>, n: usize, cost: i64) -> usize {
    let mut spent = 0;
    for _ in 0..n {
        let now = SystemClock.now();
        if let Some(r) = budget.reserve(cost, None, now).await {
            budget.settle(r, cost, None, now).await;
            spent += 1;
        }
    }
    spent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_worker_spends_while_redis_refuses_writes_is_booked_when_it_records_again() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let _server = Killed(redis_server_with(
        port,
        &["--maxmemory-policy", "noeviction"],
    ));
    accepting(port).await;
    let prefix = prefix("oom");
    let fleet = worker_at(&url, &prefix, |c| {
        c.timeout_ms = 2_000;
        c.lease_ms = 60_000;
        c.max_lease = 8;
    })
    .await;
    let shared = services(&fleet, &WaterfallConfig::default());
    let (limiter, budget) = (shared.limiter, shared.budget);
    assert_eq!(take(&limiter, 20).await, 20);
    assert_eq!(spend(&budget, 5, 1_000).await, 5);

    // Redis answers, and refuses every write: `OOM command not allowed`.
    config_set(&url, "maxmemory", "1").await;
    assert_eq!(
        take(&limiter, 30).await,
        30,
        "its lease, then its share of what was left"
    );
    assert_eq!(spend(&budget, 40, 1_000).await, 40, "no day cap");

    // The worker leaves while Redis still refuses; Redis records again
    // meanwhile, and the worker books what it spent before it is gone.
    let leaving = tokio::spawn(async move {
        limiter.close().await;
        budget.close().await;
    });
    config_set(&url, "maxmemory", "0").await;
    leaving.await.unwrap();
    fleet.leave().await;
    let used = get(&url, &format!("{prefix}:{{limit:orion}}:used")).await;
    assert_eq!(used, Some(50), "every permit spent is in the window");
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let spent: Option<i64> = redis::cmd("HGET")
        .arg(format!("{prefix}:{{budget}}:day:{date}"))
        .arg("spent")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        spent,
        Some(45_000),
        "every call paid for is in the day's spend"
    );

    // The next worker in the same window gets what is left, no more.
    let next = worker_at(&url, &prefix, |c| c.timeout_ms = 2_000).await;
    let limiter = services(&next, &WaterfallConfig::default()).limiter;
    assert_eq!(take(&limiter, 100).await, 50, "limit 100 − 50 used");
    limiter.close().await;
}

/// A server killed when the test ends, also when it fails.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
