//! The waterfall against the provider sandbox, over real HTTP on localhost:
//! every adapter, ordering, gating, retries, limits, and that the sandbox's
//! own request counts match the attempts recorded. Time is a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadflow_sandbox::Sandbox;
use leadflow_waterfall::{
    Attempt, Error, Evidence, LeadQuery, LeadRef, LineTypeStatus, Lookup, LookupStatus,
    ManualClock, Outcome, OwnPhone, Policy, ProviderUsage, Services, UsageLedger, Waterfall,
    WaterfallConfig,
};
use tokio::sync::mpsc;

/// A `[[providers]]` entry served by the in-process sandbox.
/// Keys in `extra` replace the defaults.
fn provider(name: &str, kind: &str, priority: i32, extra: &str) -> String {
    let defaults = [
        "max_requests_per_hour = 100000",
        "cost_per_call_usd = 0.001",
        "cost_per_hit_usd = 0.05",
        "base_url = \"sandbox\"",
        "timeout_ms = 2000",
        "retries = 2",
    ];
    let mut out =
        format!("[[providers]]\nname = \"{name}\"\nkind = \"{kind}\"\npriority = {priority}\n");
    for line in defaults {
        let key = line.split(' ').next().unwrap();
        if !extra
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{key} ")))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(extra);
    out.push('\n');
    out
}

/// The generic provider, declared to speak Astra's contract.
const DECLARED: &str = r#"
[providers.http]
method = "GET"
path = "/lookup?email={email}&name={full_name}&domain={company_domain}"
headers = { X-Api-Key = "{api_key}" }
phone_pointer = "/phones/0/number"
country_pointer = "/phones/0/country"
miss_pointer = "/status"
miss_equals = "not_found"
"#;

/// A waterfall whose `base_url = "sandbox"` providers are answered by a
/// sandbox started for the test (configured by the TOML's `[sandbox]`), on
/// a manual clock, reporting to a ledger the test can read.
struct Harness {
    waterfall: Waterfall,
    services: Services,
    sandbox: Sandbox,
    ledger: Mutex<mpsc::Receiver<ProviderUsage>>,
}

impl std::ops::Deref for Harness {
    type Target = Waterfall;

    fn deref(&self) -> &Waterfall {
        &self.waterfall
    }
}

impl Harness {
    /// Looks `lead` up on behalf of the lead whose id is its email.
    async fn find(&self, lead: &LeadQuery) -> Lookup {
        let owner = LeadRef {
            lead_id: Some(lead.email.as_str().into()),
            organization_id: Some("org".into()),
        };
        self.waterfall.find(lead, &owner).await
    }

    /// Every usage row reported so far.
    fn usage(&self) -> Vec<ProviderUsage> {
        let mut rx = self.ledger.lock().unwrap();
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }
}

async fn start(toml: &str) -> (Harness, ManualClock) {
    let (sandbox, toml) = Sandbox::start_for_config(toml)
        .await
        .expect("sandbox starts");
    let config = WaterfallConfig::from_toml(&toml).expect("test config parses");
    let clock = ManualClock::default();
    let services = Services::in_memory(&config, Arc::new(clock.clone()));
    let (ledger, rows) = UsageLedger::channel(100_000);
    let waterfall = Waterfall::builder(config)
        .services(services.clone())
        .secrets(|_, _| Some("sandbox-key".into()))
        .ledger(ledger)
        .build()
        .expect("waterfall starts");
    let harness = Harness {
        waterfall,
        services,
        sandbox,
        ledger: Mutex::new(rows),
    };
    (harness, clock)
}

fn lead(i: usize) -> LeadQuery {
    LeadQuery {
        email: format!("person{i}@acme{}.de", i % 7),
        full_name: format!("Person {i}"),
        company_website: format!("https://acme{}.de", i % 7),
        country: Some("DE".into()),
        user_tier: Some(2),
        own_phone: OwnPhone::None,
    }
}

/// A lookup's attempts as (provider, outcome, attempt).
fn attempt_rows(lookup: &Lookup) -> Vec<(&str, Outcome, i32)> {
    lookup
        .attempts
        .iter()
        .map(|a| (&*a.provider, a.outcome, a.attempt))
        .collect()
}

fn requests(w: &Harness, provider: &str) -> u64 {
    w.sandbox.stats().get(provider).map_or(0, |s| s.requests)
}

#[tokio::test]
async fn every_adapter_finds_a_valid_phone_over_http() {
    let always = "[sandbox]\nhit_rate = 1.0\n";
    for kind in ["orion", "astra", "nimbus", "http"] {
        let extra = if kind == "http" { DECLARED } else { "" };
        let (w, _) = start(&format!("{}{always}", provider("p", kind, 1, extra))).await;
        let found = w.find(&lead(1)).await;
        assert_eq!(found.status, LookupStatus::Found, "{kind}: {found:?}");
        let phone = found.phone_e164.as_deref().unwrap();
        assert!(
            phone.starts_with("+49"),
            "{kind}: a German lead gets a German number, got {phone}"
        );
        assert_eq!(found.provider.as_deref(), Some("p"));
        assert_eq!(found.attempts.len(), 1);
        assert_eq!(found.attempts[0].outcome, Outcome::Hit);
        assert_eq!(found.attempts[0].http_status, Some(200));
        assert_eq!(found.cost_micros, 51_000, "{kind}: call + hit");
        assert_eq!(requests(&w, "p"), 1);
    }
}

#[tokio::test]
async fn every_adapter_reads_a_miss() {
    for kind in ["orion", "astra", "nimbus", "http"] {
        let extra = if kind == "http" { DECLARED } else { "" };
        let (w, _) = start(&format!(
            "{}[sandbox]\nhit_rate = 0.0\n",
            provider("p", kind, 1, extra)
        ))
        .await;
        let missed = w.find(&lead(1)).await;
        assert_eq!(missed.status, LookupStatus::NotFound, "{kind}: {missed:?}");
        assert_eq!(missed.attempts[0].outcome, Outcome::Miss, "{kind}");
        assert_eq!(missed.cost_micros, 1_000, "{kind}: a miss costs the call");
    }
}

#[tokio::test]
async fn twilio_describes_a_number() {
    let toml = provider("twilio", "twilio", 1, "");
    let (w, _) = start(&toml).await;
    let e164 = leadflow_phone::example_number_e164(leadflow_phone::Region::US).unwrap();
    let described = w.line_type(&e164, &Default::default()).await;
    let line = described.line_type.expect("a valid number is described");
    assert!(line.line_type.is_some() && line.carrier_name.is_some() && line.mcc.is_some());
    assert_eq!(described.attempts[0].outcome, Outcome::Hit);
    assert_eq!(described.status, LineTypeStatus::Found);
    let invalid = w.line_type("+1 555 0100", &Default::default()).await;
    assert_eq!(invalid.line_type, None);
    assert_eq!(invalid.attempts[0].outcome, Outcome::Miss);
    assert_eq!(invalid.status, LineTypeStatus::UnknownNumber);
    assert_eq!(requests(&w, "twilio"), 2);
    // Asked again, both come from the cache: a description as `cached`,
    // the number nobody knows as what it was.
    let again = w.line_type(&e164, &Default::default()).await;
    assert_eq!(
        (again.status, again.attempts.len()),
        (LineTypeStatus::Cached, 0)
    );
    let again = w.line_type("+1 555 0100", &Default::default()).await;
    assert_eq!(again.status, LineTypeStatus::UnknownNumber);
    assert_eq!(requests(&w, "twilio"), 2);
}

#[tokio::test]
async fn a_number_left_unasked_says_why_in_its_status_and_usage() {
    // One number fits the budget; the next is not asked. Then the same
    // with the hourly limit, on a waterfall of its own.
    let example = leadflow_phone::example_number_e164(leadflow_phone::Region::US).unwrap();
    let e164 = |i: u64| {
        if i == 0 {
            example.clone()
        } else {
            "+1 555 0100".to_string()
        }
    };
    let toml = format!(
        "[budget]\nper_run_usd = 0.01\n{}",
        provider(
            "twilio",
            "twilio",
            1,
            "cost_per_call_usd = 0.008\ncost_per_hit_usd = 0.0"
        )
    );
    let (w, _) = start(&toml).await;
    assert_eq!(
        w.line_type(&e164(0), &Default::default()).await.status,
        LineTypeStatus::Found
    );
    let spent = w.line_type(&e164(1), &Default::default()).await;
    assert_eq!(spent.status, LineTypeStatus::BudgetExhausted);
    let skip = &spent.attempts[..];
    assert_eq!(skip.len(), 1, "{skip:?}");
    assert_eq!(
        (skip[0].attempt, skip[0].outcome, skip[0].cost_micros),
        (0, Outcome::BudgetExhausted, 0)
    );
    assert_eq!(requests(&w, "twilio"), 1);

    let toml = provider("twilio", "twilio", 1, "max_requests_per_hour = 1");
    let (w, _) = start(&toml).await;
    w.line_type(&e164(0), &Default::default()).await;
    let limited = w.line_type(&e164(1), &Default::default()).await;
    assert_eq!(limited.status, LineTypeStatus::RateLimited);
    assert_eq!(limited.attempts[0].outcome, Outcome::RateLimited);
}

#[tokio::test]
async fn the_first_valid_hit_wins_and_later_providers_are_not_called() {
    let toml = format!(
        "{}{}{}[sandbox.providers.never]\nhit_rate = 0.0\n[sandbox.providers.always]\nhit_rate = 1.0\n\
         [sandbox.providers.later]\nhit_rate = 1.0\n",
        provider("later", "nimbus", 30, ""),
        provider("never", "orion", 10, ""),
        provider("always", "astra", 20, ""),
    );
    let (w, _) = start(&toml).await;
    assert_eq!(
        w.finders().collect::<Vec<_>>(),
        ["never", "always", "later"]
    );
    for i in 0..20 {
        let l = w.find(&lead(i)).await;
        assert_eq!(l.provider.as_deref(), Some("always"));
        let asked: Vec<&str> = l.attempts.iter().map(|a| &*a.provider).collect();
        assert_eq!(asked, ["never", "always"]);
    }
    assert_eq!(requests(&w, "later"), 0);
    assert_eq!(requests(&w, "never"), 20);
}

#[tokio::test]
async fn tiers_and_disabled_providers_gate_the_candidates() {
    let toml = format!(
        "{}{}{}[sandbox]\nhit_rate = 1.0\n",
        provider("premium", "orion", 1, "min_user_tier = 3"),
        provider("off", "astra", 2, "enabled = false"),
        provider("basic", "nimbus", 3, "min_user_tier = 1"),
    );
    let (w, _) = start(&toml).await;
    let l = w.find(&lead(1)).await;
    assert_eq!(l.provider.as_deref(), Some("basic"));
    let rows = attempt_rows(&l);
    assert_eq!(
        rows,
        [
            ("premium", Outcome::SkippedTier, 0),
            ("basic", Outcome::Hit, 1)
        ],
        "the disabled provider leaves no row"
    );
    let mut low = lead(2);
    low.user_tier = Some(0);
    let gated = w.find(&low).await;
    assert_eq!(gated.status, LookupStatus::SkippedTier);
    assert_eq!(requests(&w, "premium") + requests(&w, "off"), 0);
}

#[tokio::test]
async fn a_429_waits_its_retry_after_then_moves_on() {
    let toml = format!(
        "{}{}[sandbox]\nhit_rate = 1.0\n[sandbox.providers.busy]\nrate_limit_rate = 1.0\nretry_after_secs = 3\n",
        provider("busy", "orion", 1, ""),
        provider("spare", "astra", 2, ""),
    );
    let (w, clock) = start(&toml).await;
    let before = clock.now_for_test();
    let l = w.find(&lead(1)).await;
    let busy: Vec<_> = l
        .attempts
        .iter()
        .filter(|a| &*a.provider == "busy")
        .collect();
    assert_eq!(busy.len(), 3, "first call and two retries");
    assert!(
        busy.iter()
            .all(|a| a.outcome == Outcome::RateLimited && a.http_status == Some(429))
    );
    assert!(
        busy.iter().all(|a| a.cost_micros == 0),
        "a 429 costs nothing"
    );
    assert_eq!(
        clock.now_for_test() - before,
        6_000_000,
        "waited Retry-After twice"
    );
    assert_eq!(l.provider.as_deref(), Some("spare"));

    // A Retry-After longer than the config allows is not waited for.
    let impatient = format!("[lookup]\nmax_retry_after_ms = 1000\n{toml}");
    let (w, clock) = start(&impatient).await;
    let before = clock.now_for_test();
    let l = w.find(&lead(1)).await;
    assert_eq!(
        l.attempts.iter().filter(|a| &*a.provider == "busy").count(),
        1
    );
    assert_eq!(clock.now_for_test(), before);
}

#[tokio::test]
async fn server_errors_retry_with_backoff_then_open_the_circuit() {
    let toml = format!(
        "[breaker]\nfailures = 6\n{}[sandbox.providers.flaky]\nerror_rate = 1.0\n",
        provider("flaky", "orion", 1, ""),
    );
    let (w, clock) = start(&toml).await;
    let before = clock.now_for_test();
    let l = w.find(&lead(1)).await;
    assert_eq!(l.status, LookupStatus::Error);
    assert_eq!(l.attempts.len(), 3);
    assert!(
        l.attempts
            .iter()
            .all(|a| a.outcome == Outcome::Error && a.http_status == Some(503))
    );
    let waited = clock.now_for_test() - before;
    assert!(
        waited > 0 && waited <= 300_000,
        "two backoffs of ≤100 and ≤200 ms, got {waited}µs"
    );

    w.find(&lead(2)).await; // failures 4–6: the circuit opens
    let skipped = w.find(&lead(3)).await;
    assert_eq!(skipped.attempts.len(), 1);
    assert_eq!(skipped.attempts[0].outcome, Outcome::CircuitOpen);
    assert_eq!(requests(&w, "flaky"), 6);
    clock.advance(Duration::from_secs(31));
    let probe = w.find(&lead(4)).await;
    assert_eq!(
        probe.attempts[0].attempt, 1,
        "after the cooldown one probe goes out"
    );
}

#[tokio::test]
async fn a_timeout_is_an_outcome_and_the_next_provider_answers() {
    let toml = format!(
        "{}{}[sandbox]\nhit_rate = 1.0\n[sandbox.providers.slow]\nlatency_ms = 5000\n",
        provider("slow", "orion", 1, "timeout_ms = 50\nretries = 1"),
        provider("fast", "astra", 2, ""),
    );
    let (w, _) = start(&toml).await;
    let l = w.find(&lead(1)).await;
    let slow: Vec<_> = l
        .attempts
        .iter()
        .filter(|a| &*a.provider == "slow")
        .collect();
    assert_eq!(slow.len(), 2);
    assert!(
        slow.iter()
            .all(|a| a.outcome == Outcome::Timeout && a.http_status.is_none())
    );
    assert_eq!(l.status, LookupStatus::Found);
    assert_eq!(l.provider.as_deref(), Some("fast"));
}

#[tokio::test]
async fn an_invalid_number_is_a_miss_and_the_waterfall_goes_on() {
    let toml = format!(
        "{}{}[sandbox]\nhit_rate = 1.0\n[sandbox.providers.junk]\ninvalid_rate = 1.0\n",
        provider("junk", "nimbus", 1, ""),
        provider("good", "orion", 2, ""),
    );
    let (w, _) = start(&toml).await;
    let l = w.find(&lead(1)).await;
    assert_eq!(l.attempts[0].outcome, Outcome::Miss);
    assert!(
        l.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("invalid number")
    );
    assert_eq!(
        l.attempts[0].cost_micros, 51_000,
        "the provider still charged its hit"
    );
    assert_eq!(l.provider.as_deref(), Some("good"));
}

#[tokio::test]
async fn leads_with_a_valid_phone_are_skipped_and_answers_are_cached() {
    let toml = format!(
        "{}[sandbox]\nhit_rate = 1.0\n",
        provider("p", "orion", 1, "")
    );
    let (w, _) = start(&toml).await;
    let mut has = lead(1);
    has.own_phone = OwnPhone::Raw("030 901820".into());
    assert_eq!(w.find(&has).await.status, LookupStatus::SkippedHasPhone);
    has.own_phone = OwnPhone::Parsed { valid: true };
    assert_eq!(w.find(&has).await.status, LookupStatus::SkippedHasPhone);
    has.own_phone = OwnPhone::Raw("12".into());
    let first = w.find(&has).await;
    assert_eq!(
        first.status,
        LookupStatus::Found,
        "an invalid own phone is looked up"
    );
    let again = w.find(&has).await;
    assert_eq!(again.status, LookupStatus::Cached);
    assert_eq!(again.phone_e164, first.phone_e164);
    assert_eq!((again.cost_micros, again.attempts.len()), (0, 0));
    assert_eq!(requests(&w, "p"), 1, "never paid for twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_seen_twice_asks_each_provider_once_even_at_the_same_time() {
    let toml = format!(
        "{}{}[sandbox]\nhit_rate = 0.3\nlatency_ms = 2\n",
        provider("first", "orion", 1, "min_user_tier = 1"),
        provider("second", "astra", 2, "min_user_tier = 2"),
    );
    let (w, _) = start(&toml).await;
    // Every lead twice, tiers 0 to 2, all at once.
    let leads: Vec<_> = (0..120)
        .chain(0..120)
        .map(|i| {
            let mut l = lead(i);
            l.user_tier = Some(i as i32 % 3);
            l
        })
        .collect();
    futures::future::join_all(leads.iter().map(|l| w.find(l))).await;
    let calls: Vec<_> = w
        .usage()
        .into_iter()
        .filter(|u| u.attempt.attempt > 0)
        .collect();
    let served = requests(&w, "first") + requests(&w, "second");
    assert_eq!(calls.len() as u64, served);
    let mut asked = std::collections::HashSet::new();
    for u in &calls {
        let question = (u.lead.lead_id.clone(), u.attempt.provider.clone());
        assert!(asked.insert(question.clone()), "asked twice: {question:?}");
    }
    // A tier-0 lead is asked of nobody; the rest of `first`, and those
    // `first` had no phone for, of `second` if their tier allows.
    assert_eq!(requests(&w, "first"), 80);

    // Later, at a higher tier: only the provider not yet asked is.
    let before = requests(&w, "first");
    let mut upgraded = lead(1);
    upgraded.user_tier = Some(2);
    let again = w.find(&upgraded).await;
    assert_eq!(
        requests(&w, "first"),
        before,
        "first already answered lead 1"
    );
    assert!(again.attempts.iter().all(|a| &*a.provider != "first"));
}

#[tokio::test]
async fn the_hourly_limit_skips_a_provider_until_its_window_frees() {
    let toml = format!(
        "{}[sandbox]\nhit_rate = 0.0\n",
        provider("p", "orion", 1, "max_requests_per_hour = 2")
    );
    let (w, clock) = start(&toml).await;
    w.find(&lead(1)).await;
    w.find(&lead(2)).await;
    let limited = w.find(&lead(3)).await;
    assert_eq!(limited.status, LookupStatus::RateLimited);
    assert_eq!(limited.attempts[0].outcome, Outcome::RateLimited);
    assert_eq!(limited.attempts[0].http_status, None, "no call went out");
    clock.advance(Duration::from_secs(3600));
    assert_eq!(w.find(&lead(3)).await.status, LookupStatus::NotFound);
    assert_eq!(requests(&w, "p"), 3);
}

#[tokio::test]
async fn the_budget_stops_calls_once_spent() {
    let toml = format!(
        "[budget]\nper_run_usd = 0.12\n{}[sandbox]\nhit_rate = 1.0\n",
        provider("p", "orion", 1, "")
    );
    let (w, _) = start(&toml).await;
    let statuses: Vec<LookupStatus> = futures::future::join_all((0..4).map(|i| {
        let w = &w;
        async move { w.find(&lead(i)).await.status }
    }))
    .await;
    let found = statuses
        .iter()
        .filter(|s| **s == LookupStatus::Found)
        .count();
    assert_eq!(found, 2, "0.051 per hit: two fit in 0.12; {statuses:?}");
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == LookupStatus::BudgetExhausted)
            .count(),
        2
    );
    assert_eq!(requests(&w, "p"), 2);
}

