//! The shared rate limiter: exact across tasks and across processes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use leadflow_waterfall::{RateLimiter, WaterfallConfig};

use crate::support::{get, prefix, redis_url, services, worker, worker_at};

const WINDOW: i64 = 60 * 1_000_000;
const CHILD: &str = "LEADFLOW_TEST_LIMITER_PREFIX";

/// Takes permits from `tasks` tasks, `tries` attempts each; how many were granted.
async fn take(limiter: &Arc<dyn RateLimiter>, limit: u32, tasks: usize, tries: usize) -> u64 {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let limiter = limiter.clone();
        handles.push(tokio::spawn(async move {
            let mut granted = 0u64;
            for _ in 0..tries {
                if limiter.try_acquire("orion", limit, WINDOW, 0).await {
                    granted += 1;
                }
            }
            granted
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_take_exactly_the_limit_and_the_window_slides() {
    let prefix = prefix("tasks");
    let fleet = worker(&prefix).await;
    let limiter = services(&fleet, &WaterfallConfig::default()).limiter;

    assert_eq!(
        take(&limiter, 1_000, 64, 100).await,
        1_000,
        "6,400 asked, 1,000 allowed"
    );
    limiter.close().await;
    let used = format!("{prefix}:{{limit:orion}}:used");
    assert_eq!(get(&redis_url(), &used).await, Some(1_000));

    // A Redis that forgot its scripts (restarted, failed over) gets them again.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    fleet.redis().shift_clock(Duration::from_secs(30));
    assert_eq!(
        take(&limiter, 1_000, 64, 10).await,
        0,
        "still inside the window"
    );
    assert!(
        fleet.redis().online(),
        "NOSCRIPT reloaded the script, nothing failed"
    );
    fleet.redis().shift_clock(Duration::from_secs(31));
    assert_eq!(
        take(&limiter, 1_000, 64, 100).await,
        1_000,
        "the first thousand left the window"
    );
    limiter.close().await;
}

/// Not a test on its own: the body of each of the processes
/// `eight_processes_share_one_limit_exactly` starts (it does nothing
/// without their environment). Prints what it was granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_takes_permits() {
    let Ok(prefix) = std::env::var(CHILD) else {
        return;
    };
    let fleet = worker_at(&redis_url(), &prefix, |c| c.lease_ms = 50).await;
    let limiter = services(&fleet, &WaterfallConfig::default()).limiter;
    let granted = take(&limiter, 5_000, 8, 250).await;
    limiter.close().await;
    println!("granted={granted}");
}

#[test]
fn eight_processes_share_one_limit_exactly() {
    let prefix = prefix("processes");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "limiter::child_takes_permits",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, &prefix)
                .stdout(Stdio::piped())
                .spawn()
                .expect("child starts")
        })
        .collect();
    let mut granted = 0u64;
    for mut child in children {
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            if let Some((_, n)) = line.unwrap().split_once("granted=") {
                granted += n.parse::<u64>().unwrap();
            }
        }
        assert!(child.wait().unwrap().success());
    }
    assert!(
        granted <= 5_000,
        "16,000 asked across 8 processes, {granted} granted"
    );

    // What the processes handed back is there for the taking: nothing was
    // lost in a lease.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let left = runtime.block_on(async {
        let fleet = worker(&prefix).await;
        let limiter = services(&fleet, &WaterfallConfig::default()).limiter;
        let left = take(&limiter, 5_000, 1, 5_001).await;
        limiter.close().await;
        left
    });
    assert_eq!(granted + left, 5_000, "granted {granted}, then {left} more");
}
