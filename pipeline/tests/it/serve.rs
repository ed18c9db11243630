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
    config_with_latency(dir, api, 0).await
}

/// [`config_with_a_key`] with providers that take `latency_ms` to answer.
async fn config_with_latency(
    dir: &Path,
    api: &str,
    latency_ms: u64,
) -> (Sandbox, std::path::PathBuf, String) {
    let (sandbox, text) = Sandbox::start_for_config(
        &TWO_SANDBOX_PROVIDERS.replace("latency_ms = 100", &format!("latency_ms = {latency_ms}")),
    )
    .await
    .unwrap();
    let (key, block) = new_key("crm", "acme");
    let path = dir.join("leadflow.toml");
    std::fs::write(&path, format!("{text}\n[api]\n{api}\n{block}")).unwrap();
    (sandbox, path, key)
}

/// `leadflow keys new NAME --org ORGANIZATION`: the key and its block.
fn new_key(name: &str, organization: &str) -> (String, String) {
    let made = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["keys", "new", name, "--org", organization])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let key = String::from_utf8(made.stderr).unwrap();
    let key = key.lines().last().unwrap().trim().to_string();
    assert!(key.starts_with("lf_"), "{key}");
    let block = String::from_utf8(made.stdout).unwrap();
    assert!(!block.contains(&key), "the block holds only the hash");
    (key, block)
}

/// The secret the tests' keys sign their webhooks with (Standard Webhooks).
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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
        .env("LEADFLOW_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET)
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
    post_on(&reqwest::Client::new(), addr, key, body).await
}

/// [`post`] through `client`.
async fn post_on(
    client: &reqwest::Client,
    addr: &str,
    key: Option<&str>,
    body: String,
) -> (u16, String, Value) {
    let mut request = client
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

/// Lookups that arrive together are enriched as one batch: each request
/// must still get exactly its own leads back, in its order, with its own
/// items refused, and each lead must be written once under its own key's
/// organization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_sent_at_once_each_get_their_own_answer_and_organization() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, acme) = config_with_a_key(dir.path(), "").await;
    let globex = add_key(&config, "partner", "globex");
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let server = start(&config, &out, &addr).await;

    // Request r: two or three leads of its own, the same people across
    // requests (so the cache answers some), and every third request an
    // item that is not a lead in the middle.
    let request = |r: usize| {
        let mut leads: Vec<Value> = (0..2 + r % 2)
            .map(|j| {
                let mut lead = lead((r + j) % 7);
                lead["lead_id"] = json!(format!("R{r}-{j}"));
                lead
            })
            .collect();
        if r.is_multiple_of(3) {
            leads.insert(1, json!("not a lead"));
        }
        leads
    };
    // One client, so the 80 go out together rather than each after a
    // client's setup.
    let client = reqwest::Client::new();
    let answers = futures::future::join_all((0..80).map(|r| {
        let key = if r % 2 == 0 { &acme } else { &globex };
        let body = json!({ "leads": request(r) }).to_string();
        let (client, addr) = (&client, &addr);
        async move { post_on(client, addr, Some(key), body).await }
    }))
    .await;
    let mut expected = Vec::new();
    for (r, (status, _, answer)) in answers.into_iter().enumerate() {
        assert_eq!(status, 200, "request {r}: {answer}");
        let sent = request(r);
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), sent.len(), "request {r}: {answer}");
        for (i, (result, lead)) in results.iter().zip(&sent).enumerate() {
            assert_eq!(result["index"], json!(i), "request {r}: {answer}");
            match lead["lead_id"].as_str() {
                Some(id) => {
                    assert_eq!(result["lead_id"], json!(id), "request {r}: {answer}");
                    let organization = if r % 2 == 0 { "acme" } else { "globex" };
                    expected.push(vec![id.to_string(), organization.to_string()]);
                }
                None => assert!(
                    result["error"]
                        .as_str()
                        .unwrap()
                        .contains("not a JSON object"),
                    "request {r}: {answer}"
                ),
            }
        }
    }
    stop(server);

    expected.sort();
    let written = rows(
        &query(
            &out,
            "select lead_id, organization_id from enriched_leads order by lead_id",
        )
        .await,
    );
    assert_eq!(written, expected);
    let refused = rows(&query(&out, "select count(*) from rejects").await);
    assert_eq!(
        refused,
        [[(0..80).filter(|r| r % 3 == 0).count().to_string()]]
    );
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

