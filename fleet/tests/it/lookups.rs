//! The shared lookup cache through the real waterfall and the provider
//! sandbox over HTTP: a lead is paid for once across workers and runs.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use leadflow_fleet::Fleet;
use leadflow_sandbox::Sandbox;
use leadflow_waterfall::{
    LeadQuery, LeadRef, Lookup, LookupStatus, OwnPhone, ProviderUsage, Waterfall, WaterfallConfig,
};
use tokio::sync::mpsc;

use crate::support::{prefix, waterfall, worker};

const CONFIG: &str = r#"
[[providers]]
name = "orion"
kind = "orion"
priority = 10
max_requests_per_hour = 100000
cost_per_call_usd = 0.001
cost_per_hit_usd = 0.05
base_url = "sandbox"

[[providers]]
name = "astra"
kind = "astra"
priority = 20
max_requests_per_hour = 100000
min_user_tier = 2
cost_per_hit_usd = 0.08
base_url = "sandbox"

[sandbox]
hit_rate = 0.3
latency_ms = 5
"#;

/// One worker: a waterfall over the shared sandbox, its cache in Redis.
struct Worker {
    waterfall: Arc<Waterfall>,
    usage: mpsc::Receiver<ProviderUsage>,
    _fleet: Fleet,
}

async fn worker_for(config_text: &str, prefix: &str) -> Worker {
    let config = WaterfallConfig::from_toml(config_text).unwrap();
    let fleet = worker(prefix).await;
    let (waterfall, usage) = waterfall(&fleet, &config);
    Worker {
        waterfall: Arc::new(waterfall),
        usage,
        _fleet: fleet,
    }
}

fn lead(i: usize, tier: i32) -> LeadQuery {
    LeadQuery {
        email: format!("lead{i}@example{}.com", i % 13),
        full_name: format!("Lead Number {i}"),
        company_website: format!("example{}.com", i % 13),
        country: Some("US".into()),
        user_tier: Some(tier),
        own_phone: OwnPhone::None,
    }
}

/// Looks up `leads` concurrently; results by lead id.
async fn find_all(w: &Worker, leads: &[(usize, LeadQuery)]) -> BTreeMap<usize, Lookup> {
    let mut handles = Vec::new();
    for (i, lead) in leads.iter().cloned() {
        let waterfall = w.waterfall.clone();
        handles.push(tokio::spawn(async move {
            let owner = LeadRef {
                lead_id: Some(i.to_string().into()),
                organization_id: None,
            };
            (i, waterfall.find(&lead, &owner).await)
        }));
    }
    let mut out = BTreeMap::new();
    for h in handles {
        let (i, lookup) = h.await.unwrap();
        out.insert(i, lookup);
    }
    out
}

fn drain(w: &mut Worker) -> Vec<ProviderUsage> {
    std::iter::from_fn(|| w.usage.try_recv().ok()).collect()
}

fn requests(sandbox: &Sandbox) -> u64 {
    sandbox.stats().values().map(|s| s.requests).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_at_once_pay_once_and_a_rerun_pays_nothing() {
    let (sandbox, text) = Sandbox::start_for_config(CONFIG).await.unwrap();
    let prefix = prefix("lookups");
    let mut a = worker_for(&text, &prefix).await;
    let mut b = worker_for(&text, &prefix).await;
    // Every lead twice in each worker, both workers at the same time.
    let leads: Vec<_> = (0..150).chain(0..150).map(|i| (i, lead(i, 2))).collect();
    let (found_a, found_b) = tokio::join!(find_all(&a, &leads), find_all(&b, &leads));

    let usage: Vec<_> = drain(&mut a).into_iter().chain(drain(&mut b)).collect();
    let calls: Vec<_> = usage.iter().filter(|u| u.attempt.attempt > 0).collect();
    assert_eq!(
        calls.len() as u64,
        requests(&sandbox),
        "one usage row per request served"
    );
    let mut asked = HashSet::new();
    for u in &calls {
        let question = (u.lead.lead_id.clone(), u.attempt.provider.clone());
        assert!(asked.insert(question.clone()), "asked twice: {question:?}");
    }
    // Both workers agree on every lead's phone.
    for (i, lookup) in &found_a {
        assert_eq!(lookup.phone_e164, found_b[i].phone_e164, "lead {i}");
    }
    let found = found_a.values().filter(|l| l.phone_e164.is_some()).count();
    assert!(found > 30, "the sandbox finds about half: {found}");

    // A third worker, later: nothing is paid again.
    let served = requests(&sandbox);
    let mut c = worker_for(&text, &prefix).await;
    let again = find_all(&c, &leads[..150]).await;
    assert_eq!(requests(&sandbox), served, "the rerun asked no provider");
    assert!(drain(&mut c).is_empty());
    for (i, lookup) in &again {
        assert_eq!(lookup.status, LookupStatus::Cached, "lead {i}");
        assert_eq!(lookup.phone_e164, found_a[i].phone_e164, "lead {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_tier_later_asks_only_the_providers_not_yet_asked() {
    let (sandbox, text) =
        Sandbox::start_for_config(&CONFIG.replace("hit_rate = 0.3", "hit_rate = 0.0"))
            .await
            .unwrap();
    let prefix = prefix("tiers");
    let mut first = worker_for(&text, &prefix).await;
    let tier1: Vec<_> = (0..40).map(|i| (i, lead(i, 1))).collect();
    for lookup in find_all(&first, &tier1).await.values() {
        assert_eq!(lookup.status, LookupStatus::NotFound);
    }
    let asked: Vec<_> = drain(&mut first)
        .into_iter()
        .filter(|u| u.attempt.attempt > 0)
        .map(|u| u.attempt.provider.to_string())
        .collect();
    assert!(
        asked.len() == 40 && asked.iter().all(|p| p == "orion"),
        "{asked:?}"
    );

    let mut second = worker_for(&text, &prefix).await;
    let tier2: Vec<_> = (0..40).map(|i| (i, lead(i, 2))).collect();
    find_all(&second, &tier2).await;
    let asked: Vec<_> = drain(&mut second)
        .into_iter()
        .filter(|u| u.attempt.attempt > 0)
        .map(|u| u.attempt.provider.to_string())
        .collect();
    assert!(
        asked.len() == 40 && asked.iter().all(|p| p == "astra"),
        "orion already said no to these leads: {asked:?}"
    );
    assert_eq!(sandbox.stats()["orion"].requests, 40);
}
