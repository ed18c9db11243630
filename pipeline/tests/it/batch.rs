//! `leadflow batch`: one date at a time, rerun in place, with a manifest,
//! a webhook that is retried, and exit codes that say whose fault.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;

use crate::support::{example, free_addr, http_get, prometheus_samples, query, rows};

/// A webhook receiver on localhost that refuses its first `refuse` posts
/// with a 500 and records every body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

fn receiver(refuse: usize) -> Receiver {
    hook_answering(move |seen| {
        if seen <= refuse {
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            axum::http::StatusCode::OK.into_response()
        }
    })
}

/// A webhook receiver keeping every JSON body posted to it, answering the
/// n-th post (counted from 1) with `answer(n)`.
fn hook_answering(
    answer: impl Fn(usize) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> Receiver {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |body: String| {
                    let (seen, answer) = (seen.clone(), answer.clone());
                    async move {
                        let mut seen = seen.lock().unwrap();
                        seen.push(serde_json::from_str(&body).expect("the webhook posts JSON"));
                        answer(seen.len())
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    Receiver { url, bodies }
}

fn batch(date: &str, input: &Path, out: &Path, extra: &[&str]) -> Output {
    batch_command(date, input, out, extra).output().unwrap()
}

fn batch_command(date: &str, input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    command
        .args(["batch", "--no-progress", "--date", date, "--input"])
        .arg(format!("{}/dt={{date}}/", input.display()))
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("LEADFLOW_WEBHOOK_URL")
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("REDIS_URL");
    command
}

/// The example's header and its lines `from..to` as one date's file.
fn day_file(input: &Path, date: &str, lines: std::ops::Range<usize>) {
    let text = std::fs::read_to_string(example()).unwrap();
    let all: Vec<&str> = text.lines().collect();
    let dir = input.join(format!("dt={date}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = vec![all[0]];
    file.extend(&all[lines]);
    std::fs::write(dir.join("leads.csv"), file.join("\n") + "\n").unwrap();
}

fn manifest(out: &Path, date: &str) -> serde_json::Value {
    let path = out.join(format!("_batches/dt={date}/_manifest.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

async fn leads(out: &Path) -> usize {
    let got = query(out.to_str().unwrap(), "select count(*) from enriched_leads").await;
    rows(&got)[0][0].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_date_reruns_in_place_writes_its_manifest_last_and_says_so_on_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    day_file(&input, "2026-11-21", 1..21);
    day_file(&input, "2026-11-22", 21..31);
    let hook = receiver(1);

    let first = batch("2026-11-21", &input, &out, &["--webhook", &hook.url]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let m = manifest(&out, "2026-11-21");
    assert_eq!(m["date"], "2026-11-21");
    // (The example has quoted fields over several lines: rows, not lines.)
    let read = m["rows"]["read"].as_u64().unwrap();
    let (written, rejected) = (
        m["rows"]["written"].as_u64().unwrap(),
        m["rows"]["rejected"].as_u64().unwrap(),
    );
    assert!(read > 10, "{m}");
    assert_eq!(written + rejected, read);
    let size = std::fs::metadata(input.join("dt=2026-11-21/leads.csv"))
        .unwrap()
        .len();
    assert_eq!(m["inputs"][0]["bytes"], size);
    assert!(
        m["inputs"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("dt=2026-11-21/leads.csv")
    );
    let outputs = m["outputs"].as_array().unwrap();
    let lead_rows: u64 = outputs
        .iter()
        .filter(|o| o["table"] == "enriched_leads")
        .map(|o| o["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(lead_rows, written);
    for o in outputs {
        let file = out.join(o["path"].as_str().unwrap());
        assert!(
            file.is_file(),
            "the manifest lists {} and it is there",
            file.display()
        );
    }
    assert_eq!(m["leadflow_version"], env!("CARGO_PKG_VERSION"));
    assert!(m["started_at"].as_str().unwrap() <= m["finished_at"].as_str().unwrap());
    // The receiver refused the first post: the batch posted again.
    {
        let bodies = hook.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 2, "one refused post, one retry");
        assert_eq!(bodies[0], bodies[1]);
        let text = bodies[1]["text"].as_str().unwrap();
        assert!(
            text.starts_with("leadflow batch 2026-11-21 succeeded: "),
            "{text}"
        );
        assert!(text.contains(&format!("{written} leads written")), "{text}");
        assert_eq!(bodies[1]["blocks"][0]["type"], "header");
        assert!(bodies[1]["blocks"][1]["fields"].as_array().unwrap().len() >= 4);
    }

    let second = batch("2026-11-22", &input, &out, &[]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let day2 = manifest(&out, "2026-11-22");
    let both = leads(&out).await as u64;
    assert_eq!(both, written + day2["rows"]["written"].as_u64().unwrap());

    // The 21st's input changes (5 rows fewer): its rerun replaces its own
    // output, whatever it read before, and leaves the 22nd's alone.
    day_file(&input, "2026-11-21", 1..16);
    let rerun = batch("2026-11-21", &input, &out, &[]);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let m = manifest(&out, "2026-11-21");
    assert!(m["rows"]["read"].as_u64().unwrap() < read, "{m}");
    let now = leads(&out).await as u64;
    assert_eq!(
        now,
        m["rows"]["written"].as_u64().unwrap() + day2["rows"]["written"].as_u64().unwrap()
    );
    assert_eq!(manifest(&out, "2026-11-22"), day2);

    // A rerun of the 22nd that fails (a file that is not Parquet) leaves the
    // date's output and manifest as they were, and says so: exit 2, the
    // failure on the webhook.
    std::fs::write(
        input.join("dt=2026-11-22/broken.parquet"),
        b"PAR1 not parquet",
    )
    .unwrap();
    let hook = receiver(0);
    let failed = batch("2026-11-22", &input, &out, &["--webhook", &hook.url]);
    assert_eq!(
        failed.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(leads(&out).await as u64, now);
    assert_eq!(manifest(&out, "2026-11-22"), day2);
    let bodies = hook.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("leadflow batch 2026-11-22 failed (exit 2): "),
        "{text}"
    );
    assert!(text.contains("broken.parquet"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_without_the_date_or_an_unreachable_webhook_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    day_file(&input, "2026-11-21", 1..6);
    // --input without {date}: the user's to fix, named.
    let refused = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["batch", "--date", "2026-11-21", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("{date}"));
    // A webhook nobody answers does not change the batch's result.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let done = batch("2026-11-21", &input, &out, &["--webhook", &url]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("webhook not delivered"), "{stderr}");
    assert!(
        !stderr.contains("/hook"),
        "the webhook's URL is not logged: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_that_runs_out_writes_the_output_exits_4_and_counts_it_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    day_file(&input, "2026-11-21", 1..61);
    let config = dir.path().join("leadflow.toml");
    std::fs::write(
        &config,
        r#"
[budget]
per_run_usd = 0.10

[[providers]]
name = "orion"
kind = "orion"
priority = 10
max_requests_per_hour = 10000
cost_per_call_usd = 0.0
cost_per_hit_usd = 0.04
base_url = "sandbox"
api_key_env = "ORION_API_KEY"

[sandbox]
hit_rate = 1.0
latency_ms = 0
"#,
    )
    .unwrap();
    // The webhook is posted once the run is done, and the batch waits for
    // its answer: the receiver reads the batch's metrics then.
    let metrics_addr = free_addr();
    let scraped = Arc::new(Mutex::new(String::new()));
    let hook = hook_answering({
        let (scraped, metrics_addr) = (scraped.clone(), metrics_addr.clone());
        move |_| {
            *scraped.lock().unwrap() = http_get(&metrics_addr, "/metrics");
            axum::http::StatusCode::OK.into_response()
        }
    });
    let short = batch(
        "2026-11-21",
        &input,
        &out,
        &[
            "--config",
            config.to_str().unwrap(),
            "--webhook",
            &hook.url,
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(4), "{stderr}");
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("warning:"))
        .unwrap_or_default();
    assert!(
        last.contains("budget ran out") && last.contains("per_run_usd (now $0.1000)"),
        "{stderr}"
    );
    let m = manifest(&out, "2026-11-21");
    assert!(
        m["lookups"]["budget_exhausted"].as_u64().unwrap() > 0,
        "{m}"
    );
    assert_eq!(m["spend_usd"]["orion"], m["spend_total_usd"]);
    let spent: f64 = m["spend_total_usd"].as_str().unwrap().parse().unwrap();
    assert!(spent <= 0.10 + 1e-9, "{spent}");
    assert_eq!(
        leads(&out).await as u64,
        m["rows"]["written"].as_u64().unwrap()
    );
    let bodies = hook.bodies.lock().unwrap();
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(text.contains("finished, budget exhausted"), "{text}");

    // The metrics of a file run count what the manifest does.
    let samples = prometheus_samples(&scraped.lock().unwrap());
    let count = |name: &str| samples.get(name).copied().unwrap_or(0.0) as u64;
    assert_eq!(
        count("leadflow_leads_in_total"),
        m["rows"]["read"].as_u64().unwrap()
    );
    assert_eq!(
        count("leadflow_leads_out_total"),
        m["rows"]["written"].as_u64().unwrap()
    );
    assert_eq!(
        count("leadflow_rejects_total"),
        m["rows"]["rejected"].as_u64().unwrap()
    );
    assert_eq!(
        count(r#"leadflow_lookup_status_total{status="budget_exhausted"}"#),
        m["lookups"]["budget_exhausted"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_killed_around_its_commit_never_leaves_the_manifest_of_other_leads() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    let path = out.join("_batches/dt=2026-11-21/_manifest.json");
    day_file(&input, "2026-11-21", 1..21);
    assert!(batch("2026-11-21", &input, &out, &[]).status.success());
    let first = manifest(&out, "2026-11-21");

    // The date's input grows; its rerun dies just before, then just after,
    // it commits. Before: the old output, and no manifest or the old one;
    // after: the new output, and no manifest.
    day_file(&input, "2026-11-21", 1..31);
    for (at, leads_then) in [
        ("before_commit", first["rows"]["written"].as_u64()),
        ("after_commit", None),
    ] {
        let killed = batch_command("2026-11-21", &input, &out, &[])
            .env("LEADFLOW_CRASH_AT", at)
            .output()
            .unwrap();
        assert!(!killed.status.success(), "{at}");
        let now = leads(&out).await as u64;
        match std::fs::read(&path) {
            Ok(bytes) => {
                let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(m["rows"]["written"].as_u64(), Some(now), "{at}: {m}");
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{at}"),
        }
        if let Some(then) = leads_then {
            assert_eq!(now, then, "{at}: the output is the first batch's");
        }
    }
    // With its input gone, the date keeps the leads the killed rerun
    // committed, and no manifest says it read nothing.
    let leads_then = leads(&out).await;
    let moved = dir.path().join("moved");
    std::fs::rename(input.join("dt=2026-11-21"), &moved).unwrap();
    assert!(batch("2026-11-21", &input, &out, &[]).status.success());
    assert!(
        !path.exists(),
        "a manifest of no input over committed leads"
    );
    assert_eq!(leads(&out).await, leads_then);
    std::fs::rename(&moved, input.join("dt=2026-11-21")).unwrap();

    // The rerun after the kill writes the manifest of what is there.
    assert!(batch("2026-11-21", &input, &out, &[]).status.success());
    let last = manifest(&out, "2026-11-21");
    assert!(last["rows"]["read"].as_u64() > first["rows"]["read"].as_u64());
    assert_eq!(
        last["rows"]["written"].as_u64(),
        Some(leads(&out).await as u64)
    );
    assert!(last["rows"]["written"].as_u64() > first["rows"]["written"].as_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_replaces_a_batchs_leads_takes_its_manifest_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    day_file(&input, "2026-11-21", 1..21);
    assert!(batch("2026-11-21", &input, &out, &[]).status.success());
    let path = out.join("_batches/dt=2026-11-21/_manifest.json");
    assert!(path.exists());
    // A run over the same file replaces the batch's leads.
    let run = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["run", "--no-progress", "--input"])
        .arg(input.join("dt=2026-11-21/leads.csv"))
        .arg("--out")
        .arg(&out)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let runs = rows(
        &query(
            out.to_str().unwrap(),
            "select count(distinct run_id) from enriched_leads",
        )
        .await,
    );
    assert_eq!(runs, [["1"]], "the run replaced the batch");
    assert!(
        !path.exists(),
        "the batch's manifest describes leads that are gone"
    );
}

/// A webhook receiver that sends every post on with a 307 to `location`.
fn redirecting(location: String) -> Receiver {
    hook_answering(move |_| {
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, location.clone())],
        )
            .into_response()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_redirect_is_a_failed_delivery_and_nothing_reaches_its_target() {
    use leadflow_pipeline::batch::webhook::Webhook;
    let elsewhere = receiver(0);
    let hook = redirecting(format!("{}?from=redirect", elsewhere.url));
    let webhook = Webhook {
        attempts: 3,
        backoff: std::time::Duration::ZERO,
        ..Webhook::new(format!("{}?token=s3cret-path", hook.url))
    };
    let delivered = webhook.send(&serde_json::json!({"text": "hello"})).await;
    assert!(!delivered, "a 307 is not a delivery");
    assert_eq!(
        hook.bodies.lock().unwrap().len(),
        1,
        "a redirect is not retried"
    );
    assert!(
        elsewhere.bodies.lock().unwrap().is_empty(),
        "nothing was posted to the redirect's target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_without_input_files_writes_a_manifest_saying_so_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    // The day's directory is there and empty; another day's is not there.
    std::fs::create_dir_all(input.join("dt=2026-11-23")).unwrap();
    for date in ["2026-11-23", "2026-11-24"] {
        let done = batch(date, &input, &out, &[]);
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(0), "{date}: {stderr}");
        let m = manifest(&out, date);
        assert_eq!(m["rows"]["read"], 0, "{m}");
        assert_eq!(m["outputs"].as_array().unwrap().len(), 0, "{m}");
        assert!(
            m["note"].as_str().unwrap().starts_with("no input files"),
            "{m}"
        );
    }

    // A day batched before whose input is gone keeps its output and manifest.
    day_file(&input, "2026-11-25", 1..6);
    assert!(batch("2026-11-25", &input, &out, &[]).status.success());
    let before = manifest(&out, "2026-11-25");
    let written = leads(&out).await;
    assert!(written > 0);
    std::fs::remove_dir_all(input.join("dt=2026-11-25")).unwrap();
    let again = batch("2026-11-25", &input, &out, &[]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(manifest(&out, "2026-11-25"), before);
    assert_eq!(leads(&out).await, written);
}

/// Two batches of one date at once: the one paused after its conflict check
/// and before it deletes the date's manifest resumes after the other
/// committed and wrote its manifest. It loses (exit 3), and the winner's
/// manifest is still there, describing the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_loses_a_race_leaves_the_winners_manifest() {
    use super::commit_log::{resume, wait_stopped};
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("in"), dir.path().join("out"));
    day_file(&input, "2026-11-22", 1..21);
    assert!(batch("2026-11-22", &input, &out, &[]).status.success());
    day_file(&input, "2026-11-22", 1..41);

    let gate = dir.path().join("go");
    let mut paused = batch_command("2026-11-22", &input, &out, &[])
        .env("LEADFLOW_STOP_AT", "before_replacing")
        .env("LEADFLOW_STOP_UNTIL", &gate)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::task::block_in_place(|| wait_stopped(&mut paused));
    let winner = batch("2026-11-22", &input, &out, &["--run-id", "winner"]);
    assert!(
        winner.status.success(),
        "{}",
        String::from_utf8_lossy(&winner.stderr)
    );
    assert_eq!(manifest(&out, "2026-11-22")["run_id"], "winner");

    let lost = tokio::task::block_in_place(|| {
        resume(&mut paused, &gate);
        paused.wait_with_output().unwrap()
    });
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert_eq!(lost.status.code(), Some(3), "{stderr}");
    let m = manifest(&out, "2026-11-22");
    assert_eq!(m["run_id"], "winner", "{m}");
    assert_eq!(
        m["rows"]["written"].as_u64(),
        Some(leads(&out).await as u64)
    );
}
