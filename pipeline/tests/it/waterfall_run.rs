//! Whole runs through the provider waterfall (the in-process sandbox over
//! real HTTP): what `enriched_leads` and `provider_usage` hold, and that they
//! agree with what the sandbox served.

use std::path::Path;

use leadflow_pipeline::config::LeadflowConfig;

use super::support::{config, query, rows, run};

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
        .display()
        .to_string()
}

fn example_config() -> LeadflowConfig {
    let mut c = LeadflowConfig::load(Path::new(&example("leadflow.toml"))).unwrap();
    // Errors and 429s too, so retries show up in the accounting; no waiting.
    c.sandbox.latency_ms = 0;
    c.sandbox.error_rate = 0.05;
    c.sandbox.rate_limit_rate = 0.05;
    c.sandbox.retry_after_secs = 0;
    c.lookup.retry_base_ms = 1;
    // These tests are about finding phones; line types have their own.
    c.line_type.enabled = false;
    c
}

#[tokio::test]
async fn provider_usage_matches_what_the_sandbox_served_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut cfg = config(&example("leads.csv"), &out);
    cfg.providers = example_config();
    let summary = run(cfg).await;
    assert_eq!(summary.leads_written, 400);

    let served = summary.sandbox.clone().expect("the sandbox ran");
    let recorded = rows(
        &query(
            &out,
            "select provider, count(*) filter (where attempt > 0),
                    count(*) filter (where outcome = 'hit'),
                    cast(sum(cost_usd) as varchar)
             from provider_usage group by 1 order by 1",
        )
        .await,
    );
    let providers: Vec<&str> = recorded.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(providers, ["astra", "lumen", "nimbus", "orion"]);
    let config = example_config();
    for r in &recorded {
        let name = r[0].as_str();
        let s = served[name];
        assert_eq!(
            r[1],
            s.requests.to_string(),
            "{name}: calls recorded vs served"
        );
        assert_eq!(r[2], s.hits.to_string(), "{name}: hits recorded vs served");
        let p = config.providers.iter().find(|p| p.name == name).unwrap();
        let paid = (s.hits + s.invalid + s.misses) as f64 * p.cost_per_call_usd
            + (s.hits + s.invalid) as f64 * p.cost_per_hit_usd;
        let cost: f64 = r[3].parse().unwrap();
        assert!((cost - paid).abs() < 1e-6, "{name}: cost {cost} vs {paid}");
    }

    // Each lead's columns agree with its provider_usage rows.
    let disagree = rows(
        &query(
            &out,
            "with u as (select lead_id, count(*) n, sum(cost_usd) cost,
                               max(case when outcome = 'hit' then provider end) hit_by
                        from provider_usage group by 1)
             select e.lead_id from enriched_leads e left join u on e.lead_id = u.lead_id
             where coalesce(u.n, 0) <> e.lookup_attempts
                or coalesce(u.cost, 0) <> e.lookup_cost_usd
                or (e.lookup_status = 'found') <> (u.hit_by is not null and u.hit_by = e.found_by)",
        )
        .await,
    );
    assert!(disagree.is_empty(), "{disagree:?}");

    let statuses = rows(
        &query(
            &out,
            "select lookup_status, count(*) from enriched_leads group by 1 order by 1",
        )
        .await,
    );
    let status = |s: &str| {
        statuses
            .iter()
            .find(|r| r[0] == s)
            .map_or(0, |r| r[1].parse::<u64>().unwrap())
    };
    assert!(status("found") > 50, "{statuses:?}");
    assert!(status("skipped_has_phone") > 200, "{statuses:?}");
    let lookups = &summary.lookups;
    assert_eq!(lookups.found(), status("found"));
    assert_eq!(
        lookups.spend_micros(),
        lookups
            .providers
            .values()
            .map(|p| p.cost_micros)
            .sum::<i64>()
    );
    let printed = summary.to_string();
    assert!(
        printed.contains("phones found") && printed.contains("orion"),
        "{printed}"
    );
    // The status line names `found` too, and its counts add up to the leads.
    let line = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("lookup status"))
        .expect("a lookup status line");
    assert!(
        line.split(',')
            .any(|part| part.trim() == format!("found {}", status("found"))),
        "{line}"
    );
    let total: u64 = line
        .split(',')
        .map(|part| {
            part.split_whitespace()
                .last()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, summary.leads_written, "{line}");
}

