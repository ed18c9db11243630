//! `leadflow stream` and `leadflow produce`, the real binaries, against
//! librdkafka's in-process mock cluster: every lead once in the output,
//! whatever stops the stream (SIGTERM, a kill between any two steps, a lost
//! commit, a rebalance), dead letters for bad messages, `/metrics`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadflow_pipeline::sources::kafka::{OFFSET_HEADER, PARTITION_HEADER, REASON_HEADER};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use super::support::{
    TWO_SANDBOX_PROVIDERS, example, free_addr, http_get, lead_counts, prometheus_samples, query,
    redis_url, rows,
};

const TOPIC: &str = "leads";

/// A mock cluster with the leads topic (and its dead-letter topic).
struct Kafka {
    _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: String,
}

fn kafka(partitions: i32) -> Kafka {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, partitions, 1).unwrap();
    cluster.create_topic(&format!("{TOPIC}.dlq"), 1, 1).unwrap();
    Kafka {
        brokers: cluster.bootstrap_servers(),
        _cluster: cluster,
    }
}

/// The example's providers, answered by the in-process sandbox at once.
fn provider_config(dir: &Path, redis_prefix: Option<&str>) -> PathBuf {
    let example_toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/leadflow.toml"),
    )
    .unwrap();
    let mut toml = example_toml.replace("latency_ms = ", "latency_ms = 0 # ");
    if let Some(prefix) = redis_prefix {
        toml.push_str(&format!("\n[redis]\nkey_prefix = \"{prefix}\"\n"));
    }
    let path = dir.join("leadflow.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("lftest-stream-{name}-{}-{nanos}", std::process::id())
}

/// `leadflow stream` of the leads topic into `out`, in `group`, with
/// `extra` arguments and nothing from the test's environment.
fn stream_command(kafka: &Kafka, group: &str, out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    command
        .args(["stream", "--brokers", &kafka.brokers, "--topic", TOPIC])
        .args(["--group", group, "--batch-ms", "100", "--workers", "2"])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("REDIS_URL")
        .env_remove("LEADFLOW_CRASH_AT");
    command
}

