//! The shipped analytics queries over a small fixed output
//! (`tests/data/analytics/`), each against rows worked out by hand.

use leadflow_pipeline::analytics;

use crate::support::{analytics_fixture, query, rows};

async fn shipped(name: &str) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    analytics_fixture(dir.path());
    let sql = analytics::find(name).expect("shipped").sql;
    rows(&query(dir.path().to_str().unwrap(), sql).await)
}

fn expect(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|v| v.to_string()).collect())
        .collect()
}

#[tokio::test]
async fn summary_counts_as_the_run_does() {
    assert_eq!(
        shipped("summary").await,
        expect(&[&[
            "10", "2", "7", "3", "1", "6", "0.4286", "4", "1", "1", "11", "0.380000", "0.380000",
            "0.1267", "4"
        ]])
    );
}

#[tokio::test]
async fn funnel_steps() {
    assert_eq!(
        shipped("funnel").await,
        expect(&[
            &["1", "leads", "10", "1.0"],
            &["2", "valid own phone", "2", "0.2"],
            &["3", "looked up", "7", "0.7"],
            &["4", "found", "3", "0.3"],
            &["5", "with a phone", "6", "0.6"],
            &["6", "line type known", "4", "0.4"],
            &["7", "line type not asked (budget/limit)", "1", "0.1"],
            &["8", "line type unknown number", "1", "0.1"],
        ])
    );
}

#[tokio::test]
async fn provider_scorecard_per_provider_and_day() {
    // astra on the 25th: an error, its retry (a miss) and a 429; latencies
    // 50, 200, 300 → p50 200, p95 290 (interpolated). orion's skip for tier
    // makes no call and has no latency.
    assert_eq!(
        shipped("provider_scorecard").await,
        expect(&[
            &[
                "astra",
                "2026-11-25",
                "3",
                "0",
                "0.0",
                "1",
                "1",
                "1",
                "200.0",
                "290.0",
                "0.000000",
                "NULL"
            ],
            &[
                "nimbus",
                "2026-11-25",
                "1",
                "1",
                "1.0",
                "0",
                "0",
                "0",
                "400.0",
                "400.0",
                "0.250000",
                "0.25"
            ],
            &[
                "orion",
                "2026-11-25",
                "3",
                "1",
                "0.3333",
                "0",
                "0",
                "0",
                "120.0",
                "138.0",
                "0.046000",
                "0.046"
            ],
            &[
                "astra",
                "2026-11-26",
                "1",
                "1",
                "1.0",
                "0",
                "0",
                "0",
                "250.0",
                "250.0",
                "0.080000",
                "0.08"
            ],
            &[
                "orion",
                "2026-11-26",
                "3",
                "0",
                "0.0",
                "2",
                "0",
                "1",
                "160.0",
                "2716.0",
                "0.004000",
                "NULL"
            ],
        ])
    );
}

#[tokio::test]
async fn coverage_by_country_and_tier() {
    assert_eq!(
        shipped("coverage").await,
        expect(&[
            &["DE", "2", "2", "0", "2", "0", "0.0", "0.0"],
            &["GB", "1", "2", "1", "1", "0", "0.0", "0.5"],
            &["US", "1", "2", "1", "1", "1", "1.0", "1.0"],
            &["US", "2", "2", "0", "1", "1", "1.0", "1.0"],
            &["DE", "3", "1", "0", "1", "1", "1.0", "1.0"],
            &["NULL", "1", "1", "0", "1", "0", "0.0", "0.0"],
        ])
    );
}

#[tokio::test]
async fn spend_by_day_provider_and_organization() {
    assert_eq!(
        shipped("spend").await,
        expect(&[
            &["2026-11-25", "astra", "org_b", "3", "0", "0.000000"],
            &["2026-11-25", "nimbus", "org_b", "1", "1", "0.250000"],
            &["2026-11-25", "orion", "org_a", "1", "1", "0.042000"],
            &["2026-11-25", "orion", "org_b", "2", "0", "0.004000"],
            &["2026-11-26", "astra", "org_a", "0", "0", "0.000000"],
            &["2026-11-26", "astra", "org_b", "1", "1", "0.080000"],
            &["2026-11-26", "orion", "org_a", "1", "0", "0.002000"],
            &["2026-11-26", "orion", "org_b", "2", "0", "0.002000"],
        ])
    );
}

#[tokio::test]
async fn line_types_and_carriers() {
    assert_eq!(
        shipped("line_types").await,
        expect(&[
            &["mobile", "3", "0.5"],
            &["landline", "1", "0.1667"],
            &["not asked (budget/limit)", "1", "0.1667"],
            &["unknown number", "1", "0.1667"],
        ])
    );
    assert_eq!(
        shipped("carriers").await,
        expect(&[
            &["BT", "1", "0", "1", "0"],
            &["T-Mobile USA", "1", "1", "0", "0"],
            &["Telekom", "1", "1", "0", "0"],
            &["Verizon Wireless", "1", "1", "0", "0"],
        ])
    );
}

#[tokio::test]
async fn rejects_by_file_and_reason() {
    assert_eq!(
        shipped("rejects").await,
        expect(&[
            &[
                "leads-a.csv",
                "user_tier",
                "2",
                "4",
                "user_tier: `gold` is not a whole number"
            ],
            &[
                "leads-a.csv",
                "received_at",
                "1",
                "7",
                "received_at: `yesterday` is not a timestamp"
            ],
            &[
                "leads-b.ndjson",
                "not JSON",
                "1",
                "2",
                "not JSON: EOF while parsing an object at line 1 column 1"
            ],
        ])
    );
}

#[tokio::test]
async fn every_shipped_query_runs_on_an_output_without_usage_rejects_or_line_types() {
    // A run without providers over clean input: no provider_usage, no
    // rejects, no line_type column. Every query still answers.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = crate::support::write(
        dir.path(),
        "leads.csv",
        b"lead_id,phone_raw,country\nA,+14155550100,US\nB,,DE\n",
    );
    crate::support::run(crate::support::config(&input, out.to_str().unwrap())).await;
    for q in analytics::QUERIES {
        let got = rows(&query(out.to_str().unwrap(), q.sql).await);
        match q.name {
            "summary" => assert_eq!(
                got,
                expect(&[&[
                    "2", "1", "0", "0", "0", "1", "NULL", "0", "0", "0", "0", "0.000000",
                    "0.000000", "NULL", "0"
                ]])
            ),
            "funnel" => assert_eq!(got.len(), 8),
            "line_types" => assert_eq!(got, expect(&[&["not looked up", "1", "1.0"]])),
            "coverage" => assert_eq!(got.len(), 2),
            _ => assert!(got.is_empty(), "{}: {got:?}", q.name),
        }
    }
}