/// Adds a key of `organization` named `name` to the config: the key.
fn add_key(config: &Path, name: &str, organization: &str) -> String {
    let (key, block) = new_key(name, organization);
    append(config, &block);
    key
}

/// Sends `method path` with `key` (and `body` as `content_type`): the response.
async fn call(
    method: reqwest::Method,
    addr: &str,
    path: &str,
    key: &str,
    body: Option<(&str, String)>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"));
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    request.send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls job `id` until it has ended: its last state.
async fn until_ended(addr: &str, key: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let response = call(
            reqwest::Method::GET,
            addr,
            &format!("/v1/jobs/{id}"),
            key,
            None,
        )
        .await;
        assert_eq!(response.status(), 200);
        let running = response.headers().contains_key("retry-after");
        let job: Value = json_of(response).await;
        let state = job["state"].as_str().unwrap().to_string();
        if ["done", "failed", "canceled"].contains(&state.as_str()) {
            assert!(!running, "{job}");
            return job;
        }
        assert!(running, "{job}");
        assert!(std::time::Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// NDJSON of leads `range`.
fn ndjson(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{}\n", lead(i))).collect()
}

/// The rows and distinct leads job `id` committed to `out`'s `enriched_leads`.
async fn job_leads_in(out: &str, id: &str) -> Vec<Vec<String>> {
    let sql = format!(
        "select count(*), count(distinct lead_id) from enriched_leads where run_id = '{id}'"
    );
    rows(&query(out, &sql).await)
}

/// The `lead_id`s of an NDJSON body, sorted.
fn lead_ids_of(ndjson: &str) -> Vec<String> {
    let mut ids: Vec<String> = ndjson
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            row["lead_id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_to_its_results_in_every_format_and_only_its_organization_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, key) = config_with_a_key(dir.path(), "max_job_leads = 60").await;
    let other = add_key(&config, "partner", "globex");
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let server = start(&config, &out, &addr).await;
    let post_job = |body: String, content_type: &'static str| {
        let (addr, key) = (addr.clone(), key.clone());
        async move {
            call(
                reqwest::Method::POST,
                &addr,
                "/v1/jobs",
                &key,
                Some((content_type, body)),
            )
            .await
        }
    };

    // 50 leads and two lines that are not leads.
    let body = format!("{}not json\n[1, 2]\n", ndjson(0..50));
    let accepted = post_job(body, "application/x-ndjson").await;
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers()["location"].to_str().unwrap().to_string();
    let job: Value = json_of(accepted).await;
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(
        (job["state"].as_str(), job["leads"].as_u64()),
        (Some("queued"), Some(52))
    );

    let job = until_ended(&addr, &key, &id).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        (&job["read"], &job["written"], &job["rejected"]),
        (&json!(52), &json!(50), &json!(2)),
        "{job}"
    );
    assert_eq!(job["looked_up"], json!(50), "{job}");

    let results = |format: &'static str| {
        let (addr, key, id) = (addr.clone(), key.clone(), id.clone());
        async move {
            let path = format!("/v1/jobs/{id}/results?format={format}");
            let response = call(reqwest::Method::GET, &addr, &path, &key, None).await;
            assert_eq!(response.status(), 200, "{format}");
            response.bytes().await.unwrap()
        }
    };
    let lines = String::from_utf8(results("ndjson").await.to_vec()).unwrap();
    let want: Vec<String> = {
        let mut ids: Vec<String> = (0..50).map(|i| format!("L{i}")).collect();
        ids.sort();
        ids
    };
    assert_eq!(lead_ids_of(&lines), want);
    assert!(
        lines
            .lines()
            .all(|l| l.contains("\"organization_id\":\"acme\""))
    );
    let csv = String::from_utf8(results("csv").await.to_vec()).unwrap();
    assert_eq!(csv.lines().count(), 51, "a header and 50 rows");
    assert!(csv.starts_with("lead_id,"), "{}", &csv[..80]);
    let parquet = results("parquet").await;
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    let file = dir.path().join("results.parquet");
    std::fs::write(&file, &parquet).unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_parquet("r", file.display().to_string(), Default::default())
        .await
        .unwrap();
    let got = ctx
        .sql("select count(distinct lead_id) from r")
        .await
        .unwrap();
    assert_eq!(rows(&got.collect().await.unwrap()), [["50"]]);

    // Committed as one run named by the job.
    let got = job_leads_in(&out, &id).await;
    assert_eq!(got, [["50", "50"]]);

    // The console asks for a key (its events without one: 401).
    let page = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("data-access=\"key\""));
    let events = reqwest::get(format!("http://{addr}/v1/events"))
        .await
        .unwrap();
    assert_eq!(events.status(), 401);

    // Another organization's key: no such job.
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/jobs/{id}")),
        (reqwest::Method::GET, format!("/v1/jobs/{id}/results")),
        (reqwest::Method::DELETE, format!("/v1/jobs/{id}")),
    ] {
        let response = call(method, &addr, &path, &other, None).await;
        assert_eq!(response.status(), 404, "{path}");
    }

    // A JSON array of leads; a body of another type; too many leads.
    let array = json!([lead(100), lead(101), lead(102)]).to_string();
    let accepted = post_job(array, "application/json").await;
    assert_eq!(accepted.status(), 202);
    let id: String = json_of(accepted).await["id"].as_str().unwrap().into();
    let job = until_ended(&addr, &key, &id).await;
    assert_eq!(
        (&job["state"], &job["written"]),
        (&json!("done"), &json!(3)),
        "{job}"
    );
    let refused = post_job("<leads/>".into(), "application/xml").await;
    assert_eq!(refused.status(), 415);
    let refused = post_job(ndjson(0..61), "application/x-ndjson").await;
    assert_eq!(refused.status(), 413);
    let problem: Value = json_of(refused).await;
    assert_eq!(problem["type"], "/problems/too-many-leads", "{problem}");
    // Nothing is left of refused uploads.
    let jobs = std::fs::read_dir(Path::new(&out).join("_leadflow/jobs"))
        .unwrap()
        .count();
    assert_eq!(jobs, 2);
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_run_is_finished_by_the_next_server_each_lead_once_and_no_call_paid_twice()
{
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, config, key) = config_with_latency(dir.path(), "", 10).await;
    share_redis(&config, "");
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let mut server = start(&config, &out, &addr).await;
    let served = || -> u64 { sandbox.stats().values().map(|s| s.requests).sum() };
    let n = 3000;
    let accepted = call(
        reqwest::Method::POST,
        &addr,
        "/v1/jobs",
        &key,
        Some(("application/x-ndjson", ndjson(0..n))),
    )
    .await;
    assert_eq!(accepted.status(), 202);
    let id: String = json_of(accepted).await["id"].as_str().unwrap().into();
    // Killed once the providers have served part of it.
    while served() < 300 {
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let before = served();
    assert!(
        before < 2 * n as u64,
        "the job ended before the kill: {before}"
    );

    let addr = free_addr();
    let server = start(&config, &out, &addr).await;
    let job = until_ended(&addr, &key, &id).await;
    assert_eq!(
        (&job["state"], &job["written"]),
        (&json!("done"), &json!(n)),
        "{job}"
    );
    assert_eq!(job["attempts"], 2, "run again after the kill: {job}");
    let path = format!("/v1/jobs/{id}/results");
    let response = call(reqwest::Method::GET, &addr, &path, &key, None).await;
    let lines = response.text().await.unwrap();
    let ids = lead_ids_of(&lines);
    let mut want: Vec<String> = (0..n).map(|i| format!("L{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "every lead once in the results");
    stop(server);

    let got = job_leads_in(&out, &id).await;
    assert_eq!(
        got,
        [[n.to_string(), n.to_string()]],
        "every lead once in the output"
    );
    // Every request the providers served is a row; no provider answered
    // a lead twice (the first server's answers came from the cache). A
    // request in flight at the kill is `unknown`: journaled before it was
    // sent, the provider may or may not have seen it.
    let got = rows(
        &query(
            &out,
            "select count(*) filter (where outcome <> 'unknown'), \
                    count(*) filter (where outcome = 'unknown') \
             from provider_usage where attempt > 0",
        )
        .await,
    );
    let [known, unknown] = [0, 1].map(|i| got[0][i].parse::<u64>().unwrap());
    let served = served();
    assert!(
        known <= served && served <= known + unknown,
        "{known} answered + {unknown} unknown rows vs {served} requests served"
    );
    let got = rows(
        &query(
            &out,
            "select count(*) from (select lead_id, provider from provider_usage \
             where attempt > 0 and outcome in ('hit', 'miss') \
             group by lead_id, provider having count(*) > 1)",
        )
        .await,
    );
    assert_eq!(got, [["0"]], "a lead paid twice");
}

/// A webhook receiver on loopback: its URL, and each post's headers and body.
async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, String)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, rx)
}

