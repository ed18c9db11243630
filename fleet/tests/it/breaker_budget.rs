//! Circuit breakers and budgets shared by two workers.

use std::time::Duration;

use leadflow_waterfall::WaterfallConfig;

use crate::support::{prefix, services, worker};

const NOW: i64 = 1_780_000_000_000_000;

#[tokio::test]
async fn the_breaker_opens_for_every_worker_and_one_probe_closes_it() {
    let config = WaterfallConfig::from_toml(
        "[breaker]\nfailures = 3\nwindow_secs = 60\ncooldown_secs = 30\n",
    )
    .unwrap();
    let prefix = prefix("breaker");
    let (fa, fb) = (worker(&prefix).await, worker(&prefix).await);
    let (a, b) = (
        services(&fa, &config).breaker,
        services(&fb, &config).breaker,
    );

    for _ in 0..2 {
        a.record("orion", false, NOW).await;
    }
    b.record("orion", false, NOW).await;
    assert!(
        !a.allows("orion", NOW).await,
        "opened by the fleet's third failure"
    );
    assert!(!b.allows("orion", NOW).await);
    assert!(b.allows("astra", NOW).await, "per provider");

    fa.redis().shift_clock(Duration::from_secs(31));
    fb.redis().shift_clock(Duration::from_secs(31));
    assert!(b.allows("orion", NOW).await, "cooled down: b probes");
    assert!(
        !a.allows("orion", NOW).await,
        "one probe for the whole fleet"
    );
    b.record("orion", true, NOW).await;
    assert!(
        a.allows("orion", NOW).await,
        "the probe's success closed it"
    );
}

#[tokio::test]
async fn budget_caps_hold_across_workers_to_the_micro_dollar() {
    let config =
        WaterfallConfig::from_toml("[budget]\nper_day_usd = 1.0\nper_org_day_usd = 0.5\n").unwrap();
    let prefix = prefix("budget");
    let (fa, fb) = (worker(&prefix).await, worker(&prefix).await);
    let (a, b) = (services(&fa, &config).budget, services(&fb, &config).budget);

    let acme = a
        .reserve(400_000, Some("acme"), NOW)
        .await
        .expect("within both caps");
    assert!(
        b.reserve(100_001, Some("acme"), NOW).await.is_none(),
        "acme's cap, reserved by a"
    );
    let globex = b
        .reserve(500_000, Some("globex"), NOW)
        .await
        .expect("globex has its own");
    assert!(
        b.reserve(100_001, None, NOW).await.is_none(),
        "the day: 900,000 of 1,000,000 taken"
    );
    let last = a
        .reserve(100_000, None, NOW)
        .await
        .expect("exactly the cap");
    assert!(b.reserve(1, None, NOW).await.is_none());

    // Settling frees what was not spent.
    a.settle(acme, 250_000, Some("acme"), NOW).await;
    assert!(b.reserve(150_001, Some("acme"), NOW).await.is_none());
    let more = b
        .reserve(150_000, Some("acme"), NOW)
        .await
        .expect("150,000 freed");
    for (budget, r, spent, org) in [
        (&b, globex, 500_000, Some("globex")),
        (&a, last, 0, None),
        (&b, more, 150_000, Some("acme")),
    ] {
        budget.settle(r, spent, org, NOW).await;
    }
    let day = WaterfallConfig::default();
    let status = fa.status(&day).await.unwrap();
    assert!(status.date.len() == 10);
    let client = redis::Client::open(crate::support::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}:{{budget}}:day:2026-05-28");
    let (spent, reserved, acme_spent): (i64, i64, i64) = redis::cmd("HMGET")
        .arg(&key)
        .arg("spent")
        .arg("reserved")
        .arg("org:acme:spent")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((spent, reserved, acme_spent), (900_000, 0, 400_000));
}

