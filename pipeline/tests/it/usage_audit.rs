//! `provider_usage` is the billing audit: every request sent to a provider
//! is a row, whatever happens to the run — a rerun that replaces its leads,
//! a kill -9 at a random moment, a kill just before the commit.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use leadflow_pipeline::config::LeadflowConfig;
use leadflow_sandbox::Sandbox;

use super::support::{TWO_SANDBOX_PROVIDERS, config, example, query, redis_url, rows, run};

fn example_config() -> LeadflowConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/leadflow.toml");
    let mut c = LeadflowConfig::load(&path).unwrap();
    c.sandbox.latency_ms = 0;
    c.sandbox.error_rate = 0.05;
    c.sandbox.retry_after_secs = 0;
    c.lookup.retry_base_ms = 1;
    c.line_type.enabled = false;
    c
}

/// Calls (requests sent) per provider in an output's `provider_usage`,
/// and how many of them have no recorded answer.
async fn calls(out: &str) -> Vec<(String, u64, u64)> {
    rows(
        &query(
            out,
            "select provider, count(*) filter (where attempt > 0 and outcome <> 'unknown'),
                    count(*) filter (where outcome = 'unknown')
             from provider_usage group by 1 order by 1",
        )
        .await,
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap(), r[2].parse().unwrap()))
    .collect()
}

#[tokio::test]
async fn a_rerun_replaces_the_leads_and_keeps_the_replaced_runs_paid_calls() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut served = std::collections::BTreeMap::<String, u64>::new();
    for run_id in ["first", "second"] {
        let mut cfg = config(&example(), &out);
        cfg.providers = example_config();
        cfg.run_id = run_id.to_string();
        let summary = run(cfg).await;
        for (name, s) in summary.sandbox.expect("the sandbox ran") {
            *served.entry(name).or_default() += s.requests;
        }
    }
    // The leads are the second run's only…
    let leads = rows(
        &query(
            &out,
            "select run_id, count(*) from enriched_leads group by 1",
        )
        .await,
    );
    assert_eq!(leads, [["second", "400"]]);
    // … and every request either run sent is a row.
    let recorded = calls(&out).await;
    assert!(!recorded.is_empty());
    for (provider, known, unknown) in &recorded {
        assert_eq!(*unknown, 0, "{provider}");
        assert_eq!(
            *known, served[provider],
            "{provider}: rows vs requests served"
        );
    }
    let runs = rows(
        &query(
            &out,
            "select distinct run_id from provider_usage order by 1",
        )
        .await,
    );
    assert_eq!(runs, [["first"], ["second"]]);

    // A third run replaces the leads again; both earlier runs' calls stay.
    let mut cfg = config(&example(), &out);
    cfg.providers = example_config();
    cfg.run_id = "third".to_string();
    let summary = run(cfg).await;
    for (name, s) in summary.sandbox.expect("the sandbox ran") {
        *served.entry(name).or_default() += s.requests;
    }
    for (provider, known, _) in calls(&out).await {
        assert_eq!(known, served[&provider], "{provider}");
    }
}

/// Leads with no phone, so each asks the waterfall.
fn leads_without_phones(dir: &Path, n: usize) -> String {
    let mut csv = String::from("lead_id,full_name,email,company_website,country,user_tier\n");
    for i in 0..n {
        csv.push_str(&format!(
            "L{i},Person {i},person{i}@company{}.com,company{}.com,US,2\n",
            i % 97,
            i % 97
        ));
    }
    let path = dir.join("leads.csv");
    std::fs::write(&path, csv).unwrap();
    path.display().to_string()
}