/// A server of a key whose webhooks are signed, under `api`, and a job of
/// three leads posted to it with `hook` as its webhook: (its directory and
/// providers, the server, its output, the answer).
async fn post_with_webhook(
    api: &str,
    hook: &str,
) -> (
    (tempfile::TempDir, Sandbox),
    Child,
    String,
    reqwest::Response,
) {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, config, key) = config_with_a_key(dir.path(), api).await;
    append(
        &config,
        "webhook_secret_env = \"LEADFLOW_TEST_WEBHOOK_SECRET\"",
    );
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let server = start(&config, &out, &addr).await;
    let answer = call(
        reqwest::Method::POST,
        &addr,
        &format!("/v1/jobs?webhook_url={hook}"),
        &key,
        Some(("application/x-ndjson", ndjson(0..3))),
    )
    .await;
    ((dir, sandbox), server, out, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_end_is_posted_to_its_webhook_signed_and_a_private_target_is_refused() {
    use base64::Engine;
    let (hook, mut posts) = webhook_receiver().await;

    // Private targets refused (the default), before anything is uploaded.
    let (dir, server, out, refused) = post_with_webhook("", &hook).await;
    assert_eq!(refused.status(), 422);
    let problem = json_of(refused).await;
    assert_eq!(problem["field"], "webhook_url", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("127.0.0.1"),
        "{problem}"
    );
    assert!(!Path::new(&out).join("_leadflow/jobs").exists());
    stop(server);
    drop(dir);

    // Allowed: the job's end, signed.
    let (_dir, server, _out, accepted) =
        post_with_webhook("allow_private_webhooks = true", &hook).await;
    assert_eq!(accepted.status(), 202);
    let id = json_of(accepted).await["id"].as_str().unwrap().to_string();
    let (headers, body) = tokio::time::timeout(Duration::from_secs(60), posts.recv())
        .await
        .unwrap()
        .unwrap();
    let header = |name: &str| headers[name].to_str().unwrap().to_string();
    let secret = base64::engine::general_purpose::STANDARD
        .decode(WEBHOOK_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = format!(
        "{}.{}.{body}",
        header("webhook-id"),
        header("webhook-timestamp")
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        signed.as_bytes(),
    );
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.as_ref())
    );
    assert_eq!(header("webhook-signature"), want);
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "job.done", "{event}");
    assert_eq!(
        (&event["data"]["id"], &event["data"]["written"]),
        (&json!(id), &json!(3))
    );
    stop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_running_jobs_counters_change_and_no_data_as_markup() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, _key) = config_with_latency(dir.path(), "console = \"open\"", 20).await;
    // An organization whose name is markup: shown as text, never run.
    let organization = "<img src=x onerror=alert(1)>";
    let key = add_key(&config, "evil", organization);
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let server = start(&config, &out, &addr).await;
    let accepted = call(
        reqwest::Method::POST,
        &addr,
        "/v1/jobs",
        &key,
        Some(("application/x-ndjson", ndjson(0..4000))),
    )
    .await;
    assert_eq!(accepted.status(), 202);
    let id = json_of(accepted).await["id"].as_str().unwrap().to_string();

    // Headless Chromium watches the page for 4 s while the job runs.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/watch_page.py");
    let page = format!("http://{addr}/");
    let watched = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(page)
            .args(["4", "JSON.stringify(document.body.dataset)", "0.5"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(watched.status.success(), "{watched:?}");
    let watched: Value = serde_json::from_slice(&watched.stdout).unwrap();
    let samples: Vec<Value> = watched["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| serde_json::from_str(s.as_str().unwrap()).unwrap())
        .collect();
    let last = samples.last().unwrap();
    let number = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    assert!(number(&last["updates"]) >= 3, "{samples:?}");
    assert!(
        number(&last["changes"]) >= 1,
        "the job's counters never changed: {samples:?}"
    );
    assert_eq!(watched["console"], json!([]), "{}", watched["console"]);
    assert_eq!(
        watched["exceptions"],
        json!([]),
        "{}",
        watched["exceptions"]
    );
    let html = watched["html"].as_str().unwrap();
    assert!(html.contains(&id), "the job is shown");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "as text"
    );
    assert!(!html.contains("<img"), "never as markup");
    stop(server);
}

/// `POST /v1/erasures`: only an admin key; a subject that is not one is a
/// 422 naming the item; an accepted erasure is a 202 with its Location,
/// runs to `done` with a receipt that holds no address, and the output
/// no longer holds the subject's lead while every other lead stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_erases_a_subject_and_reads_the_receipt_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, config, key) = config_with_a_key(dir.path(), "commit_ms = 100").await;
    let (admin, block) = new_key("dpo", "acme");
    append(
        &config,
        &format!(
            "{block}admin = true\n\n[privacy]\nreceipt_key_env = \"LEADFLOW_TEST_RECEIPT_KEY\"\n"
        ),
    );
    let out = dir.path().join("out").display().to_string();
    let addr = free_addr();
    let mut server = serve(&config, &out, &addr)
        .env(
            "LEADFLOW_TEST_RECEIPT_KEY",
            "a test key of at least sixteen bytes",
        )
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    while !client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leads: Vec<Value> = (0..6).map(lead).collect();
    let (status, _, _) = post(&addr, Some(&key), json!({ "leads": leads }).to_string()).await;
    assert_eq!(status, 200);
    let count = |sql: &'static str| {
        let out = out.clone();
        async move { rows(&query(&out, sql).await)[0][0].clone() }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count("select count(*) from enriched_leads").await != "6" {
        assert!(std::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let erase = |key: String, body: Value| {
        let addr = addr.clone();
        async move {
            call(
                reqwest::Method::POST,
                &addr,
                "/v1/erasures",
                &key,
                Some(("application/json", body.to_string())),
            )
            .await
        }
    };
    let subject = json!({ "emails": ["  PERSON3@company3.com "] });
    let refused = erase(key.clone(), subject.clone()).await;
    assert_eq!(refused.status(), 403);
    let bad = erase(admin.clone(), json!({ "emails": ["ok@x.io", "nope"] })).await;
    assert_eq!(bad.status(), 422);
    assert_eq!(json_of(bad).await["field"], "emails/1");
    let accepted = erase(admin.clone(), subject).await;
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers()["location"].to_str().unwrap().to_string();
    let id = json_of(accepted).await["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/erasures/{id}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let erasure = loop {
        let response = call(reqwest::Method::GET, &addr, &location, &admin, None).await;
        assert_eq!(response.status(), 200);
        let view = json_of(response).await;
        if view["state"] != "running" {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(erasure["state"], "done", "{erasure}");
    assert_eq!(erasure["receipt"]["rows_removed"]["enriched_leads"], 1);
    assert!(!erasure.to_string().to_lowercase().contains("person3"));
    assert_eq!(count("select count(*) from enriched_leads").await, "5");
    assert_eq!(
        count("select count(*) from enriched_leads where lead_id = 'L3'").await,
        "0"
    );
    // Another key cannot read it; an unknown id is a 404.
    let other = call(reqwest::Method::GET, &addr, &location, &key, None).await;
    assert_eq!(other.status(), 403);
    let unknown = call(
        reqwest::Method::GET,
        &addr,
        "/v1/erasures/er_0000000000000000",
        &admin,
        None,
    )
    .await;
    assert_eq!(unknown.status(), 404);
    stop(server);
}