#[tokio::test]
async fn found_phones_are_valid_e164_and_never_replace_a_valid_own_phone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut cfg = config(&example("leads.csv"), &out);
    cfg.providers = example_config();
    run(cfg).await;
    let bad = rows(
        &query(
            &out,
            "select lead_id, found_phone_e164, lookup_status from enriched_leads
             where (found_phone_e164 is not null and normalize_phone(found_phone_e164) is distinct from found_phone_e164)
                or (phone_valid and lookup_status <> 'skipped_has_phone')
                or (lookup_status = 'found' and found_by is null)",
        )
        .await,
    );
    assert!(bad.is_empty(), "{bad:?}");
}

#[tokio::test]
async fn without_a_config_nothing_is_called_and_no_usage_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = run(config(&example("leads.csv"), &out.display().to_string())).await;
    assert!(summary.sandbox.is_none());
    assert!(!out.join("provider_usage").exists());
    let statuses = rows(
        &query(
            &out.display().to_string(),
            "select distinct lookup_status from enriched_leads",
        )
        .await,
    );
    assert_eq!(statuses, [["not_run"]]);
}

#[tokio::test]
async fn provider_usage_is_complete_whatever_the_query_selects() {
    let call = "find_phone(full_name, email, company_website, country, user_tier, phone_raw";
    for (args, attributed) in [(")", false), (", lead_id, organization_id)", true)] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out").display().to_string();
        let mut cfg = config(&example("leads.csv"), &out);
        cfg.providers = example_config();
        cfg.query = format!("select lead_id, {call}{args}['status'] as status from leads");
        let summary = run(cfg).await;

        let served: u64 = summary
            .sandbox
            .as_ref()
            .unwrap()
            .values()
            .map(|s| s.requests)
            .sum();
        assert!(served > 50, "the example makes calls: {served}");
        let usage = rows(
            &query(
                &out,
                "select count(*) filter (where attempt > 0), count(lead_id), count(*),
                        cast(sum(cost_usd) as varchar)
                 from provider_usage",
            )
            .await,
        );
        let [calls, with_lead, all, spend] = &usage[0][..] else {
            panic!("{usage:?}")
        };
        assert_eq!(calls, &served.to_string(), "usage rows vs sandbox /stats");
        let tallied: u64 = summary.lookups.providers.values().map(|p| p.calls).sum();
        assert_eq!(tallied, served, "summary vs sandbox /stats");
        let spent = summary.lookups.spend_micros() as f64 / 1e6;
        assert!(
            (spend.parse::<f64>().unwrap() - spent).abs() < 1e-9,
            "{spend} vs {spent}"
        );
        let expect_ids = if attributed {
            all.clone()
        } else {
            "0".to_string()
        };
        assert_eq!(
            with_lead, &expect_ids,
            "usage rows carry the lead when it is passed"
        );
        let printed = summary.to_string();
        assert!(
            printed.contains("spend") && printed.contains("orion"),
            "{printed}"
        );
    }
}

/// A key prefix in the test Redis no other test (or earlier run) uses.
fn redis_config(test: &str) -> leadflow_fleet::RedisConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    leadflow_fleet::RedisConfig {
        url: Some(super::support::redis_url()),
        key_prefix: format!("lftest-{test}-{}-{nanos}", std::process::id()),
        ..Default::default()
    }
}

