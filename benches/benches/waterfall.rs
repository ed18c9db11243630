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

criterion_group!(benches, waterfall);
criterion_main!(benches);
