//! Waterfall overhead: 10,000 leads through `Waterfall::find` against three
//! zero-latency sandbox providers over loopback HTTP, 256 in flight, on the
//! machine's cores (the sandbox shares them). Cache off, so every iteration
//! makes its calls. Three set-ups: limits and breakers in memory; the same
//! with a day budget; and limits, breakers and the day budget shared
//! through Redis (`REDIS_URL`, default the local one).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use leadflow_pipeline::config::LeadflowConfig;
use leadflow_pipeline::providers::Providers;
use leadflow_waterfall::{LeadQuery, LeadRef, LookupStatus, OwnPhone, UsageLedger};

const LEADS: usize = 10_000;

fn waterfall(c: &mut Criterion) {
    let mut group = c.benchmark_group("waterfall");
    group.throughput(Throughput::Elements(LEADS as u64));
    group.sample_size(10);
    let budget = "[budget]\nper_day_usd = 1000000.0\n";
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let redis =
        format!("{budget}[redis]\nurl = \"{redis_url}\"\nkey_prefix = \"lfbench-{nanos}\"\n");
    for (name, extra) in [
        ("find_10k_zero_latency", ""),
        ("find_10k_zero_latency_day_budget", budget),
        ("find_10k_zero_latency_redis", redis.as_str()),
    ] {
        bench(&mut group, name, extra);
    }
    group.finish();
}

fn bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    extra: &str,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let toml = format!(
        "{}\n[cache]\nenabled = false\n{extra}",
        include_str!("../waterfall-0ms.toml")
    );
    let config = LeadflowConfig::from_toml(&toml).unwrap();
    // Assembled as `leadflow run` assembles it; the ledger's rows are
    // drained as a run's usage writer drains them.
    let (ledger, mut usage) = UsageLedger::channel(16 * 1024);
    runtime.spawn(async move { while usage.recv().await.is_some() {} });
    let providers = runtime.block_on(Providers::start(&config, ledger)).unwrap();
    let waterfall = providers.waterfall.clone();
    let owner = LeadRef::default();
    let leads: Vec<LeadQuery> = (0..LEADS)
        .map(|i| LeadQuery {
            email: format!("user{i}@company{}.com", i % 5000),
            full_name: format!("First{} Last{}", i % 997, i % 991),
            company_website: format!("company{}.com", i % 5000),
            country: Some("US".into()),
            user_tier: Some(2),
            own_phone: OwnPhone::None,
        })
        .collect();

    group.bench_function(name, |b| {
        b.iter(|| {
            runtime.block_on(async {
                let found = futures::stream::iter(&leads)
                    .map(|lead| {
                        let (waterfall, owner) = (waterfall.clone(), &owner);
                        async move { waterfall.find(lead, owner).await.status }
                    })
                    .buffer_unordered(waterfall.concurrency())
                    .filter(|s| std::future::ready(*s == LookupStatus::Found))
                    .count()
                    .await;
                assert!(found > LEADS / 2, "found {found}");
            })
        })
    });
    runtime.block_on(waterfall.close());
}

/// The adaptive order alone, per lead: the segment, the posteriors of four
/// providers from learned evidence, the index, the sort. It runs for every
/// lead a run looks up; the target is under 1 µs. Leads cycle through many
/// countries, email kinds and tiers, 5% of them exploring (Beta draws).
fn adaptive_order(c: &mut Criterion) {
    let mut toml = String::from("[waterfall]\norder = \"adaptive\"\nab_share = 0.2\n");
    for (i, name) in ["orion", "astra", "nimbus", "lumen"].iter().enumerate() {
        toml.push_str(&format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"orion\"\npriority = {i}\n\
             max_requests_per_hour = 1000\ncost_per_call_usd = 0.0{}\ncost_per_hit_usd = 0.05\n\
             base_url = \"https://{name}.example\"\n",
            i + 1
        ));
    }
    let config = leadflow_waterfall::WaterfallConfig::from_toml(&toml).unwrap();
    let services = leadflow_waterfall::Services::in_memory(
        &config,
        std::sync::Arc::new(leadflow_waterfall::SystemClock),
    );
    let waterfall = leadflow_waterfall::Waterfall::builder(config)
        .services(services.clone())
        .secrets(|_, _| Some("bench-key-0000".into()))
        .build()
        .unwrap();
    let countries = [
        "US", "DE", "GB", "FR", "BR", "IN", "PL", "ES", "JP", "MX", "", "zz",
    ];
    let domains = [
        "acme.com",
        "gmail.com",
        "firma.de",
        "web.de",
        "yahoo.fr",
        "",
    ];
    let leads: Vec<(LeadQuery, LeadRef)> = (0..4096)
        .map(|i| {
            let domain = domains[i % domains.len()];
            let lead = LeadQuery {
                email: if domain.is_empty() {
                    String::new()
                } else {
                    format!("p{i}@{domain}")
                },
                full_name: format!("Person {i}"),
                country: Some(countries[i % countries.len()].to_string()),
                user_tier: Some((i % 4) as i32),
                ..Default::default()
            };
            let owner = LeadRef {
                lead_id: Some(format!("lead-{i}").into()),
                organization_id: None,
            };
            (lead, owner)
        })
        .collect();
    for (i, (lead, _)) in leads.iter().enumerate() {
        for name in ["orion", "astra", "nimbus", "lumen"] {
            services.learned.add_history(
                name,
                lead,
                leadflow_waterfall::Evidence {
                    calls: 50 + (i % 7) as u64,
                    hits: (i % 50) as u64,
                },
            );
        }
    }
    let mut group = c.benchmark_group("adaptive");
    group.throughput(Throughput::Elements(leads.len() as u64));
    group.bench_function("order_4096_leads_4_providers", |b| {
        b.iter(|| {
            let mut n = 0;
            for (lead, owner) in &leads {
                n += waterfall.order_of(lead, owner).1.len();
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, waterfall, adaptive_order);
criterion_main!(benches);