#[tokio::test]
async fn with_redis_a_second_run_over_the_same_leads_pays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut providers = example_config();
    // Every provider answers, so every answer is kept.
    providers.sandbox.error_rate = 0.0;
    providers.sandbox.rate_limit_rate = 0.0;
    providers.redis = redis_config("rerun");
    let found = |out: String| async move {
        rows(
            &query(
                &out,
                "select lead_id, found_phone_e164 from enriched_leads
                 where found_phone_e164 is not null order by 1",
            )
            .await,
        )
    };

    let first = dir.path().join("first").display().to_string();
    let mut cfg = config(&example("leads.csv"), &first);
    cfg.providers = providers.clone();
    let summary = run(cfg).await;
    let paid: u64 = summary.sandbox.unwrap().values().map(|s| s.requests).sum();
    assert!(paid > 100, "the first run pays: {paid}");

    let second = dir.path().join("second").display().to_string();
    let mut cfg = config(&example("leads.csv"), &second);
    cfg.providers = providers;
    let summary = run(cfg).await;
    let served: u64 = summary.sandbox.unwrap().values().map(|s| s.requests).sum();
    assert_eq!(served, 0, "every answer came from Redis");
    let calls = rows(
        &query(
            &second,
            "select count(*) from provider_usage where attempt > 0",
        )
        .await,
    );
    assert_eq!(calls[0][0], "0");
    assert_eq!(
        found(second).await,
        found(first).await,
        "the same phones, unpaid"
    );
}

#[tokio::test]
async fn with_redis_the_days_spend_is_provider_usage_to_the_micro_dollar_across_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let mut providers = example_config();
    providers.redis = redis_config("spend");
    let out = dir.path().join("out").display().to_string();
    let text = std::fs::read_to_string(example("leads.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = dir.path().join("half.csv");
    std::fs::write(&half, lines[..200].join("\n") + "\n").unwrap();
    // The whole file, the same file again (a rerun: its leads replaced,
    // its calls answered by Redis), and half of it under another name.
    for input in [
        example("leads.csv"),
        example("leads.csv"),
        half.display().to_string(),
    ] {
        let mut cfg = config(&input, &out);
        cfg.providers = providers.clone();
        run(cfg).await;
    }
    let recorded = rows(
        &query(
            &out,
            "select cast(coalesce(sum(cost_usd), 0) * 1000000 as bigint), count(*) filter (where attempt > 0)
             from provider_usage",
        )
        .await,
    );
    let (spent, calls): (i64, u64) = (
        recorded[0][0].parse().unwrap(),
        recorded[0][1].parse().unwrap(),
    );
    assert!(calls > 100 && spent > 0, "{recorded:?}");

    let url = providers.redis.url.clone().unwrap();
    let fleet = leadflow_fleet::Fleet::observe(&url, providers.redis.clone())
        .await
        .unwrap();
    let status = fleet
        .status(&providers.waterfall(|name| format!("http://127.0.0.1/{name}")))
        .await
        .unwrap();
    assert_eq!(
        status.reserved_today, 0,
        "every run handed back what it held"
    );
    assert_eq!(
        status.spent_today, spent,
        "Redis's day spend vs provider_usage, in µUSD"
    );
}

#[tokio::test]
async fn a_query_without_status_columns_still_hears_that_the_budget_ran_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut cfg = config(&example("leads.csv"), &out);
    cfg.providers = example_config();
    cfg.providers.budget.per_run_usd = Some(0.5);
    cfg.query = "select lead_id,
                        find_phone(full_name, email, company_website, country, user_tier,
                                   phone_raw, lead_id, organization_id)['phone_e164'] as phone
                 from leads"
        .into();
    let summary = run(cfg).await;
    let unasked = rows(
        &query(
            &out,
            "select count(*) from provider_usage where outcome = 'budget_exhausted'",
        )
        .await,
    );
    assert_ne!(unasked[0][0], "0");
    assert!(summary.lookups.budget_ran_out());
    let text = summary.to_string();
    assert!(
        text.lines().last().unwrap().contains(&format!(
            "ran out: {} provider calls not made",
            unasked[0][0]
        )),
        "{text}"
    );
}

/// Runs the real binary over the example into `out` with `config`,
/// sharing `redis`; returns its child process.
fn spawn_run(config: &Path, out: &Path, redis: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["run", "--no-progress", "--input", &example("leads.csv")])
        .arg("--out")
        .arg(out)
        .arg("--config")
        .arg(config)
        .args(["--redis", redis, "--batch-size", "50"])
        .env_remove("LEADFLOW_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("leadflow runs")
}

