//! `leadflow serve` over real loopback HTTP: the real binary, providers
//! answered by a sandbox the test owns (so what it served outlives a
//! killed server).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use leadflow_sandbox::Sandbox;
use serde_json::{Value, json};

use crate::support::{TWO_SANDBOX_PROVIDERS, free_addr, query, rows};

/// A config with the sandbox's providers and one key of organization
/// `acme`; returns the sandbox, the config's path and the key.
async fn config_with_a_key(dir: &Path, api: &str) -> (Sandbox, std::path::PathBuf, String) {
    let (sandbox, text) = Sandbox::start_for_config(
        &TWO_SANDBOX_PROVIDERS.replace("latency_ms = 100", "latency_ms = 0"),
    )
    .await
    .unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["keys", "new", "crm", "--org", "acme"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let key = String::from_utf8(made.stderr).unwrap();
    let key = key.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("lf_"), "{key}");
    let block = String::from_utf8(made.stdout).unwrap();
    assert!(!block.contains(&key), "the block holds only the hash");
    let path = dir.join("leadflow.toml");
    std::fs::write(&path, format!("{text}\n[api]\n{api}\n{block}")).unwrap();
    (sandbox, path, key)
}

/// `leadflow serve` of `config` into `out` on `addr`.
fn serve(config: &Path, out: &str, addr: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    command
        .args(["serve", "--out", out, "--addr", addr, "--config"])
        .arg(config)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("REDIS_URL")
        .env("ORION_API_KEY", "orion-test-key-0001")
        .env("ASTRA_API_KEY", "astra-test-key-0001")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Starts `leadflow serve` and waits until it answers.
async fn start(config: &Path, out: &str, addr: &str) -> Child {
    let mut child = serve(config, out, addr).spawn().unwrap();
    let client = reqwest::Client::new();
    loop {
        if client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return child;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `body` to `/v1/lookups` with `key`: (status, content type, JSON).
async fn post(addr: &str, key: Option<&str>, body: String) -> (u16, String, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/v1/lookups"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, content_type, json)
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// A lead with no phone of its own: the waterfall is asked.
fn lead(i: usize) -> Value {
    json!({
        "lead_id": format!("L{i}"),
        "full_name": format!("Person {i}"),
        "email": format!("person{i}@company{i}.com"),
        "company_website": format!("company{i}.com"),
        "country": "US",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_answered_in_order_and_committed_with_every_call_they_paid() {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, config, key) = config_with_a_key(dir.path(), "max_body_bytes = 4096").await;
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let server = start(&config, &out, &addr).await;

    // No key, a wrong key: 401, as a problem.
    let body = json!({ "leads": [lead(0)] }).to_string();
    for wrong in [None, Some("lf_not-a-key")] {
        let (status, content_type, problem) = post(&addr, wrong, body.clone()).await;
        assert_eq!(status, 401, "{problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["type"], "/problems/unauthorized");
    }
    // Malformed JSON: the line and column.
    let (status, _, problem) =
        post(&addr, Some(&key), "{\n  \"leads\": [ {\"a\": 1,}\n".into()).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        (problem["line"].clone(), problem["column"].clone()),
        (json!(2), json!(22))
    );
    // Too many leads, too large a body.
    let many: Vec<Value> = (0..101).map(|_| json!({})).collect();
    let (status, _, problem) = post(&addr, Some(&key), json!({ "leads": many }).to_string()).await;
    assert_eq!(
        (status, problem["field"].clone()),
        (422, json!("leads")),
        "{problem}"
    );
    let (status, _, problem) = post(
        &addr,
        Some(&key),
        format!("{{\"leads\":[\"{}\"]}}", "x".repeat(5000)),
    )
    .await;
    assert_eq!(status, 413, "{problem}");

    // Leads, and items that are not leads: one result each, in order.
    let mut leads: Vec<Value> = (0..6).map(lead).collect();
    leads.insert(2, json!(5));
    leads.insert(
        4,
        json!({ "lead_id": "X", "email": "x@y.com", "organization_id": "other" }),
    );
    let (status, _, answer) = post(&addr, Some(&key), json!({ "leads": leads }).to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], json!(i), "{result}");
    }
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .contains("not a JSON object")
    );
    assert!(
        results[4]["error"]
            .as_str()
            .unwrap()
            .contains("not this key's organization")
    );
    let ids: Vec<&str> = results
        .iter()
        .filter_map(|r| r["lead_id"].as_str())
        .collect();
    assert_eq!(ids, ["L0", "L1", "L2", "L3", "L4", "L5"]);
    for r in results.iter().filter(|r| r["lead_id"].is_string()) {
        let status = r["lookup_status"].as_str().unwrap();
        assert!(["found", "not_found"].contains(&status), "{r}");
        assert_eq!(r["found_phone_e164"].is_string(), status == "found", "{r}");
    }
    stop(server);

    // Committed: the leads (the key's organization), the items refused,
    // and one provider_usage row per request the providers served.
    let got = rows(
        &query(
            &out,
            "select count(*), min(organization_id), max(organization_id) from enriched_leads",
        )
        .await,
    );
    assert_eq!(got, [["6", "acme", "acme"]]);
    let got = rows(&query(&out, "select line, source from rejects order by line").await);
    assert_eq!(
        got,
        [
            ["3", "POST /v1/lookups (key crm)"],
            ["5", "POST /v1/lookups (key crm)"]
        ]
    );
    let served: u64 = sandbox.stats().values().map(|s| s.requests).sum();
    let got = rows(
        &query(
            &out,
            "select count(*), count(*) filter (where organization_id = 'acme') \
             from provider_usage where attempt > 0",
        )
        .await,
    );
    assert_eq!(got, [[served.to_string(), served.to_string()]]);
    assert!(served >= 6, "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_before_its_commit_loses_no_paid_call() {
    let dir = tempfile::tempdir().unwrap();
    // A commit a minute: the kill lands before it.
    let (sandbox, config, key) = config_with_a_key(dir.path(), "commit_ms = 60000").await;
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let mut server = start(&config, &out, &addr).await;
    let leads: Vec<Value> = (0..40).map(lead).collect();
    let (status, _, answer) = post(&addr, Some(&key), json!({ "leads": leads }).to_string()).await;
    assert_eq!(status, 200, "{answer}");
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let served: u64 = sandbox.stats().values().map(|s| s.requests).sum();
    assert!(served >= 40, "{served}");

    // The next start commits the dead server's calls before it serves.
    let server = start(
        &config,
        &dir.path().join("out").display().to_string(),
        &free_addr(),
    )
    .await;
    let got = rows(
        &query(
            &out,
            "select count(*) from provider_usage where attempt > 0",
        )
        .await,
    );
    assert_eq!(got, [[served.to_string()]]);
    stop(server);
    let got = rows(
        &query(
            &out,
            "select count(*) from provider_usage where attempt > 0",
        )
        .await,
    );
    assert_eq!(got, [[served.to_string()]], "committed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_epoch_of_traffic_is_a_commit_and_compaction_folds_them_into_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, key) = config_with_a_key(dir.path(), "commit_ms = 10").await;
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let server = start(&config, &out, &addr).await;
    for round in 0..4usize {
        let leads: Vec<Value> = (0..3).map(|i| lead(round * 3 + i)).collect();
        let (status, _, answer) =
            post(&addr, Some(&key), json!({ "leads": leads }).to_string()).await;
        assert_eq!(status, 200, "{answer}");
        // Committed before the next request: one commit per round.
        let want = ((round + 1) * 3).to_string();
        while crate::support::lead_counts(&out).await.0 != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop(server);
    let lead_files = || {
        crate::support::files_under(&Path::new(&out).join("enriched_leads"))
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    assert_eq!(lead_files(), 4);

    let compacted = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["compact", "--data", &out])
        .output()
        .unwrap();
    assert!(compacted.status.success(), "{compacted:?}");
    assert_eq!(lead_files(), 1);
    let counts = crate::support::lead_counts(&out).await;
    assert_eq!(counts, ("12".to_string(), "12".to_string()));
    // The server's runs, all of whose files were taken, are gone from the log.
    let location = leadflow_pipeline::storage::create(&out).unwrap();
    let snapshot = leadflow_pipeline::publish::Snapshot::read(&location)
        .await
        .unwrap();
    assert!(
        snapshot.runs.iter().all(|r| !r.appended),
        "{:?}",
        snapshot.runs
    );
}

/// Adds `lines` to the config (after its last table, the key's).
fn append(config: &Path, lines: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, format!("{text}{lines}\n")).unwrap();
}

/// Adds `key_lines` to the key, then points the config at the test Redis
/// under a key prefix of its own.
fn share_redis(config: &Path, key_lines: &str) {
    let prefix = format!(
        "test-serve-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    append(
        config,
        &format!(
            "{key_lines}\n\n[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"",
            crate::support::redis_url()
        ),
    );
}

/// Two servers of `config`, each with an output of its own under `dir`.
async fn start_two(config: &Path, dir: &Path) -> ((Child, String), (Child, String)) {
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        let addr = free_addr();
        let out = dir.join(name).display().to_string();
        servers.push((start(config, &out, &addr).await, addr));
    }
    let two = servers.pop().unwrap();
    (servers.pop().unwrap(), two)
}

/// `n` requests of one lead each, spread over `addrs` in turn: the statuses.
async fn statuses(addrs: &[&str], key: &str, n: usize) -> Vec<u16> {
    let mut got = Vec::new();
    for i in 0..n {
        let body = json!({ "leads": [lead(i)] }).to_string();
        let (status, content_type, answer) = post(addrs[i % addrs.len()], Some(key), body).await;
        if status == 429 {
            assert_eq!(content_type, "application/problem+json");
            assert_eq!(answer["type"], "/problems/rate-limited", "{answer}");
        }
        got.push(status);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_requests_per_minute_gets_429_with_when_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, key) = config_with_a_key(dir.path(), "").await;
    append(&config, "requests_per_minute = 3");
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let server = start(&config, &out, &addr).await;
    assert_eq!(statuses(&[&addr], &key, 5).await, [200, 200, 200, 429, 429]);
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/lookups"))
        .header("x-api-key", &key)
        .body(json!({ "leads": [lead(9)] }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("retry-after"), "20");
    assert_eq!(header("ratelimit-policy"), "\"key\";q=3;w=60");
    assert_eq!(header("ratelimit"), "\"key\";r=0;t=20");
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_redis_admit_exactly_a_keys_limit_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, key) = config_with_a_key(dir.path(), "").await;
    share_redis(&config, "requests_per_minute = 10");
    let ((one, a), (two, b)) = start_two(&config, dir.path()).await;
    let got = statuses(&[&a, &b], &key, 16).await;
    assert_eq!(got.iter().filter(|&&s| s == 200).count(), 10, "{got:?}");
    assert_eq!(got.iter().filter(|&&s| s == 429).count(), 6, "{got:?}");
    stop(one);
    stop(two);
}

/// POSTs `body` with an `Idempotency-Key`: (status, replayed, body).
async fn post_once(
    addr: &str,
    key: &str,
    idempotency_key: &str,
    body: &str,
) -> (u16, bool, String) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/lookups"))
        .header("authorization", format!("Bearer {key}"))
        .header("idempotency-key", idempotency_key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (status, replayed, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_under_its_idempotency_key_gets_the_first_answer_from_any_server_and_pays_nothing()
{
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, config, key) = config_with_a_key(dir.path(), "").await;
    share_redis(&config, "");
    let ((one, a), (two, b)) = start_two(&config, dir.path()).await;
    let served = || -> u64 { sandbox.stats().values().map(|s| s.requests).sum() };

    let leads: Vec<Value> = (0..5).map(lead).collect();
    let body = json!({ "leads": leads }).to_string();
    let (status, replayed, first) = post_once(&a, &key, "order-1", &body).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    // Each result's index first, then its fields in a fixed order.
    assert!(
        first.starts_with(r#"{"results":[{"index":0,"lead_id":"L0","phone_e164":"#),
        "{first}"
    );
    let paid = served();
    assert!(paid >= 5, "{paid}");
    // The retry, on the other server: the same bytes, nothing paid again.
    let (status, replayed, again) = post_once(&b, &key, "\"order-1\"", &body).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again, first);
    assert_eq!(served(), paid);
    // The key with another body: 422.
    let other = json!({ "leads": [lead(7)] }).to_string();
    let (status, _, problem) = post_once(&a, &key, "order-1", &other).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem.contains("/problems/idempotency-key-reused"),
        "{problem}"
    );
    // A key that is not one: 400, naming the header.
    let (status, _, problem) = post_once(&a, &key, "has space", &other).await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem.contains("Idempotency-Key"), "{problem}");
    stop(one);
    stop(two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_redis_does_not_answer_is_not_ready_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, _key) = config_with_a_key(dir.path(), "").await;
    // Nothing listens there.
    append(
        &config,
        &format!("\n[redis]\nurl = \"redis://{}\"", free_addr()),
    );
    let addr = free_addr();
    let out = dir.path().join("out").display().to_string();
    let mut server = serve(&config, &out, &addr).spawn().unwrap();
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let said = loop {
        if let Ok(r) = client.get(format!("http://{addr}/healthz")).send().await
            && r.status() == 503
        {
            break r.text().await.unwrap();
        }
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        assert!(
            std::time::Instant::now() < deadline,
            "never said it was not ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(said.contains("Redis does not answer"), "{said}");
    stop(server);
}