/// `leadflow stream` into `out`, its stderr piped.
fn spawn_stream(kafka: &Kafka, group: &str, out: &Path, extra: &[&str]) -> Child {
    stream_command(kafka, group, out, extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("leadflow stream starts")
}

/// SIGTERM (unless it has exited), then the exit status and stderr.
fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    if child.try_wait().unwrap().is_none() {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Rows in the visible Parquet files of `out/table` (files appear whole, by rename).
fn visible_rows(out: &Path, table: &str) -> i64 {
    let dir = out.join(table);
    if !dir.exists() {
        return 0;
    }
    super::support::files_under(&dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| {
            use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
            let file = std::fs::File::open(p).unwrap();
            SerializedFileReader::new(file)
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows()
        })
        .sum()
}

/// Waits (a condition, not a time) until `out` shows `leads` leads and `rejects` rejects.
fn wait_for_output(out: &Path, leads: i64, rejects: i64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (l, r) = (
            visible_rows(out, "enriched_leads"),
            visible_rows(out, "rejects"),
        );
        if l >= leads && r >= rejects {
            assert_eq!((l, r), (leads, rejects), "more output than input");
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("the stream exited ({status}) at {l} leads, {r} rejects: {stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "waited 120 s for {leads} leads and {rejects} rejects; have {l} and {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends the example's leads through `leadflow produce`: 400 sent, 3 not.
fn produce_example(kafka: &Kafka) {
    let output = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["produce", "--brokers", &kafka.brokers, "--topic", TOPIC])
        .arg(example())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("400 leads sent"), "{stderr}");
    assert!(stderr.contains("3 records not sent"), "{stderr}");
}

fn client(kafka: &Kafka) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    c
}

/// Whether `group` has committed the end of every partition of the topic.
/// Waits until `group` has committed every partition to its end, failing
/// if `child` exits first or two minutes pass.
fn wait_until_committed_to_end(kafka: &Kafka, group: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !committed_to_end(kafka, group) {
        assert!(Instant::now() < deadline, "offsets never reached the end");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the stream exited before committing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn committed_to_end(kafka: &Kafka, group: &str) -> bool {
    let consumer: BaseConsumer = client(kafka).set("group.id", group).create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition(TOPIC, p.id());
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, p.id(), Duration::from_secs(5))
            .unwrap();
        ends.push(high);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .unwrap();
    committed
        .elements()
        .iter()
        .zip(ends)
        .all(|(e, high)| high == 0 || e.offset() == Offset::Offset(high))
}

/// The number after `label` in the stream's summary.
fn summary_number(stderr: &str, label: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.trim_start()[label.len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{label}` in the summary: {stderr}"))
}

async fn assert_each_lead_once(out: &Path, leads: usize) {
    let out = out.display().to_string();
    assert_eq!(
        lead_counts(&out).await,
        (leads.to_string(), leads.to_string())
    );
    if !Path::new(&out).join("provider_usage").exists() {
        return;
    }
    // No question was paid for twice (a request in flight when a stream was
    // killed is `unknown`: it may never have reached the provider, and the
    // restart asks again).
    let calls = rows(
        &query(
            &out,
            "select lead_id, provider from provider_usage
             where attempt > 0 and outcome <> 'unknown'",
        )
        .await,
    );
    let distinct: HashSet<_> = calls.iter().collect();
    assert_eq!(distinct.len(), calls.len(), "a (lead, provider) paid twice");
}

#[tokio::test]
async fn every_lead_once_usage_as_served_offsets_committed_and_metrics_that_agree() {
    let kafka = kafka(4);
    produce_example(&kafka);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = provider_config(dir.path(), None);
    let metrics_addr = free_addr();
    let mut child = spawn_stream(
        &kafka,
        "g1",
        &out,
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    wait_for_output(&out, 400, 0, &mut child);
    let metrics = http_get(&metrics_addr, "/metrics");
    assert_eq!(http_get(&metrics_addr, "/healthz").trim(), "ok");
    let (status, stderr) = terminate(child);
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        committed_to_end(&kafka, "g1"),
        "offsets committed on SIGTERM"
    );

    assert_each_lead_once(&out, 400).await;
    let served = summary_number(&stderr, "sandbox");
    assert!(served > 100, "{stderr}");
    let outd = out.display().to_string();
    let paid = rows(
        &query(
            &outd,
            "select count(*) from provider_usage where attempt > 0",
        )
        .await,
    );
    assert_eq!(
        paid[0][0],
        served.to_string(),
        "usage rows = requests served"
    );

    // File names carry topic, partition and the offsets they hold.
    let names: Vec<String> = super::support::files_under(&out.join("enriched_leads"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| {
            let parts: Vec<&str> = n.split('-').collect();
            n.starts_with("part-leads-")
                && parts.len() == 6
                && parts[2].parse::<i32>().is_ok_and(|p| (0..4).contains(&p))
                && parts[3].parse::<i64>().unwrap() <= parts[4].parse::<i64>().unwrap()
        }),
        "{names:?}"
    );

    // Prometheus text whose counters are the output's.
    let samples = prometheus_samples(&metrics);
    assert_eq!(samples.get("leadflow_leads_out_total"), Some(&400.0));
    assert_eq!(samples.get("leadflow_leads_in_total"), Some(&400.0));
    let calls: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("leadflow_lookup_seconds_count"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(calls, served as f64, "lookup latency samples = calls");
}

#[tokio::test]
async fn a_stream_killed_between_any_two_steps_restarts_without_losing_or_doubling() {
    for crash_at in [
        "stream_before_ledger",
        "stream_after_ledger",
        "stream_before_offset_commit",
    ] {
        let kafka = kafka(4);
        produce_example(&kafka);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let prefix = unique(crash_at);
        let config = provider_config(dir.path(), Some(&prefix));
        // The crashed consumer stays in the group until its session times
        // out; a short one lets the restart in sooner.
        let args = [
            "--config",
            config.to_str().unwrap(),
            "--redis",
            &redis_url(),
            "--kafka",
            "session.timeout.ms=6000",
            "--kafka",
            "heartbeat.interval.ms=500",
        ];
        let crashed = stream_command(&kafka, "g", &out, &args)
            .env("LEADFLOW_CRASH_AT", crash_at)
            .output()
            .unwrap();
        assert!(
            !crashed.status.success(),
            "{crash_at}: {}",
            String::from_utf8_lossy(&crashed.stderr)
        );
        assert!(
            !committed_to_end(&kafka, "g"),
            "{crash_at}: nothing committed"
        );

        let mut child = spawn_stream(&kafka, "g", &out, &args);
        wait_for_output(&out, 400, 0, &mut child);
        // The output may have been whole before the crash: the restarted
        // stream commits the written offsets only once the group has given
        // it the partitions (after the crashed member's session ends) and it
        // has replayed them, so stopping it earlier would test the clock.
        wait_until_committed_to_end(&kafka, "g", &mut child);
        let (status, stderr) = terminate(child);
        assert!(status.success(), "{crash_at}: {stderr}");
        assert_each_lead_once(&out, 400).await;
        assert!(committed_to_end(&kafka, "g"), "{crash_at}");
        let staged = super::support::files_under(&out.join("_leadflow"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("/staging/"))
            .count();
        assert_eq!(staged, 0, "{crash_at}: staging cleaned up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_killed_before_its_cut_commits_leaves_every_request_it_sent_in_provider_usage() {
    let kafka = kafka(2);
    produce_example(&kafka);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (sandbox, text) = leadflow_sandbox::Sandbox::start_for_config(
        &TWO_SANDBOX_PROVIDERS.replace("latency_ms = 100", "latency_ms = 0"),
    )
    .await
    .unwrap();
    let config = dir.path().join("leadflow.toml");
    std::fs::write(&config, text).unwrap();
    let served = || -> u64 { sandbox.stats().values().map(|s| s.requests).sum() };
    let command = {
        let (kafka_brokers, out, config) = (kafka.brokers.clone(), out.clone(), config.clone());
        move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
            command
                .args(["stream", "--brokers", &kafka_brokers, "--topic", TOPIC])
                .args(["--group", "g", "--batch-ms", "100", "--workers", "2"])
                .arg("--out")
                .arg(&out)
                .arg("--config")
                .arg(&config)
                .args(["--kafka", "session.timeout.ms=6000"])
                .args(["--kafka", "heartbeat.interval.ms=500"])
                .env_remove("LEADFLOW_CONFIG")
                .env_remove("REDIS_URL")
                .env("ORION_API_KEY", "orion-test-key-0001")
                .env("ASTRA_API_KEY", "astra-test-key-0001");
            command
        }
    };

    // Killed once its first cut is enriched, before the cut commits: the
    // providers were paid, and no cut is in the output.
    let mut crashed = command();
    crashed.env("LEADFLOW_CRASH_AT", "stream_before_ledger");
    // Blocking waits off the runtime's other worker, which serves the sandbox.
    let crashed = tokio::task::block_in_place(|| crashed.output().unwrap());
    assert!(!crashed.status.success());
    let paid_by_crashed = served();
    assert!(paid_by_crashed > 0, "the killed stream called no provider");
    assert_eq!(visible_rows(&out, "provider_usage"), 0);

    // The next stream commits the killed one's calls first, then streams
    // every lead (paying again for those it replays: no shared cache).
    let mut restarted = command();
    restarted.stderr(Stdio::piped());
    let (status, stderr) = tokio::task::block_in_place(|| {
        let mut child = restarted.spawn().unwrap();
        wait_for_output(&out, 400, 0, &mut child);
        wait_until_committed_to_end(&kafka, "g", &mut child);
        terminate(child)
    });
    assert!(status.success(), "{stderr}");
    let leads = rows(
        &query(
            out.to_str().unwrap(),
            "select count(*), count(distinct lead_id) from enriched_leads",
        )
        .await,
    );
    assert_eq!(leads, [["400", "400"]]);
    let recorded = rows(
        &query(
            out.to_str().unwrap(),
            "select count(*) filter (where attempt > 0 and outcome <> 'unknown'),
                    count(*) filter (where outcome = 'unknown')
             from provider_usage",
        )
        .await,
    );
    let [known, unknown] = [0, 1].map(|i| recorded[0][i].parse::<u64>().unwrap());
    let served = served();
    assert!(served > paid_by_crashed, "the restart paid too");
    // A request of the other worker in flight at the kill is `unknown`: the
    // provider may or may not have seen it.
    assert!(
        known <= served && served <= known + unknown,
        "{known} answered + {unknown} unknown rows vs {served} requests served"
    );
    let logs = out.join("_leadflow/usage-log");
    assert_eq!(std::fs::read_dir(&logs).unwrap().count(), 0, "logs left");
}

#[tokio::test]
async fn a_lost_commit_replays_nothing_into_the_output_and_pays_nothing() {
    let kafka = kafka(3);
    produce_example(&kafka);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let prefix = unique("lost-commit");
    let config = provider_config(dir.path(), Some(&prefix));
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--redis",
        &redis_url(),
    ];
    let mut child = spawn_stream(&kafka, "first", &out, &args);
    wait_for_output(&out, 400, 0, &mut child);
    let (status, stderr) = terminate(child);
    assert!(status.success(), "{stderr}");
    let usage_before = visible_rows(&out, "provider_usage");

    // A group with no commits reads the topic from its start, as a lost
    // commit (or an offset reset) would.
    let child = spawn_stream(&kafka, "second", &out, &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !committed_to_end(&kafka, "second") {
        assert!(Instant::now() < deadline, "the replay never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, stderr) = terminate(child);
    assert!(status.success(), "{stderr}");
    assert_eq!(summary_number(&stderr, "already written"), 400, "{stderr}");
    assert_eq!(summary_number(&stderr, "leads written"), 0, "{stderr}");
    assert_each_lead_once(&out, 400).await;
    assert_eq!(visible_rows(&out, "provider_usage"), usage_before);
}

#[tokio::test]
async fn bad_messages_go_to_the_dead_letter_topic_and_rejects_and_neighbours_pass() {
    let kafka = kafka(1);
    let producer: BaseProducer = client(&kafka).create().unwrap();
    let good = |i: usize| {
        format!(
            r#"{{"lead_id":"good-{i}","email":"p{i}@example.com","phone_raw":"+1 415 555 01{i:02}","user_tier":2}}"#
        )
    };
    let huge = format!(r#"{{"lead_id":"huge","company":"{}"}}"#, "x".repeat(3000));
    // (payload, key, why); a key would be the lead's id, so the message
    // without identity has none.
    let bad: [(&str, Option<&str>, &str); 5] = [
        ("not json at all", Some("k"), "not a JSON object"),
        (
            r#"{"lead_id":"t","user_tier":{"a":1}}"#,
            Some("k"),
            "user_tier: expected a whole number",
        ),
        (r#"{"country":"US"}"#, None, "no lead identity"),
        (&huge, Some("k"), "over the limit"),
        (
            r#"{"lead_id":"e","email":42}"#,
            Some("k"),
            "email: expected a string",
        ),
    ];
    for i in 0..10 {
        let payload = good(i);
        producer
            .send(BaseRecord::<str, str>::to(TOPIC).payload(&payload))
            .unwrap();
        if let Some((payload, key, _)) = bad.get(i / 2).filter(|_| i % 2 == 1) {
            let mut record = BaseRecord::<str, str>::to(TOPIC).payload(*payload);
            if let Some(key) = key {
                record = record.key(*key);
            }
            producer.send(record).unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = spawn_stream(&kafka, "g", &out, &["--max-message-bytes", "2000"]);
    wait_for_output(&out, 10, 5, &mut child);
    let (status, stderr) = terminate(child);
    assert!(status.success(), "{stderr}");
    assert!(
        committed_to_end(&kafka, "g"),
        "bad messages' offsets are committed"
    );

    let outd = out.display().to_string();
    let reasons = rows(&query(&outd, "select line, reason from rejects order by line").await);
    assert_eq!(reasons.len(), 5);
    for ((offset, reason), (_, _, expected)) in reasons.iter().map(|r| (&r[0], &r[1])).zip(&bad) {
        assert!(reason.contains(expected), "offset {offset}: {reason}");
    }
    let leads = rows(&query(&outd, "select lead_id from enriched_leads order by 1").await);
    assert_eq!(leads.len(), 10);

    // The dead letters: the original bytes, why, and from where.
    let consumer: BaseConsumer = client(&kafka)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&format!("{TOPIC}.dlq")]).unwrap();
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while letters.len() < 5 && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            let headers = message.headers().expect("headers");
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            letters.push((
                message.payload().map(|p| p.to_vec()),
                header(REASON_HEADER),
                header(PARTITION_HEADER),
                header(OFFSET_HEADER),
                message.key().map(|k| k.to_vec()),
            ));
        }
    }
    assert_eq!(letters.len(), 5, "every bad message is a dead letter");
    for (((payload, reason, partition, offset, key), (sent, sent_key, expected)), reject) in
        letters.iter().zip(bad.iter()).zip(&reasons)
    {
        assert_eq!(
            payload.as_deref(),
            Some(sent.as_bytes()),
            "the original bytes"
        );
        assert_eq!(
            key.as_deref(),
            sent_key.map(str::as_bytes),
            "the original key"
        );
        assert!(reason.contains(expected), "{reason}");
        assert_eq!(partition, "0");
        assert_eq!(offset, &reject[0], "the offset, as in rejects");
    }
}

/// Sends leads `L{from}` … `L{to - 1}`, keyed by their id, and waits until the broker has them.
fn send_leads(producer: &BaseProducer, from: usize, to: usize) {
    for i in from..to {
        let payload = format!(
            r#"{{"lead_id":"L{i}","email":"l{i}@example.com","phone_raw":"+44 20 7946 {:04}","country":"GB"}}"#,
            i % 10_000
        );
        let key = format!("L{i}");
        loop {
            match producer.send(BaseRecord::to(TOPIC).payload(&payload).key(&key)) {
                Ok(()) => break,
                Err(_) => producer.poll(Duration::from_millis(10)),
            }
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// `leadflow stream` logging at info level into `log` (so a test can see
/// its partitions come and go).
fn spawn_logged_stream(
    kafka: &Kafka,
    group: &str,
    out: &Path,
    extra: &[&str],
    log: &Path,
) -> Child {
    stream_command(kafka, group, out, extra)
        .env("LEADFLOW_LOG", "info")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until `log` has said `what` `times` times, failing if `child`
/// exits first. A bound, not a wait: a loaded CI machine has taken over a
/// minute for a join.
fn wait_for_log(log: &Path, what: &str, times: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if text.matches(what).count() >= times {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{what}` never logged {times} times: {text}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the stream exited: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn two_consumers_in_a_group_split_the_partitions_and_write_each_lead_once() {
    let kafka = kafka(4);
    let producer: BaseProducer = client(&kafka).create().unwrap();
    let send = |from: usize, to: usize| send_leads(&producer, from, to);
    send(0, 2000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Short heartbeats: the first consumer hears of the rebalance sooner.
    let small = [
        "--batch-rows",
        "50",
        "--kafka",
        "heartbeat.interval.ms=500",
        "--kafka",
        "session.timeout.ms=6000",
    ];
    let mut a = spawn_stream(&kafka, "g", &out, &small);
    let deadline = Instant::now() + Duration::from_secs(60);
    while visible_rows(&out, "enriched_leads") == 0 {
        assert!(
            Instant::now() < deadline,
            "the first consumer wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second joins mid-stream: a rebalance while the first writes; the
    // rest is sent once the group has settled with both.
    let log = dir.path().join("b.log");
    let mut b = spawn_logged_stream(&kafka, "g", &out, &small, &log);
    wait_for_log(&log, "partitions assigned", 1, &mut b);
    send(2000, 4000);
    wait_for_output(&out, 4000, 0, &mut a);
    assert!(b.try_wait().unwrap().is_none(), "the second consumer runs");
    let (status_a, stderr_a) = terminate(a);
    let (status_b, _) = terminate(b);
    let stderr_b = std::fs::read_to_string(&log).unwrap();
    assert!(status_a.success(), "{stderr_a}");
    assert!(status_b.success(), "{stderr_b}");
    let written = |s: &str| summary_number(s, "leads written");
    assert_eq!(written(&stderr_a) + written(&stderr_b), 4000);
    assert!(
        written(&stderr_b) > 0,
        "the second consumer took partitions: {stderr_b}"
    );
    assert_each_lead_once(&out, 4000).await;
}

#[tokio::test]
async fn consumers_joining_and_leaving_move_only_their_partitions_eager_or_cooperative() {
    for strategy in ["roundrobin", "cooperative-sticky"] {
        let kafka = kafka(6);
        let producer: BaseProducer = client(&kafka).create().unwrap();
        let send = |from: usize, to: usize| send_leads(&producer, from, to);
        send(0, 1000);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let assignor = format!("partition.assignment.strategy={strategy}");
        let args = [
            "--batch-rows",
            "50",
            "--kafka",
            &assignor,
            "--kafka",
            "heartbeat.interval.ms=500",
            "--kafka",
            "session.timeout.ms=6000",
        ];
        let logs: Vec<PathBuf> = ["a", "b", "c"]
            .iter()
            .map(|n| dir.path().join(format!("{n}.log")))
            .collect();
        let mut a = spawn_logged_stream(&kafka, "g", &out, &args, &logs[0]);
        wait_for_log(&logs[0], "partitions assigned", 1, &mut a);
        send(1000, 2000);
        // A second and a third join while the first writes: each join moves
        // partitions away from the members that hold them.
        let mut b = spawn_logged_stream(&kafka, "g", &out, &args, &logs[1]);
        wait_for_log(&logs[1], "partitions assigned", 1, &mut b);
        send(2000, 3000);
        let mut c = spawn_logged_stream(&kafka, "g", &out, &args, &logs[2]);
        wait_for_log(&logs[2], "partitions assigned", 1, &mut c);
        send(3000, 4000);
        // The third leaves: its partitions move back to the other two.
        let (status_c, _) = terminate(c);
        assert!(
            status_c.success(),
            "{strategy}: {}",
            std::fs::read_to_string(&logs[2]).unwrap()
        );
        send(4000, 5000);
        wait_for_output(&out, 5000, 0, &mut a);
        let (status_a, _) = terminate(a);
        let (status_b, _) = terminate(b);
        let stderr: Vec<String> = logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap())
            .collect();
        assert!(status_a.success(), "{strategy}: {}", stderr[0]);
        assert!(status_b.success(), "{strategy}: {}", stderr[1]);
        for s in &stderr {
            // Neither the warning nor the summary's count of dropped messages.
            assert!(
                !s.contains("not assigned here"),
                "{strategy}: a message was dropped: {s}"
            );
        }
        let written: u64 = stderr
            .iter()
            .map(|s| summary_number(s, "leads written"))
            .sum();
        assert_eq!(written, 5000, "{strategy}");
        assert_each_lead_once(&out, 5000).await;
    }
}

/// The status code and body of a plain HTTP/1.0 GET on localhost, or
/// `None` while nothing listens there.
fn http_status(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

#[test]
fn a_consumer_its_group_refuses_is_not_ready_logs_the_error_once_and_exits_3_naming_it() {
    let kafka = kafka(2);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = [
        "--kafka",
        "heartbeat.interval.ms=500",
        "--kafka",
        "session.timeout.ms=6000",
    ];
    let first_addr = free_addr();
    let first_log = dir.path().join("first.log");
    let mut first = spawn_logged_stream(
        &kafka,
        "g",
        &out,
        &[&args[..], &["--metrics-addr", &first_addr]].concat(),
        &first_log,
    );
    wait_for_log(&first_log, "partitions assigned", 1, &mut first);
    assert_eq!(
        http_status(&first_addr, "/healthz"),
        Some((200, "ok\n".into()))
    );

    // The group refuses every further join, as a broker does when the
    // joining member's assignors share none with the group's members
    // (`partition.assignment.strategy` differs). The mock broker cannot be
    // asked for that itself: it assumes every member's first assignor is
    // the leader's.
    kafka._cluster.request_errors(
        RDKafkaApiKey::JoinGroup,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INCONSISTENT_GROUP_PROTOCOL; 1000],
    );
    let second_addr = free_addr();
    let mut second = stream_command(
        &kafka,
        "g",
        &out,
        &[
            &args[..],
            &["--join-timeout-secs", "5", "--metrics-addr", &second_addr],
        ]
        .concat(),
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while second.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the second consumer never gave up"
        );
        answers.extend(http_status(&second_addr, "/healthz"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("consumer group `g` gave this consumer no partitions"),
        "{stderr}"
    );
    assert!(stderr.contains("Inconsistent group protocol"), "{stderr}");
    let first_reports = stderr
        .lines()
        .filter(|l| l.contains(r#""message":"Kafka consumer error""#))
        .count();
    assert_eq!(first_reports, 1, "logged once, then counted: {stderr}");
    assert!(!answers.is_empty(), "/healthz never answered: {stderr}");
    assert!(
        answers
            .iter()
            .all(|(code, body)| *code == 503 && body.starts_with("not ready")),
        "{answers:?}"
    );

    // The first consumer is not disturbed.
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first consumer runs"
    );
    kafka
        ._cluster
        .clear_request_errors(RDKafkaApiKey::JoinGroup);
    let (status, _) = terminate(first);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&first_log).unwrap()
    );
}

#[test]
fn a_missing_topic_or_dead_letter_topic_is_named_and_the_exit_code_says_whose_fault() {
    let kafka = kafka(1);
    let dir = tempfile::tempdir().unwrap();
    for (topic, dlq, says) in [
        ("nope", None, "Kafka topic `nope` does not exist"),
        (
            TOPIC,
            Some("missing.dlq"),
            "dead-letter topic `missing.dlq` does not exist",
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
        command
            .args(["stream", "--brokers", &kafka.brokers, "--topic", topic])
            .arg("--out")
            .arg(dir.path().join("out"))
            .env_remove("LEADFLOW_CONFIG")
            .env_remove("REDIS_URL");
        if let Some(dlq) = dlq {
            command.args(["--dlq-topic", dlq]);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[test]
fn a_kafka_option_leadflow_sets_itself_is_refused_before_connecting() {
    // A "broker" that must never be connected to.
    let broker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    broker.set_nonblocking(true).unwrap();
    let brokers = broker.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    for (command, option, says) in [
        (
            "stream",
            "enable.auto.commit=true",
            "once their leads are written",
        ),
        (
            "stream",
            "enable.auto.offset.store=true",
            "once their leads are written",
        ),
        ("stream", "group.id=other", "use --group"),
        (
            "stream",
            "bootstrap.servers=elsewhere:9092",
            "use --brokers",
        ),
        ("stream", "auto.offset.reset=latest", "from its start"),
        ("stream", "enable.idempotence=false", "dead letter"),
        ("produce", "enable.idempotence=false", "once, in order"),
        (
            "produce",
            "metadata.broker.list=elsewhere:9092",
            "use --brokers",
        ),
    ] {
        let mut run = Command::new(env!("CARGO_BIN_EXE_leadflow"));
        run.args([command, "--brokers", &brokers, "--topic", TOPIC])
            .args(["--kafka", "socket.timeout.ms=10000", "--kafka", option])
            .env_remove("LEADFLOW_CONFIG")
            .env_remove("REDIS_URL");
        if command == "stream" {
            run.arg("--out").arg(dir.path().join("out"));
        } else {
            run.arg(example());
        }
        let output = run.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command} {option}: {stderr}"
        );
        let key = option.split('=').next().unwrap();
        assert!(
            stderr.contains(&format!("--kafka {key}: set by leadflow")) && stderr.contains(says),
            "{command} {option}: {stderr}"
        );
    }
    assert_eq!(
        broker.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the broker was contacted"
    );
}

#[test]
fn producing_to_a_missing_topic_is_the_users_to_fix() {
    let kafka = kafka(1);
    let output = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["produce", "--brokers", &kafka.brokers, "--topic", "nope"])
        .arg(example())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Kafka topic `nope` does not exist"),
        "{stderr}"
    );
}

#[test]
fn metrics_on_port_0_say_where_they_listen() {
    use std::io::{BufRead, BufReader};
    let kafka = kafka(1);
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_stream(
        &kafka,
        "g",
        &dir.path().join("out"),
        &["--metrics-addr", "127.0.0.1:0"],
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("stderr ended before the metrics address was said")
            .unwrap();
        if let Some((_, rest)) = line.split_once("metrics listening on ") {
            break rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect::<String>();
        }
    };
    // Keep the pipe drained while the stream runs.
    let drain = std::thread::spawn(move || lines.count());
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let metrics = http_get(&addr, "/metrics");
    // Ready once the group has given the stream its partitions.
    for tries in 0.. {
        if http_status(&addr, "/healthz").is_some_and(|(code, _)| code == 200) {
            break;
        }
        assert!(tries < 3000, "/healthz never said ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _) = terminate(child);
    drain.join().unwrap();
    assert!(status.success());
    prometheus_samples(&metrics);
}

#[test]
fn tls_and_sasl_consumers_are_built_in() {
    for (protocol, mechanism) in [
        ("SSL", None),
        ("SASL_SSL", Some("PLAIN")),
        ("SASL_SSL", Some("SCRAM-SHA-256")),
        ("SASL_SSL", Some("SCRAM-SHA-512")),
    ] {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:9093")
            .set("group.id", "g")
            .set("security.protocol", protocol);
        if let Some(mechanism) = mechanism {
            config
                .set("sasl.mechanism", mechanism)
                .set("sasl.username", "user")
                .set("sasl.password", "secret");
        }
        if let Err(e) = config.create::<BaseConsumer>() {
            panic!("{protocol} {mechanism:?}: {e}");
        }
    }
}

#[test]
fn a_sasl_ssl_stream_gets_past_its_config_to_the_brokers() {
    // The mock broker speaks plaintext: the TLS handshake fails, so the
    // stream fails reaching Kafka (a service), not on its config.
    let kafka = kafka(1);
    let dir = tempfile::tempdir().unwrap();
    let output = stream_command(
        &kafka,
        "g",
        &dir.path().join("out"),
        &[
            "--kafka",
            "security.protocol=SASL_SSL",
            "--kafka",
            "sasl.mechanism=PLAIN",
            "--kafka",
            "sasl.username=user",
            "--kafka",
            "sasl.password=secret",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("not available at build time"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the password is never logged: {stderr}"
    );
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("Kafka at"), "{stderr}");
}

/// A consumer paused (SIGSTOP) with a cut in hand until the group gives its
/// partitions to another, which writes every lead: resumed, the paused one
/// cannot commit offsets its successor committed. It exits 3 naming why,
/// nothing is in the output twice, and the calls it made are in
/// `provider_usage`.
#[tokio::test]
async fn a_consumer_paused_past_its_session_cannot_commit_what_its_successor_did() {
    use super::commit_log::{signal, stopped, wait_stopped};
    let kafka = kafka(2);
    produce_example(&kafka);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let prefix = unique("zombie");
    let config = provider_config(dir.path(), Some(&prefix));
    let args = |batch_rows: &'static str| {
        [
            "--batch-rows",
            batch_rows,
            "--config",
            config.to_str().unwrap(),
            "--redis",
            &redis_url(),
            "--kafka",
            "session.timeout.ms=6000",
            "--kafka",
            "heartbeat.interval.ms=500",
        ]
        .map(str::to_string)
    };
    let gate = dir.path().join("resume");
    // The zombie cuts 30 messages at a time and its successor 50, so its
    // cut is not one its successor also wrote under the same name.
    let zombie_args = args("30");
    let zombie_args: Vec<&str> = zombie_args.iter().map(String::as_str).collect();
    let mut zombie = stream_command(&kafka, "g", &out, &zombie_args)
        .env("LEADFLOW_STOP_AT", "stream_cut_received")
        .env("LEADFLOW_STOP_UNTIL", &gate)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_stopped(&mut zombie);

    let log = dir.path().join("successor.log");
    let successor_args = args("50");
    let successor_args: Vec<&str> = successor_args.iter().map(String::as_str).collect();
    let mut successor = spawn_logged_stream(&kafka, "g", &out, &successor_args, &log);
    wait_for_output(&out, 400, 0, &mut successor);
    wait_until_committed_to_end(&kafka, "g", &mut successor);

    // Resumed, it writes its cut at once; one that is not fenced goes on
    // as a member, and is stopped after a bound to show what it wrote.
    std::fs::write(&gate, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while zombie.try_wait().unwrap().is_none() && Instant::now() < deadline {
        if stopped(zombie.id()) {
            signal(&zombie, "-CONT");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, stderr) = terminate(zombie);
    let (successor_status, _) = terminate(successor);
    assert_each_lead_once(&out, 400).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("another consumer committed offsets"),
        "{stderr}"
    );
    assert!(
        successor_status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let logs = out.join("_leadflow/usage-log");
    assert_eq!(
        std::fs::read_dir(&logs).unwrap().count(),
        0,
        "the paused consumer's calls are committed"
    );
}

/// `leadflow compact --data out` with `extra` arguments.
fn compact_command(out: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    command
        .args(["compact", "--data"])
        .arg(out)
        .args(extra)
        .env_remove("LEADFLOW_CRASH_AT")
        .env_remove("LEADFLOW_STOP_AT");
    command
}

/// The Parquet files in `out/table`'s directories, by directory.
fn files_by_dir(out: &Path, table: &str) -> std::collections::BTreeMap<PathBuf, usize> {
    let mut dirs = std::collections::BTreeMap::new();
    for file in super::support::files_under(&out.join(table)) {
        if file.extension().is_some_and(|e| e == "parquet") {
            *dirs
                .entry(file.parent().unwrap().to_path_buf())
                .or_default() += 1;
        }
    }
    dirs
}

/// The lead ids of a Parquet file, in file order.
fn lead_ids(file: &Path) -> Vec<String> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let column = batch.column_by_name("lead_id").unwrap();
        let column =
            datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let strings = column.as_string::<i32>();
        ids.extend((0..strings.len()).map(|i| strings.value(i).to_string()));
    }
    ids
}

/// 3,000 leads streamed in cuts of 100 over 4 partitions: tens of small
/// files per table. A compaction killed right after its commit already
/// shows readers the new version (the old files, still there, are skipped);
/// the next one finishes it. After it each partition directory holds one
/// file sorted by lead_id, and every lead is there once, for leadflow and
/// for a directory reader.
#[tokio::test]
async fn compaction_rewrites_a_streams_small_files_and_a_kill_after_its_commit_loses_nothing() {
    let kafka = kafka(4);
    let producer: BaseProducer = client(&kafka).create().unwrap();
    send_leads(&producer, 0, 3000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let extra = ["--batch-rows", "100", "--compact-after", "off"];
    let mut child = spawn_stream(&kafka, "compact", &out, &extra);
    wait_for_output(&out, 3000, 0, &mut child);
    wait_until_committed_to_end(&kafka, "compact", &mut child);
    let (status, stderr) = terminate(child);
    assert!(status.success(), "{stderr}");
    let before: usize = files_by_dir(&out, "enriched_leads").values().sum();
    assert!(
        before >= 30,
        "{before} files: the test needs many small ones"
    );

    let killed = compact_command(&out, &[])
        .env("LEADFLOW_CRASH_AT", "compact_after_commit")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert_each_lead_once(&out, 3000).await;

    let done = compact_command(&out, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(stderr.contains("nothing to compact"), "{stderr}");
    assert_each_lead_once(&out, 3000).await;
    assert_eq!(
        visible_rows(&out, "enriched_leads"),
        3000,
        "no file twice on disk"
    );
    for (dir, files) in files_by_dir(&out, "enriched_leads") {
        assert_eq!(files, 1, "{}", dir.display());
    }
    let compacted: Vec<PathBuf> = super::support::files_under(&out.join("enriched_leads"))
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            !name.starts_with(&format!("part-{TOPIC}-"))
        })
        .collect();
    assert_eq!(compacted.len(), 1, "{compacted:?}");
    let ids = lead_ids(&compacted[0]);
    assert!(ids.len() > 2500, "{} rows compacted", ids.len());
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "sorted by lead_id");
}

/// Two compactions of one output at once: the one paused before its
/// commit finds the other's and fails (exit 3), committing nothing; the
/// output is the other's, each lead once.
#[tokio::test]
async fn of_two_compactions_at_once_one_commits_and_the_other_changes_nothing() {
    use super::commit_log::{resume, wait_stopped};
    let kafka = kafka(2);
    let producer: BaseProducer = client(&kafka).create().unwrap();
    send_leads(&producer, 0, 1000);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let extra = ["--batch-rows", "50", "--compact-after", "off"];
    let mut child = spawn_stream(&kafka, "twice", &out, &extra);
    wait_for_output(&out, 1000, 0, &mut child);
    wait_until_committed_to_end(&kafka, "twice", &mut child);
    let (status, stderr) = terminate(child);
    assert!(status.success(), "{stderr}");

    let gate = dir.path().join("resume");
    let mut paused = compact_command(&out, &[])
        .env("LEADFLOW_STOP_AT", "before_commit")
        .env("LEADFLOW_STOP_UNTIL", &gate)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_stopped(&mut paused);
    let first = compact_command(&out, &[]).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_each_lead_once(&out, 1000).await;
    resume(&mut paused, &gate);
    let output = paused.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("another compaction"), "{stderr}");
    assert_each_lead_once(&out, 1000).await;
    assert_eq!(visible_rows(&out, "enriched_leads"), 1000);
    let staging = out.join("_leadflow/staging");
    let left = std::fs::read_dir(&staging).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the loser's staged files are gone");
}

/// A live stream compacting its own files every second while a batch of
/// the example runs into the same output and a reader looks again and
/// again: the reader never sees a lead twice, and the end holds every lead.
#[tokio::test]
async fn a_stream_compacts_while_it_writes_and_a_run_commits_and_readers_never_see_a_lead_twice() {
    let kafka = kafka(3);
    let producer: BaseProducer = client(&kafka).create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let log = dir.path().join("stream.log");
    let extra = ["--batch-rows", "40", "--compact-after", "0"];
    let mut child = spawn_logged_stream(&kafka, "live", &out, &extra, &log);
    let reader_out = out.display().to_string();
    let mut looks = 0;
    for round in 0..6 {
        send_leads(&producer, round * 500, (round + 1) * 500);
        if round == 2 {
            let run = Command::new(env!("CARGO_BIN_EXE_leadflow"))
                .args(["run", "--input", &example(), "--out", &reader_out])
                .env_remove("LEADFLOW_CONFIG")
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
        let (count, distinct) = lead_counts(&reader_out).await;
        assert_eq!(count, distinct, "a lead twice at look {looks}");
        looks += 1;
    }
    wait_for_log(&log, "compacted the output's small files", 1, &mut child);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (count, distinct) = lead_counts(&reader_out).await;
        assert_eq!(count, distinct, "a lead twice at look {looks}");
        looks += 1;
        if count == (3000 + 400).to_string() {
            break;
        }
        assert!(Instant::now() < deadline, "stuck at {count} leads");
    }
    let (status, _) = terminate(child);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_each_lead_once(&out, 3400).await;
}

/// Waits until leadflow reads `leads` leads in `out` (a directory reader
/// may see a killed compaction's old files beside its new ones).
async fn wait_for_leads(out: &Path, leads: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let out = out.display().to_string();
    loop {
        let got = rows(&query(&out, "select count(*) from enriched_leads").await);
        if got[0][0] == leads.to_string() {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "the stream exited");
        assert!(
            Instant::now() < deadline,
            "waited 120 s for {leads} leads: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A compaction SIGKILLed at 15 moments, beside a live stream that cuts
/// new small files between the kills: every look through leadflow finds
/// each lead once; the last compaction, left to finish, leaves each lead
/// once on disk as well.
#[tokio::test]
async fn a_compaction_killed_at_random_moments_beside_a_live_stream_loses_and_doubles_nothing() {
    let kafka = kafka(2);
    let producer: BaseProducer = client(&kafka).create().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let extra = ["--batch-rows", "25", "--compact-after", "off"];
    let mut stream = spawn_stream(&kafka, "kills", &out, &extra);
    // Moments spread over a compaction's life (it takes some hundreds of
    // milliseconds here), in an order no one tuned.
    let moments = [
        5u64, 140, 60, 260, 20, 330, 90, 180, 10, 400, 45, 220, 120, 300, 75,
    ];
    let mut sent = 0;
    for (kill, ms) in moments.iter().enumerate() {
        send_leads(&producer, sent, sent + 200);
        sent += 200;
        wait_for_leads(&out, sent, &mut stream).await;
        let mut compaction = compact_command(&out, &[])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = compaction.kill();
        compaction.wait().unwrap();
        assert_eq!(
            lead_counts(&out.display().to_string()).await,
            (sent.to_string(), sent.to_string()),
            "after kill {kill} at {ms} ms"
        );
    }
    wait_until_committed_to_end(&kafka, "kills", &mut stream);
    let (status, stderr) = terminate(stream);
    assert!(status.success(), "{stderr}");
    let done = compact_command(&out, &[]).output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_each_lead_once(&out, sent).await;
    assert_eq!(visible_rows(&out, "enriched_leads"), sent as i64);
}

/// A subject whose rows are in stream files (which no run lists): forget
/// compacts their partition first, then erases them from the compacted
/// file; every other lead is there once, for leadflow and on disk.
#[tokio::test]
async fn forget_erases_a_subject_from_a_streams_files() {
    use super::forget::{config_file, forget_command, rows_holding, succeeded};
    let kafka = kafka(2);
    let producer: BaseProducer = client(&kafka).create().unwrap();
    send_leads(&producer, 0, 400);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let extra = ["--batch-rows", "50", "--compact-after", "off"];
    let mut child = spawn_stream(&kafka, "forget", &out, &extra);
    wait_for_output(&out, 400, 0, &mut child);
    wait_until_committed_to_end(&kafka, "forget", &mut child);
    let (status, stderr) = terminate(child);
    assert!(status.success(), "{stderr}");

    let config = config_file(dir.path(), None);
    let receipt = succeeded(
        forget_command(&out, &config, &["--email", "L7@example.com"])
            .output()
            .unwrap(),
    );
    assert_eq!(receipt["rows_removed"]["enriched_leads"], 1, "{receipt}");
    assert_eq!(receipt["kafka_topics"], serde_json::json!([TOPIC]));
    assert_each_lead_once(&out, 399).await;
    assert_eq!(visible_rows(&out, "enriched_leads"), 399);
    assert_eq!(
        rows_holding(&out, &["l7@example.com".to_string()]),
        Vec::<String>::new()
    );
}