#[tokio::test]
async fn two_processes_started_together_pay_for_each_lead_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = redis_config("two-processes");
    let config = dir.path().join("leadflow.toml");
    let example_toml = std::fs::read_to_string(example("leadflow.toml")).unwrap();
    std::fs::write(
        &config,
        format!(
            "{example_toml}\n[redis]\nkey_prefix = \"{}\"\n",
            redis.key_prefix
        ),
    )
    .unwrap();
    let url = redis.url.unwrap();
    let outs = [dir.path().join("a"), dir.path().join("b")];
    let children: Vec<_> = outs
        .iter()
        .map(|out| spawn_run(&config, out, &url))
        .collect();
    let mut served = 0u64;
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        // "  sandbox         162 requests served in-process (…)"
        served += stderr
            .lines()
            .find(|l| l.contains("requests served in-process"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map_or(0, |n| n.parse().unwrap());
    }

    let mut asked = std::collections::HashSet::new();
    for out in &outs {
        let calls = rows(
            &query(
                &out.display().to_string(),
                "select lead_id, provider from provider_usage where attempt > 0",
            )
            .await,
        );
        for call in calls {
            assert!(asked.insert(call.clone()), "paid twice: {call:?}");
        }
    }
    assert!(
        served > 100,
        "the example pays for about 160 calls: {served}"
    );
    assert_eq!(
        asked.len() as u64,
        served,
        "usage rows = requests the sandboxes served"
    );
}

#[tokio::test]
async fn line_types_describe_each_final_phone_once_billed_to_its_lead_and_cached_in_redis() {
    let dir = tempfile::tempdir().unwrap();
    let mut providers = example_config();
    providers.line_type.enabled = true;
    providers.sandbox.error_rate = 0.0;
    providers.sandbox.rate_limit_rate = 0.0;
    providers.redis = redis_config("line-types");
    let described = |out: String| async move {
        rows(
            &query(
                &out,
                "select lead_id, line_type, carrier_name from enriched_leads
                 where line_type is not null order by 1",
            )
            .await,
        )
    };

    let first = dir.path().join("first").display().to_string();
    let mut cfg = config(&example("leads.csv"), &first);
    cfg.providers = providers.clone();
    let summary = run(cfg).await;
    // Every lead that ends with a phone (its own valid one, or found) has
    // its line type, and no other lead has one.
    let coverage = rows(
        &query(
            &first,
            "select count(*) filter (where final_phone is not null and line_type is null),
                    count(*) filter (where final_phone is null and line_type is not null),
                    count(*) filter (where line_type is not null),
                    count(distinct final_phone)
             from (select *, case when phone_valid then phone_e164 else found_phone_e164 end as final_phone
                   from enriched_leads)",
        )
        .await,
    );
    let [missing, stray, with_type, numbers] =
        [0, 1, 2, 3].map(|i| coverage[0][i].parse::<u64>().unwrap());
    assert_eq!((missing, stray), (0, 0), "{coverage:?}");
    assert!(with_type > 250, "{coverage:?}");
    // One paid call per distinct number, each under a lead whose final phone
    // it is, with that lead's organization.
    let twilio = summary.sandbox.unwrap()["twilio"];
    assert_eq!(twilio.requests, numbers);
    let billed = rows(
        &query(
            &first,
            "select count(*),
                    count(*) filter (where (u.organization_id is not distinct from e.organization_id)
                                     and u.lead_id = e.lead_id)
             from provider_usage u
             left join enriched_leads e on u.lead_id = e.lead_id
             where u.provider = 'twilio' and u.attempt > 0",
        )
        .await,
    );
    assert_eq!(billed[0], [numbers.to_string(), numbers.to_string()]);

    // A second run through the same Redis pays for no number again.
    let second = dir.path().join("second").display().to_string();
    let mut cfg = config(&example("leads.csv"), &second);
    cfg.providers = providers;
    let summary = run(cfg).await;
    let served = summary.sandbox.unwrap();
    assert_eq!(
        served.get("twilio").map_or(0, |s| s.requests),
        0,
        "{served:?}"
    );
    assert_eq!(described(second).await, described(first).await);

    // A query of one's own must return what the final phone is made of.
    let third = dir.path().join("third").display().to_string();
    let mut cfg = config(&example("leads.csv"), &third);
    cfg.providers = example_config();
    cfg.providers.line_type.enabled = true;
    cfg.query = "select lead_id from leads".into();
    let err = leadflow_pipeline::run::run(cfg)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("phone_valid") && err.contains("[line_type]"),
        "{err}"
    );
}