#[tokio::test]
async fn sandbox_counts_equal_recorded_calls_and_costs_add_up() {
    // Leads share the manual clock, so every lead's waits move everyone's
    // deadline: a deadline beyond reach keeps this test about the counts.
    let toml = format!(
        "[lookup]\ndeadline_ms = 86400000\n{}{}{}{}[sandbox]\nhit_rate = 0.3\nerror_rate = 0.1\nrate_limit_rate = 0.1\nretry_after_secs = 1\ninvalid_rate = 0.1\n",
        provider("a", "orion", 1, ""),
        provider("b", "astra", 2, "min_user_tier = 2"),
        provider("c", "http", 3, DECLARED),
        provider("d", "nimbus", 4, "retries = 0"),
    );
    let (w, _) = start(&toml).await;
    let lookups = futures::future::join_all((0..400).map(|i| {
        let w = &w;
        let mut l = lead(i);
        l.user_tier = Some((i % 3) as i32 + 1);
        async move { w.find(&l).await }
    }))
    .await;
    let stats = w.sandbox.stats();
    for name in ["a", "b", "c", "d"] {
        let calls: Vec<_> = lookups
            .iter()
            .flat_map(|l| &l.attempts)
            .filter(|a| &*a.provider == name && a.called())
            .collect();
        let s = stats.get(name).copied().unwrap_or_default();
        assert_eq!(
            calls.len() as u64,
            s.requests,
            "{name}: calls recorded vs served"
        );
        let hits = calls
            .iter()
            .filter(|a| a.http_status == Some(200) && a.cost_micros == 51_000)
            .count() as u64;
        assert_eq!(hits, s.hits + s.invalid, "{name}: paid hits vs hits served");
        let cost: i64 = calls.iter().map(|a| a.cost_micros).sum();
        let answered = s.hits + s.invalid + s.misses;
        assert_eq!(
            cost,
            (answered * 1_000 + (s.hits + s.invalid) * 50_000) as i64,
            "{name}"
        );
    }
    // The ledger holds exactly the attempts, each on behalf of its lead.
    let mut reported: Vec<(String, Attempt)> = w
        .usage()
        .into_iter()
        .map(|u| (u.lead.lead_id.unwrap().to_string(), u.attempt))
        .collect();
    let mut recorded: Vec<(String, Attempt)> = (0..400)
        .flat_map(|i| {
            let id = lead(i).email;
            lookups[i]
                .attempts
                .iter()
                .map(move |a| (id.clone(), a.clone()))
        })
        .collect();
    let order = |r: &(String, Attempt)| {
        (
            r.0.clone(),
            r.1.provider.clone(),
            r.1.attempt,
            r.1.started_at,
        )
    };
    reported.sort_by_key(order);
    recorded.sort_by_key(order);
    assert_eq!(reported.len(), recorded.len());
    assert!(reported == recorded, "the ledger differs from the attempts");
    let total: i64 = lookups.iter().map(|l| l.cost_micros).sum();
    let by_attempt: i64 = lookups
        .iter()
        .flat_map(|l| &l.attempts)
        .map(|a| a.cost_micros)
        .sum();
    assert_eq!(total, by_attempt);
    let found = lookups
        .iter()
        .filter(|l| l.status == LookupStatus::Found)
        .count();
    assert!(found > 100, "most leads find a phone somewhere: {found}");
}

