//! Waterfall overhead: 10,000 leads through `Waterfall::find` against three
//! zero-latency sandbox providers over loopback HTTP, 256 in flight, on the
//! machine's cores (the sandbox shares them). Cache off, so every iteration
//! makes its calls.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use leadflow_waterfall::{
    LeadQuery, LookupStatus, Services, SystemClock, Waterfall, WaterfallConfig,
};

const LEADS: usize = 10_000;

fn waterfall(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let toml = format!(
        "{}\n[cache]\nenabled = false\n",
        include_str!("../waterfall-0ms.toml")
    );
    let config = WaterfallConfig::from_toml(&toml).unwrap();
    let waterfall = runtime.block_on(async {
        let services = Services::in_memory(&config, Arc::new(SystemClock));
        Arc::new(Waterfall::start(config, services, |_| None).await.unwrap())
    });
    let leads: Vec<LeadQuery> = (0..LEADS)
        .map(|i| LeadQuery {
            email: format!("user{i}@company{}.com", i % 5000),
            full_name: format!("First{} Last{}", i % 997, i % 991),
            company_website: format!("company{}.com", i % 5000),
            country: Some("US".into()),
            user_tier: Some(2),
            phone_raw: None,
        })
        .collect();

    let mut group = c.benchmark_group("waterfall");
    group.throughput(Throughput::Elements(LEADS as u64));
    group.sample_size(10);
    group.bench_function("find_10k_zero_latency", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let found = futures::stream::iter(&leads)
                    .map(|lead| {
                        let waterfall = waterfall.clone();
                        async move { waterfall.find(lead).await.status }
                    })
                    .buffer_unordered(waterfall.concurrency())
                    .filter(|s| std::future::ready(*s == LookupStatus::Found))
                    .count()
                    .await;
                assert!(found > LEADS / 2, "found {found}");
            })
        })
    });
    group.finish();
}

criterion_group!(benches, waterfall);
criterion_main!(benches);
