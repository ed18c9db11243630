//! The adaptive order's evidence pooled through Redis: what one worker
//! learns, the others order by, and nobody counts its own twice.

use std::sync::Arc;

use leadflow_waterfall::{Evidence, LeadQuery, Learned, WaterfallConfig};

use crate::support::{prefix, services, worker};

const CONFIG: &str = r#"
[waterfall]
order = "adaptive"

[[providers]]
name = "orion"
kind = "orion"
priority = 1
max_requests_per_hour = 1000
base_url = "https://orion.example"
"#;

fn german() -> LeadQuery {
    LeadQuery {
        email: "ana@firma.de".into(),
        country: Some("DE".into()),
        user_tier: Some(1),
        ..Default::default()
    }
}

/// What a new worker of the fleet under `prefix` learns into.
async fn learned(prefix: &str) -> Arc<Learned> {
    let config = WaterfallConfig::from_toml(CONFIG).unwrap();
    services(&worker(prefix).await, &config).learned
}

#[tokio::test]
async fn what_one_worker_learns_the_other_reads_and_neither_counts_its_own_twice_with_redis() {
    let prefix = prefix("learned");
    let (a, b) = (learned(&prefix).await, learned(&prefix).await);
    let lead = german();
    let segment = a.segment(&lead);
    let orion = a.index_of("orion").unwrap();
    for i in 0..100 {
        a.record(orion, &segment, i % 5 != 0);
    }
    let seen = |learned: &Learned| {
        learned
            .evidence("orion", &segment)
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>()
    };
    let want = |calls, hits| vec![Evidence { calls, hits }; 3];
    assert_eq!(seen(&a), want(100, 80));
    assert_eq!(seen(&b), want(0, 0), "nothing pooled yet");
    a.exchange().await;
    b.exchange().await;
    assert_eq!(seen(&b), want(100, 80), "b reads a's evidence");
    for _ in 0..10 {
        b.record(orion, &segment, false);
    }
    b.exchange().await;
    a.exchange().await;
    assert_eq!(seen(&a), want(110, 80), "a's own calls counted once");
    assert_eq!(seen(&b), want(110, 80));
    // History stays each worker's own: added at start, not pooled.
    a.add_history("orion", &lead, Evidence { calls: 5, hits: 5 });
    a.exchange().await;
    b.exchange().await;
    assert_eq!(seen(&a), want(115, 85));
    assert_eq!(seen(&b), want(110, 80));
}

#[tokio::test]
async fn history_is_added_to_the_pool_once_by_the_first_worker_with_redis() {
    use leadflow_waterfall::Seeding;
    let prefix = prefix("seeding");
    let (a, b) = (learned(&prefix).await, learned(&prefix).await);
    let lead = german();
    assert_eq!(a.seeding().await, Seeding::Pool);
    assert_eq!(
        b.seeding().await,
        Seeding::Pooled,
        "the pool is a's to seed"
    );
    let history = Evidence {
        calls: 50,
        hits: 20,
    };
    a.add_evidence(Seeding::Pool, "orion", &lead, history);
    b.add_evidence(Seeding::Pooled, "orion", &lead, history);
    a.seeded().await;
    b.exchange().await;
    let seen = |learned: &Learned| learned.evidence("orion", &learned.segment(&lead))[2].1;
    assert_eq!(seen(&a), history);
    assert_eq!(seen(&b), history, "b has it from the pool, once");
    // A worker starting later finds the pool seeded for good.
    assert_eq!(learned(&prefix).await.seeding().await, Seeding::Pooled);
}
