//! The adaptive order through whole runs: the A/B split's `policy` in both
//! tables, learning from a history output, and `leadflow explain` over it.

use std::path::Path;

use leadflow_pipeline::config::LeadflowConfig;
use leadflow_waterfall::config::Order;

use super::support::{config, query, rows, run};

/// Two providers that are each good in one country, as in
/// benches/adaptive/sandbox.toml: orion asked first by priority and strong
/// in the US, astra strong in Germany; the same price per call.
const PROVIDERS: &str = r#"
[[providers]]
name = "orion"
kind = "orion"
priority = 1
max_requests_per_hour = 1000000
cost_per_call_usd = 0.05
base_url = "sandbox"

[[providers]]
name = "astra"
kind = "astra"
priority = 2
max_requests_per_hour = 1000000
cost_per_call_usd = 0.05
base_url = "sandbox"

[sandbox.providers.orion]
hit_rate_by_country = { US = 0.8, DE = 0.05 }
[sandbox.providers.astra]
hit_rate_by_country = { US = 0.05, DE = 0.8 }
"#;

/// `n` leads, half German and half American, ids prefixed by `tag`.
fn leads(dir: &Path, tag: &str, n: usize) -> String {
    let mut csv = String::from("lead_id,full_name,email,company_website,country,user_tier\n");
    for i in 0..n {
        let (tld, country) = if i % 2 == 0 {
            ("de", "DE")
        } else {
            ("com", "US")
        };
        csv.push_str(&format!(
            "{tag}-{i},Person {i},p{i}.{tag}@firm{}.{tld},firm{}.{tld},{country},1\n",
            i % 13,
            i % 13
        ));
    }
    super::support::write(dir, &format!("{tag}.csv"), csv.as_bytes())
}

fn adaptive(extra: &str) -> LeadflowConfig {
    LeadflowConfig::from_toml(&format!(
        "{PROVIDERS}\n[waterfall]\norder = \"adaptive\"\nexplore_share = 0.0\n{extra}"
    ))
    .expect("config parses")
}

#[tokio::test]
async fn the_ab_split_records_its_policy_in_both_tables_and_adaptive_asks_the_segments_best_first()
{
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).display().to_string();
    // History under the priority order, then new leads split half and half.
    let mut history = config(&leads(dir.path(), "h", 400), &out("history"));
    history.providers = LeadflowConfig::from_toml(PROVIDERS).unwrap();
    run(history).await;
    let mut cfg = config(&leads(dir.path(), "n", 400), &out("new"));
    cfg.providers = adaptive(&format!("ab_share = 0.5\nhistory = {:?}", out("history")));
    assert_eq!(cfg.providers.waterfall.order, Order::Adaptive);
    run(cfg).await;

    let by_policy = rows(
        &query(
            &out("new"),
            "select policy, count(*) from enriched_leads group by 1 order by 1",
        )
        .await,
    );
    let count = |p: &str| -> usize {
        by_policy
            .iter()
            .find(|r| r[0] == p)
            .map_or(0, |r| r[1].parse().unwrap())
    };
    let (adaptive_n, priority_n) = (count("adaptive"), count("priority"));
    assert_eq!(adaptive_n + priority_n, 400, "{by_policy:?}");
    assert!((150..250).contains(&priority_n), "{by_policy:?}");

    // Every call carries its lead's policy.
    let mismatched = rows(
        &query(
            &out("new"),
            "select count(*) from provider_usage u join enriched_leads l using (lead_id)
             where u.policy is distinct from l.policy",
        )
        .await,
    );
    assert_eq!(mismatched, [["0"]]);

    // Priority asks orion first everywhere; adaptive asks each country's
    // strong provider first.
    let firsts = rows(
        &query(
            &out("new"),
            "select l.policy, l.country, u.provider, count(*) from provider_usage u
             join enriched_leads l using (lead_id)
             where u.attempt = 1 and u.started_at = (
                 select min(started_at) from provider_usage v where v.lead_id = u.lead_id)
             group by 1, 2, 3 order by 1, 2, 3",
        )
        .await,
    );
    let asked_first = |policy: &str, country: &str, provider: &str| -> usize {
        firsts
            .iter()
            .find(|r| r[0] == policy && r[1] == country && r[2] == provider)
            .map_or(0, |r| r[3].parse().unwrap())
    };
    assert_eq!(asked_first("priority", "DE", "astra"), 0, "{firsts:?}");
    assert!(asked_first("adaptive", "DE", "astra") > 0, "{firsts:?}");
    assert_eq!(asked_first("adaptive", "DE", "orion"), 0, "{firsts:?}");
    assert_eq!(asked_first("adaptive", "US", "astra"), 0, "{firsts:?}");

    // The shipped comparison reads it: adaptive pays less per found phone.
    let compare = rows(
        &query(
            &out("new"),
            leadflow_pipeline::analytics::find("policy_compare")
                .unwrap()
                .sql,
        )
        .await,
    );
    assert_eq!(compare.len(), 2, "{compare:?}");
    let per_found = |row: &Vec<String>| row[7].parse::<f64>().unwrap();
    assert_eq!(compare[0][0], "adaptive");
    assert!(
        per_found(&compare[0]) < per_found(&compare[1]),
        "{compare:?}"
    );

    // explain, over the same history: the German lead gets astra first,
    // with the evidence it was learned from.
    let text = leadflow_pipeline::learn::explain(
        &adaptive(""),
        Some(&out("history")),
        r#"{"lead_id":"x","email":"ana@firm1.de","country":"Germany","user_tier":1}"#,
    )
    .await
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("learned from"), "{text}");
    let astra = lines.iter().position(|l| l.contains(" astra ")).unwrap();
    let orion = lines.iter().position(|l| l.contains(" orion ")).unwrap();
    assert!(astra < orion, "{text}");
    assert!(text.contains("segment: DE/corporate/1"), "{text}");
    assert!(text.contains("country:DE "), "{text}");
    let bad = leadflow_pipeline::learn::explain(
        &adaptive(""),
        None,
        r#"{"email":"ana@firm1.de","user_tier":"gold"}"#,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(bad.contains("user_tier"), "{bad}");
}

#[test]
fn settings_the_priority_order_never_reads_are_refused_by_name() {
    for (line, key) in [
        ("ab_share = 0.5", "ab_share"),
        ("history = \"out\"", "history"),
        ("value_of_found_phone_usd = 1.0", "value_of_found_phone_usd"),
    ] {
        let err = LeadflowConfig::from_toml(&format!("{PROVIDERS}\n[waterfall]\n{line}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains("adaptive"), "{err}");
    }
    let err = LeadflowConfig::from_toml(&format!(
        "{PROVIDERS}\n[waterfall]\norder = \"adaptive\"\nsegment_by = [\"industry\"]"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("industry") && err.contains("email_kind"),
        "{err}"
    );
    let err = LeadflowConfig::from_toml(&format!(
        "{PROVIDERS}\n[waterfall]\norder = \"adaptive\"\nab_share = 1.5"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("ab_share"), "{err}");
}