#[tokio::test]
async fn status_shows_permits_breakers_spend_cache_and_workers() {
    let config = WaterfallConfig::from_toml(
        r#"
[breaker]
failures = 1
[budget]
per_day_usd = 1.0
per_org_day_usd = 1.0
[[providers]]
name = "orion"
kind = "orion"
priority = 1
max_requests_per_hour = 50
base_url = "http://127.0.0.1:9/orion"
[[providers]]
name = "astra"
kind = "astra"
priority = 2
max_requests_per_hour = 10
base_url = "http://127.0.0.1:9/astra"
"#,
    )
    .unwrap();
    let prefix = prefix("status");
    let fleet = worker(&prefix).await;
    let s = services(&fleet, &config);
    let now = chrono::Utc::now().timestamp_micros();
    for _ in 0..7 {
        assert!(s.limiter.try_acquire("orion", 50, 3_600_000_000, now).await);
    }
    s.limiter.close().await;
    s.breaker.record("astra", false, now).await;
    let r = s.budget.reserve(300_000, Some("acme"), now).await.unwrap();
    s.budget.settle(r, 250_000, Some("acme"), now).await;
    // Spent from a chunk, booked when handed back (at the latest a lease time later).
    s.budget.close().await;
    for i in 0..3 {
        let answer = leadflow_waterfall::ProviderAnswer::NotFound;
        let key = leadflow_waterfall::CacheKey(i);
        s.cache
            .remember(key, "orion", answer, now, Duration::from_secs(60))
            .await;
    }

    let status = fleet.status(&config).await.unwrap();
    let orion = &status.providers[0];
    assert_eq!(
        (orion.name.as_str(), orion.used, orion.limit),
        ("orion", 7, 50)
    );
    assert_eq!(orion.breaker, "closed");
    assert!(
        status.providers[1].breaker.starts_with("open ("),
        "{:?}",
        status.providers[1]
    );
    assert_eq!(status.spent_today, 250_000);
    assert_eq!(status.spent_today_by_org, [("acme".to_string(), 250_000)]);
    assert_eq!((status.cache_entries, status.live_workers), (3, 1));
    let text = status.to_string();
    assert!(
        text.contains("7 / 50") && text.contains("$0.2500 of $1.00"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_budget_spent_in_chunks_stops_at_the_cap_across_workers() {
    let config = WaterfallConfig::from_toml("[budget]\nper_day_usd = 1.0\n").unwrap();
    let prefix = prefix("chunks");
    let now = chrono::Utc::now().timestamp_micros();
    let mut budgets = Vec::new();
    let mut fleets = Vec::new();
    for _ in 0..2 {
        let fleet = worker(&prefix).await;
        budgets.push(services(&fleet, &config).budget);
        fleets.push(fleet);
    }
    // Four tasks per worker spend a cent per call until refused.
    let mut tasks = Vec::new();
    for budget in &budgets {
        for _ in 0..4 {
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                let mut spent = 0;
                while let Some(r) = budget.reserve(10_000, None, now).await {
                    budget.settle(r, 10_000, None, now).await;
                    spent += 10_000;
                }
                spent
            }));
        }
    }
    let mut spent = 0i64;
    for t in tasks {
        spent += t.await.unwrap();
    }
    for budget in &budgets {
        budget.close().await;
    }
    assert!(spent <= 1_000_000, "spent {spent} of a 1,000,000 µUSD day");
    assert!(
        spent >= 980_000,
        "at most a call's worth stranded per worker: {spent}"
    );
    let date = chrono::DateTime::from_timestamp_micros(now)
        .unwrap()
        .format("%Y-%m-%d");
    let client = redis::Client::open(crate::support::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (booked, reserved): (i64, i64) = redis::cmd("HMGET")
        .arg(format!("{prefix}:{{budget}}:day:{date}"))
        .arg("spent")
        .arg("reserved")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (booked, reserved),
        (spent, 0),
        "every µUSD booked, nothing held"
    );
}
