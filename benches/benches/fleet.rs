//! Shared state through Redis (`REDIS_URL`, default the local one) against
//! in memory: rate-limit permits taken one at a time by one process (leased
//! from Redis, or from the in-memory limiter), and lookup-cache reads, both
//! pipelined in one call and gathered from 1,024 lookups in flight.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use leadflow_fleet::{Fleet, RedisConfig};
use leadflow_waterfall::{CacheKey, InMemoryRateLimiter, LookupCache, ProviderAnswer, RateLimiter};

const PERMITS: u64 = 100_000;
const KEYS: usize = 10_000;
const HOUR: i64 = 3_600 * 1_000_000;

fn fleet(runtime: &tokio::runtime::Runtime, test: &str) -> Option<Fleet> {
    fleet_with(runtime, test, RedisConfig::default().max_lease)
}

fn fleet_with(runtime: &tokio::runtime::Runtime, test: &str, max_lease: u32) -> Option<Fleet> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let config = RedisConfig {
        key_prefix: format!("lfbench-{test}-{nanos}"),
        max_lease,
        ..RedisConfig::default()
    };
    let fleet = runtime.block_on(Fleet::connect(&url, config)).ok()?;
    if fleet.redis().online() {
        Some(fleet)
    } else {
        eprintln!("no Redis at {url}: skipping the Redis benchmarks");
        None
    }
}

fn permits(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let mut group = c.benchmark_group("permits");
    group.throughput(Throughput::Elements(PERMITS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let memory = InMemoryRateLimiter::default();
    group.bench_function("in_memory_100k", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for _ in 0..PERMITS {
                    assert!(memory.try_acquire("orion", u32::MAX, HOUR, 0).await);
                }
            })
        })
    });
    if let Some(fleet) = fleet(&runtime, "permits") {
        let limiter = fleet
            .services(
                &Default::default(),
                Arc::new(leadflow_waterfall::SystemClock),
            )
            .limiter;
        group.bench_function("redis_leased_100k", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    for _ in 0..PERMITS {
                        assert!(limiter.try_acquire("orion", u32::MAX, HOUR, 0).await);
                    }
                })
            })
        });
        runtime.block_on(limiter.close());
    }
    // For scale: one round trip per permit, as a limiter without leases.
    if let Some(fleet) = fleet_with(&runtime, "one-permit", 1) {
        let limiter = fleet
            .services(
                &Default::default(),
                Arc::new(leadflow_waterfall::SystemClock),
            )
            .limiter;
        group.throughput(Throughput::Elements(PERMITS / 10));
        group.bench_function("redis_one_per_round_trip_10k", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    for _ in 0..PERMITS / 10 {
                        assert!(limiter.try_acquire("orion", u32::MAX, HOUR, 0).await);
                    }
                })
            })
        });
    }
    group.finish();
}

fn cache_reads(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let Some(fleet) = fleet(&runtime, "cache") else {
        return;
    };
    let leads: Vec<CacheKey> = (0..KEYS as u128).map(|i| CacheKey(i * 7919)).collect();
    let providers: Vec<Arc<str>> = vec!["orion".into()];
    // Written by one worker; read by another, whose memory holds none of them.
    let writer = fleet.lookup_cache(0);
    runtime.block_on(async {
        for (i, &lead) in leads.iter().enumerate() {
            let answer = if i % 3 == 0 {
                ProviderAnswer::Found("+14155550100".into())
            } else {
                ProviderAnswer::NotFound
            };
            writer
                .remember(lead, "orion", answer, 0, Duration::from_secs(3_600))
                .await;
        }
    });
    let reader = fleet.lookup_cache(0);
    let mut group = c.benchmark_group("cache_reads");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.sample_size(10);
    group.bench_function("pipelined_10k", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let answers = reader.answers_of_many(&leads, &providers).await;
                assert!(answers.iter().all(|a| a[0].is_some()));
            })
        })
    });
    group.bench_function("gathered_from_1024_in_flight_10k", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let n = futures::stream::iter(&leads)
                    .map(|&lead| {
                        let (reader, providers) = (&reader, &providers);
                        async move { reader.answers(lead, providers, 0).await }
                    })
                    .buffer_unordered(1_024)
                    .filter(|a| std::future::ready(a[0].is_some()))
                    .count()
                    .await;
                assert_eq!(n, KEYS);
            })
        })
    });
    group.finish();
}

criterion_group!(benches, permits, cache_reads);
criterion_main!(benches);