#[tokio::test]
async fn a_spent_budget_says_why_each_line_type_is_missing_in_the_output_usage_and_summary() {
    // The example config (line types on, a per-run budget) with a budget the
    // example file spends early: the run stops asking, and says so.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let mut cfg = config(&example("leads.csv"), &out);
    cfg.providers = example_config();
    cfg.providers.line_type.enabled = true;
    cfg.providers.budget.per_run_usd = Some(3.0);
    let summary = run(cfg).await;

    // Every lead that ends with a phone and no line type says why, and the
    // budget is the reason for many of them.
    let why = rows(
        &query(
            &out,
            "select coalesce(line_type_status, 'NULL'), count(*)
             from enriched_leads
             where (phone_valid or found_phone_e164 is not null) and line_type is null
             group by 1 order by 1",
        )
        .await,
    );
    assert!(
        why.iter()
            .all(|r| !["found", "cached", "no_phone", "not_run", "NULL"].contains(&r[0].as_str())),
        "{why:?}"
    );
    let unasked: u64 = why
        .iter()
        .find(|r| r[0] == "budget_exhausted")
        .map_or(0, |r| r[1].parse().unwrap());
    assert!(unasked > 50, "{why:?}");
    // And every lead without a phone is `no_phone`, with no line type.
    let no_phone = rows(
        &query(
            &out,
            "select count(*) filter (where line_type_status <> 'no_phone' or line_type is not null)
             from enriched_leads
             where not phone_valid and found_phone_e164 is null",
        )
        .await,
    );
    assert_eq!(no_phone[0][0], "0");

    // The summary's counts are the output's.
    let counted = |column: &str| {
        let out = out.clone();
        let sql = format!("select {column}, count(*) from enriched_leads group by 1 order by 1");
        async move {
            rows(&query(&out, &sql).await)
                .into_iter()
                .map(|r| (r[0].clone(), r[1].parse::<u64>().unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let tally = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter().map(|(s, n)| (s.clone(), *n)).collect::<Vec<_>>()
    };
    assert_eq!(
        tally(&summary.lookups.line_types),
        counted("line_type_status").await
    );
    assert_eq!(
        tally(&summary.lookups.statuses),
        counted("lookup_status").await
    );
    let text = summary.to_string();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("warning: the provider budget ran out:")
            && last.contains(&format!("{unasked} leads without a line type"))
            && last.contains("per_run_usd (now $3.00)"),
        "{text}"
    );
    assert!(text.contains("  line type       "), "{text}");

    // Each number left unasked is an attempt-0 `budget_exhausted` row in
    // provider_usage, under a lead whose phone it is; no other lead's is.
    let usage = rows(
        &query(
            &out,
            "with final as (
                 select lead_id, line_type_status,
                        case when phone_valid then phone_e164 else found_phone_e164 end as number
                 from enriched_leads),
             skipped as (
                 select f.number, f.line_type_status
                 from provider_usage u join final f on u.lead_id = f.lead_id
                 where u.provider = 'twilio' and u.outcome = 'budget_exhausted'
                   and u.attempt = 0 and u.cost_usd = 0)
             select (select count(distinct number) from final
                     where line_type_status = 'budget_exhausted') as numbers,
                    (select count(distinct number) from skipped) as skipped_numbers,
                    (select count(*) from skipped
                     where line_type_status <> 'budget_exhausted') as others,
                    (select count(distinct number) from final
                     where line_type_status = 'budget_exhausted'
                       and number not in (select number from skipped)) as uncovered",
        )
        .await,
    );
    let [numbers, rows_numbers, others, uncovered] =
        [0, 1, 2, 3].map(|i| usage[0][i].parse::<u64>().unwrap());
    assert!(numbers > 0, "{usage:?}");
    assert_eq!(
        (rows_numbers, others, uncovered),
        (numbers, 0, 0),
        "{usage:?}"
    );
}