#[tokio::test]
async fn a_real_provider_without_its_key_is_a_clear_error() {
    let toml = provider(
        "orion",
        "orion",
        1,
        "api_key_env = \"ORION_TEST_KEY_UNSET\"\nbase_url = \"https://api.orion.example\"",
    );
    let config = WaterfallConfig::from_toml(&toml).unwrap();
    let services = Services::in_memory(&config, Arc::new(ManualClock::default()));
    let err = Waterfall::builder(config)
        .services(services)
        .secrets(|_, _| None)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::MissingSecret { .. }));
    assert!(err.to_string().contains("ORION_TEST_KEY_UNSET"), "{err}");
}

trait NowForTest {
    fn now_for_test(&self) -> i64;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> i64 {
        leadflow_waterfall::Clock::now(self)
    }
}

/// A hostile provider: a local HTTP/1.1 server answering every request with
/// what `answer` makes of its head, and keeping the heads it saw.
struct HostileServer {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl HostileServer {
    fn start(answer: impl Fn(&str) -> String + Send + 'static) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                seen.lock().unwrap().push(head.clone());
                let _ = stream.write_all(answer(&head).as_bytes());
            }
        });
        Self { url, heads }
    }

    fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }
}

fn respond(status: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{extra_headers}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

const HOSTILE_KEY: &str = "s3cr3t-Key-0042";

/// A waterfall of one Astra provider at `url`, keyed with [`HOSTILE_KEY`].
fn hostile_waterfall(url: &str) -> (Waterfall, mpsc::Receiver<ProviderUsage>) {
    keyed_waterfall(url, HOSTILE_KEY).unwrap()
}

/// A waterfall of one Astra provider at `url`, keyed with `key`.
fn keyed_waterfall(
    url: &str,
    key: &'static str,
) -> Result<(Waterfall, mpsc::Receiver<ProviderUsage>), Error> {
    let toml = provider(
        "astra",
        "astra",
        1,
        &format!("api_key_env = \"ASTRA_KEY\"\nbase_url = \"{url}\"\nretries = 0"),
    );
    let config = WaterfallConfig::from_toml(&toml).unwrap();
    let services = Services::in_memory(&config, Arc::new(ManualClock::default()));
    let (ledger, rows) = UsageLedger::channel(100);
    let waterfall = Waterfall::builder(config)
        .services(services)
        .secrets(move |_, _| Some(key.into()))
        .ledger(ledger)
        .build()?;
    Ok((waterfall, rows))
}

async fn one_attempt(url: &str) -> Attempt {
    let (waterfall, mut rows) = hostile_waterfall(url);
    waterfall.find(&lead(1), &LeadRef::default()).await;
    let row = rows.try_recv().expect("one usage row");
    assert!(rows.try_recv().is_err(), "exactly one attempt");
    row.attempt
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_key_does_not_travel() {
    let elsewhere = HostileServer::start(|_| respond("200 OK", "", "{}"));
    let target = format!("{}/collect", elsewhere.url);
    let provider =
        HostileServer::start(move |_| respond("302 Found", &format!("location: {target}\r\n"), ""));
    let attempt = one_attempt(&provider.url).await;
    assert_eq!(provider.requests(), 1);
    assert_eq!(
        elsewhere.requests(),
        0,
        "nothing reached the redirect's target"
    );
    assert_eq!(attempt.http_status, Some(302));
    assert_eq!(attempt.outcome, Outcome::Error);
    let error = attempt.error.unwrap();
    assert!(error.contains("redirects are not followed"), "{error}");
}

#[tokio::test]
async fn an_answer_echoing_the_key_is_recorded_without_it() {
    fn key_of(head: &str) -> String {
        head.lines()
            .find_map(|l| l.strip_prefix("x-api-key: "))
            .unwrap_or_default()
            .trim()
            .to_string()
    }
    // A 401 whose reason repeats the key, and a "phone" that is the key.
    let refusing = HostileServer::start(|head| {
        let body = format!(r#"{{"message":"key {} is not valid"}}"#, key_of(head));
        respond("401 Unauthorized", "", &body)
    });
    let echoing = HostileServer::start(|head| {
        let body = format!(
            r#"{{"status":"found","phones":[{{"number":"{}","type":"mobile"}}]}}"#,
            key_of(head)
        );
        respond("200 OK", "", &body)
    });
    for (server, said) in [
        (&refusing, "unexpected HTTP 401: key"),
        (&echoing, "invalid number"),
    ] {
        let attempt = one_attempt(&server.url).await;
        assert!(
            server.heads.lock().unwrap()[0].contains(HOSTILE_KEY),
            "the provider did get the key"
        );
        let error = attempt.error.expect("a reason is recorded");
        assert!(error.contains(said), "{error}");
        assert!(!error.contains(HOSTILE_KEY), "{error}");
        assert!(error.contains("[redacted]"), "{error}");
    }
}

#[tokio::test]
async fn a_key_echoed_in_any_spelling_or_across_the_cut_is_not_recorded() {
    // Characters that URL encoding and JSON escaping both rewrite.
    const KEY: &str = "Zq+7/wX:9Lm+K2/p";
    let percent = |upper: bool| {
        KEY.bytes()
            .map(|b| match b {
                b if b.is_ascii_alphanumeric() => char::from(b).to_string(),
                b if upper => format!("%{b:02X}"),
                b => format!("%{b:02x}"),
            })
            .collect::<String>()
    };
    let spellings = [
        KEY.to_string(),
        percent(true),
        percent(false),
        KEY.replace('/', "\\/").replace('+', "\\u002b"),
        KEY.replace('/', "\\u002F").replace('+', "%2B"),
    ];
    for spelling in &spellings {
        // Around the old 120-character cut of the reason, and past it.
        for at in [95, 100, 110, 118, 125, 200] {
            // Not JSON with a `message`: the reason is the body's first line,
            // as the provider wrote it (escapes and all).
            let body = format!(
                "{{\"echo\":\"{}{spelling} was refused; check it and try again later please\"}}",
                "y".repeat(at)
            );
            let server =
                HostileServer::start(move |_| respond("500 Internal Server Error", "", &body));
            let (waterfall, mut rows) = keyed_waterfall(&server.url, KEY).unwrap();
            waterfall.find(&lead(1), &LeadRef::default()).await;
            let error = rows
                .try_recv()
                .expect("one usage row")
                .attempt
                .error
                .unwrap();
            assert!(error.starts_with("unexpected HTTP 500"), "{error}");
            assert!(error.chars().count() <= 141, "cut: {error}");
            let chars: Vec<char> = KEY.chars().collect();
            for piece in chars.windows(8) {
                let piece: String = piece.iter().collect();
                assert!(
                    !error.contains(&piece),
                    "{spelling} at {at}: {piece} in {error}"
                );
            }
            let encoded: Vec<char> = spelling.chars().collect();
            for piece in encoded.windows(12) {
                let piece: String = piece.iter().collect();
                assert!(
                    !error.contains(&piece),
                    "{spelling} at {at}: {piece} in {error}"
                );
            }
            if at < 100 {
                assert!(error.contains("[redacted]"), "{error}");
            }
        }
    }
}

#[tokio::test]
async fn a_credential_shorter_than_8_characters_is_refused() {
    let err = keyed_waterfall("http://127.0.0.1:9", "a").err().unwrap();
    assert!(err.is_users(), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("`astra`") && err.contains("ASTRA_KEY") && err.contains("at least 8"),
        "{err}"
    );
    keyed_waterfall("http://127.0.0.1:9", "12345678").unwrap();
}

/// A lead of `country` (its company's domain under the country's TLD).
fn lead_in(i: usize, country: &str) -> LeadQuery {
    let tld = if country == "US" {
        "com".to_string()
    } else {
        country.to_lowercase()
    };
    LeadQuery {
        email: format!("person{i}@firm{}.{tld}", i % 11),
        full_name: format!("Person {i}"),
        company_website: format!("firm{}.{tld}", i % 11),
        country: Some(country.into()),
        user_tier: Some(1),
        own_phone: OwnPhone::None,
    }
}

#[tokio::test]
async fn the_adaptive_order_learns_each_segments_rate_online_and_asks_the_cheapest_first() {
    // Same price; orion is strong in the US, astra in Germany. Nothing is
    // known at start: the run has to learn it.
    let toml = format!(
        "[waterfall]\norder = \"adaptive\"\nexplore_share = 0.1\n{}{}\
         [sandbox.providers.orion]\nhit_rate_by_country = {{ US = 0.7, DE = 0.1 }}\n\
         [sandbox.providers.astra]\nhit_rate_by_country = {{ US = 0.1, DE = 0.7 }}\n",
        provider(
            "orion",
            "orion",
            1,
            "cost_per_call_usd = 0.05\ncost_per_hit_usd = 0"
        ),
        provider(
            "astra",
            "astra",
            2,
            "cost_per_call_usd = 0.05\ncost_per_hit_usd = 0"
        ),
    );
    let (w, _) = start(&toml).await;
    let mut firsts = Vec::new();
    for i in 0..1200 {
        let country = if i % 2 == 0 { "DE" } else { "US" };
        let l = w.find(&lead_in(i, country)).await;
        assert_eq!(l.policy, Some(Policy::Adaptive));
        assert!(
            l.attempts
                .iter()
                .all(|a| a.policy == Some(Policy::Adaptive))
        );
        firsts.push((country, l.attempts.first().map(|a| a.provider.to_string())));
    }
    // The estimates converge on the sandbox's rates.
    for (country, provider, rate) in [
        ("DE", "astra", 0.7),
        ("DE", "orion", 0.1),
        ("US", "orion", 0.7),
        ("US", "astra", 0.1),
    ] {
        let explained = w.explain(&lead_in(1, country), &LeadRef::default());
        let p = explained
            .providers
            .iter()
            .find(|p| &*p.provider == provider)
            .unwrap();
        let got = p.estimate.unwrap().p_hit;
        assert!(
            (got - rate).abs() < 0.1,
            "{country} {provider}: {got} vs {rate}"
        );
        let best = if country == "DE" { "astra" } else { "orion" };
        assert_eq!(&*explained.providers[0].provider, best);
    }
    // Once learned, each country's strong provider is asked first (all
    // but the exploring tenth, whose draws may still disagree).
    let late = &firsts[600..];
    let right = late
        .iter()
        .filter(|(c, p)| p.as_deref() == Some(if *c == "DE" { "astra" } else { "orion" }))
        .count();
    assert!(right * 100 >= late.len() * 85, "{right} of {}", late.len());
}

#[tokio::test]
async fn the_adaptive_order_never_calls_what_tier_limit_breaker_or_budget_forbid() {
    // History says premium, limited and broken are by far the best; each
    // is forbidden by something the adaptive order must respect.
    let toml = format!(
        "[waterfall]\norder = \"adaptive\"\nexplore_share = 0.5\n\
         [breaker]\nfailures = 2\nwindow_secs = 3600\ncooldown_secs = 3600\n\
         [budget]\nper_run_usd = 2.0\n{}{}{}{}\
         [sandbox]\nhit_rate = 0.0\n[sandbox.providers.broken]\nerror_rate = 1.0\n",
        provider(
            "premium",
            "orion",
            1,
            "min_user_tier = 3\ncost_per_call_usd = 0.001\ncost_per_hit_usd = 0"
        ),
        provider(
            "limited",
            "astra",
            2,
            "max_requests_per_hour = 2\ncost_per_call_usd = 0.001\ncost_per_hit_usd = 0"
        ),
        provider(
            "broken",
            "nimbus",
            3,
            "retries = 0\ncost_per_call_usd = 0.001\ncost_per_hit_usd = 0"
        ),
        provider(
            "plain",
            "orion",
            4,
            "cost_per_call_usd = 0.05\ncost_per_hit_usd = 0"
        ),
    );
    let (w, _) = start(&toml).await;
    for provider in ["premium", "limited", "broken"] {
        w.services.learned.add_history(
            provider,
            &lead_in(0, "DE"),
            Evidence {
                calls: 1000,
                hits: 990,
            },
        );
    }
    let mut statuses = Vec::new();
    for i in 0..60 {
        statuses.push(w.find(&lead_in(i, "DE")).await.status);
    }
    assert_eq!(
        requests(&w, "premium"),
        0,
        "user_tier 1 is below its min_user_tier"
    );
    assert_eq!(requests(&w, "limited"), 2, "two calls an hour");
    assert_eq!(
        requests(&w, "broken"),
        2,
        "its circuit opened after two failures"
    );
    // Spend stops at the budget: 0.05 a call to plain fits 2.0 about 40 times.
    assert!(requests(&w, "plain") <= 40, "{}", requests(&w, "plain"));
    assert!(
        statuses.contains(&LookupStatus::BudgetExhausted),
        "{statuses:?}"
    );
    let spent: i64 = w.usage().iter().map(|u| u.attempt.cost_micros).sum();
    assert!(spent <= 2_000_000, "{spent} µUSD");
}

#[tokio::test]
async fn a_provider_expected_to_cost_more_per_hit_than_a_phone_is_worth_is_skipped_with_a_row() {
    let toml = format!(
        "[waterfall]\norder = \"adaptive\"\nexplore_share = 0.0\nvalue_of_found_phone_usd = 0.5\n{}{}\
         [sandbox]\nhit_rate = 0.0\n",
        provider(
            "dear",
            "orion",
            1,
            "cost_per_call_usd = 0.2\ncost_per_hit_usd = 0"
        ),
        provider(
            "cheap",
            "astra",
            2,
            "cost_per_call_usd = 0.01\ncost_per_hit_usd = 0"
        ),
    );
    let (w, _) = start(&toml).await;
    // dear hits 10% in Germany: 0.2 / 0.1 = $2 a hit, over the $0.50 a phone is worth.
    w.services.learned.add_history(
        "dear",
        &lead_in(0, "DE"),
        Evidence {
            calls: 1000,
            hits: 100,
        },
    );
    let l = w.find(&lead_in(1, "DE")).await;
    let rows = attempt_rows(&l);
    assert_eq!(
        rows,
        [
            ("cheap", Outcome::Miss, 1),
            ("dear", Outcome::SkippedValue, 0)
        ]
    );
    let why = l.attempts[1].error.as_deref().unwrap();
    assert!(why.contains("value_of_found_phone_usd"), "{why}");
    assert_eq!(l.status, LookupStatus::NotFound);
    assert_eq!(requests(&w, "dear"), 0);
}