/// Starts `run()` once per depth and kills it (SIGKILL) once the providers
/// have served that many more requests.
async fn kill_after_served(
    run: impl Fn() -> Command,
    served: &impl Fn() -> u64,
    depths: impl IntoIterator<Item = u64>,
) {
    for kill_after in depths {
        let before = served();
        let mut child = run()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while served() < before + kill_after {
            assert!(child.try_wait().unwrap().is_none(), "the run ended first");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
}

/// Runs `cmd` to its end off the runtime, which serves the sandbox.
async fn finish(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// `leadflow run` of `input` into `out` with the providers of `config`.
fn leadflow_run(input: &str, out: &str, config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    cmd.args(["run", "--no-progress", "--input", input, "--out", out])
        .arg("--config")
        .arg(config)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("REDIS_URL")
        .env("ORION_API_KEY", "orion-test-key-0001")
        .env("ASTRA_API_KEY", "astra-test-key-0001");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_leaves_every_request_it_sent_in_provider_usage() {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, text) = Sandbox::start_for_config(TWO_SANDBOX_PROVIDERS)
        .await
        .unwrap();
    let config = dir.path().join("leadflow.toml");
    std::fs::write(&config, text).unwrap();
    let input = leads_without_phones(dir.path(), 5_000);
    let out = dir.path().join("out").display().to_string();
    let served = || -> u64 { sandbox.stats().values().map(|s| s.requests).sum() };

    // Killed at three different depths into the run, into one output.
    kill_after_served(
        || leadflow_run(&input, &out, &config),
        &served,
        [40, 150, 400],
    )
    .await;

    // `leadflow sql` on the output commits what the killed runs logged.
    let recorded = calls(&out).await;
    let stats = sandbox.stats();
    let (mut known_all, mut unknown_all) = (0, 0);
    for (provider, known, unknown) in &recorded {
        let s = stats[provider].requests;
        // A request journaled and then killed before it left, or in flight,
        // is `unknown`: the provider may or may not have seen it.
        assert!(
            *known <= s && s <= known + unknown,
            "{provider}: {known} answered + {unknown} unknown rows vs {s} served"
        );
        known_all += known;
        unknown_all += unknown;
    }
    assert!(known_all >= 500, "{recorded:?}");
    // At most the lookups in flight at each kill (concurrency 16, 3 kills).
    assert!(unknown_all <= 3 * 16, "{recorded:?}");
    // Nothing was committed as leads, and a second read adds nothing.
    let leads = rows(&query(&out, "select count(*) from enriched_leads").await);
    assert_eq!(leads, [["0"]]);
    assert_eq!(calls(&out).await, recorded);
    let logs = Path::new(&out).join("_leadflow/usage-log");
    assert_eq!(std::fs::read_dir(&logs).unwrap().count(), 0, "logs left");

    // A run to the end afterwards commits its own leads and calls beside them.
    let before = served();
    let to_the_end = finish(leadflow_run(&input, &out, &config)).await;
    assert!(to_the_end.status.success());
    let after: u64 = calls(&out).await.iter().map(|(_, k, _)| k).sum();
    assert_eq!(after, known_all + served() - before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_before_its_commit_has_its_calls_committed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, text) = Sandbox::start_for_config(
        &TWO_SANDBOX_PROVIDERS.replace("latency_ms = 100", "latency_ms = 0"),
    )
    .await
    .unwrap();
    let config = dir.path().join("leadflow.toml");
    std::fs::write(&config, text).unwrap();
    let input = leads_without_phones(dir.path(), 300);
    let out = dir.path().join("out").display().to_string();
    let mut killed = leadflow_run(&input, &out, &config);
    killed.env("LEADFLOW_CRASH_AT", "before_commit");
    assert!(!finish(killed).await.status.success());
    let paid_by_killed: u64 = sandbox.stats().values().map(|s| s.requests).sum();
    assert!(paid_by_killed > 300);

    // A reader that commits the killed run's log is killed itself right
    // after that commit, before it deletes the log: nothing is counted twice.
    let mut reader = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    reader
        .args(["sql", "select count(*) from provider_usage", "--data", &out])
        .env("LEADFLOW_CRASH_AT", "after_usage_recovery_commit");
    let crashed = finish(reader).await;
    let stderr = String::from_utf8_lossy(&crashed.stderr);
    assert!(
        stderr.contains("LEADFLOW_CRASH_AT=after_usage_recovery_commit"),
        "{stderr}"
    );
    assert_eq!(
        calls(&out).await.iter().map(|(_, k, _)| k).sum::<u64>(),
        paid_by_killed
    );

    // The next run over the same input commits the killed run's calls first,
    // then its own (the sandbox answers it again: no shared cache here).
    let next = finish(leadflow_run(&input, &out, &config)).await;
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    let recorded = calls(&out).await;
    let stats = sandbox.stats();
    for (provider, known, unknown) in &recorded {
        assert_eq!(*unknown, 0, "every answer came before the kill");
        assert_eq!(*known, stats[provider].requests, "{provider}");
    }
    let runs = rows(
        &query(
            &out,
            "select count(distinct run_id), count(*) from enriched_leads",
        )
        .await,
    );
    assert_eq!(runs, [["1", "300"]]);
}

/// With Redis, the day's spend there is `provider_usage`'s to the µUSD after
/// runs killed mid-way and a run to the end: the run that recovers a killed
/// run's calls settles what it spent and had not booked, and what it held
/// reserved goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_day_spend_is_provider_usage_after_runs_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, text) = Sandbox::start_for_config(TWO_SANDBOX_PROVIDERS)
        .await
        .unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("lftest-settle-{}-{nanos}", std::process::id());
    let config = dir.path().join("leadflow.toml");
    std::fs::write(
        &config,
        format!("{text}\n[redis]\nkey_prefix = \"{prefix}\"\n"),
    )
    .unwrap();
    let redis_url = redis_url();
    let input = leads_without_phones(dir.path(), 2_000);
    let out = dir.path().join("out").display().to_string();
    let run = || {
        let mut cmd = leadflow_run(&input, &out, &config);
        cmd.args(["--redis", &redis_url]);
        cmd
    };
    let served = || -> u64 { sandbox.stats().values().map(|s| s.requests).sum() };

    kill_after_served(run, &served, [40, 120, 250]).await;
    let to_the_end = finish(run()).await;
    assert!(
        to_the_end.status.success(),
        "{}",
        String::from_utf8_lossy(&to_the_end.stderr)
    );

    let recorded = rows(
        &query(
            &out,
            "select cast(coalesce(sum(cost_usd), 0) * 1000000 as bigint) from provider_usage",
        )
        .await,
    );
    let cost: i64 = recorded[0][0].parse().unwrap();
    assert!(cost > 0, "{recorded:?}");
    // Every day the runs touched (a run may cross midnight).
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let days: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:{{budget}}:day:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let (mut spent, mut reserved) = (0i64, 0i64);
    for day in &days {
        let (s, r): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(day)
            .arg("spent")
            .arg("reserved")
            .query_async(&mut conn)
            .await
            .unwrap();
        spent += s.unwrap_or(0);
        reserved += r.unwrap_or(0);
    }
    assert_eq!(spent, cost, "Redis's day spend vs provider_usage, in µUSD");
    assert_eq!(reserved, 0, "the killed runs' reservations went back");
}
