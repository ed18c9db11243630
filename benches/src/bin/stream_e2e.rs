//! End-to-end benchmark of `leadflow stream`: librdkafka's mock cluster in
//! this process stands in for Kafka (it shares the machine's cores with the
//! stream, as a local broker would), the real `leadflow` binary consumes.
//!
//!   cargo build --release -p leadflow-pipeline -p leadflow-benches
//!   target/release/stream_e2e --leads 1000000
//!       # Kafka → Parquet: leads/s from the first message to every offset
//!       # committed, and the stream's peak RSS
//!   target/release/stream_e2e --leads 1000000 --config examples/leadflow.toml --redis redis://127.0.0.1:6379
//!       # the same with the waterfall, every lookup answered by the shared
//!       # cache (a first pass over the same leads fills it, unmeasured)
//!   target/release/stream_e2e --leads 1000000 --partitions 64 --preload
//!       # every message in the topic first: the stream alone on the cores,
//!       # timed from its partitions' assignment
//!   target/release/stream_e2e --leads 1000000 -- --batch-rows 32768
//!       # arguments after `--` go to `leadflow stream`
//!   target/release/stream_e2e --leads 1000000 --vs-run
//!       # then `leadflow run` on the same messages as NDJSON: the stream's
//!       # CPU per lead against the run's
//!   target/release/stream_e2e --leads 1000000 --bare
//!       # a bare consumer in the stream's place (polls, commits, drops each
//!       # message): what librdkafka alone costs per lead
//!   target/release/stream_e2e --latency --rate 10000 --secs 30
//!       # produce-to-visible latency at a steady rate with the 1 s flush
//!
//! Leads are the export-like corpus (benches/src/export.rs, `--seed`) as
//! JSON, sent over `--partitions` (8) by a producer in this process while
//! the stream runs, at most 100,000 ahead of its commits (more than a full cut per partition) (the mock broker
//! keeps only 5 MB per partition): producer, broker and stream share the
//! two cores. The line also gives the stream's own CPU time.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "leads";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--bare-consumer") {
        return bare_consumer(&args[2], &args[3]);
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let partitions: i32 = flag("--partitions").map_or(8, |v| v.parse().unwrap());
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().unwrap().to_path_buf();
    let work = bin_dir.join("stream-e2e");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let leadflow = bin_dir.join("leadflow");
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    if args.iter().any(|a| a == "--latency") {
        cluster.create_topic(TOPIC, partitions, 1).unwrap();
        cluster.create_topic("leads.dlq", 1, 1).unwrap();
        let rate: u64 = flag("--rate").map_or(10_000, |v| v.parse().unwrap());
        let secs: u64 = flag("--secs").map_or(30, |v| v.parse().unwrap());
        return latency(&leadflow, &brokers, &work, rate, secs, cores);
    }

    let leads: usize = flag("--leads").map_or(1_000_000, |v| v.parse().unwrap());
    let seed: u64 = flag("--seed").map_or(1, |v| v.parse().unwrap());
    // The mock broker keeps 5 MB per partition: leads are sent in chunks,
    // each once the stream is less than a chunk behind.
    let needs_files = args.iter().any(|a| a == "--preload" || a == "--raw");
    let chunks: Vec<PathBuf> = (0..leads.div_ceil(CHUNK))
        .filter(|_| needs_files)
        .map(|k| {
            let path = work.join(format!("leads-{k}.csv"));
            let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
            let n = CHUNK.min(leads - k * CHUNK);
            leadflow_benches::export::write_csv(&mut w, n, seed + k as u64).unwrap();
            w.flush().unwrap();
            path
        })
        .collect();
    // What `leadflow run` shares with the stream (`--vs-run`).
    let mut run_extra: Vec<String> = Vec::new();
    for name in ["--config", "--query"] {
        if let Some(value) = flag(name) {
            run_extra.extend([name.to_string(), value]);
        }
    }
    let mut extra = run_extra.clone();
    // Anything after `--` goes to `leadflow stream` as it is.
    if let Some(i) = args.iter().position(|a| a == "--") {
        extra.extend(args[i + 1..].iter().cloned());
    }
    let pass = Pass {
        leadflow: &leadflow,
        brokers: &brokers,
        work: &work,
        partitions,
        chunks: &chunks,
        leads,
        seed,
        preload: args.iter().any(|a| a == "--preload"),
        bare: args.iter().any(|a| a == "--bare"),
    };
    let vs_run = args.iter().any(|a| a == "--vs-run");
    if vs_run {
        assert!(
            !pass.preload && !pass.bare && flag("--redis").is_none(),
            "--vs-run compares leadflow stream on the produced messages with a run on the same \
             messages: not with --preload's files, --bare, or --redis's warmed cache"
        );
    }
    if let Some(redis) = flag("--redis") {
        extra.extend(["--redis".into(), redis]);
        // Fill the shared cache first, with the same leads: the measured
        // pass finds every answer there.
        cluster.create_topic("warm", partitions, 1).unwrap();
        cluster.create_topic("warm.dlq", 1, 1).unwrap();
        let warm = pass.run("warm", &extra);
        eprintln!("warm-up pass: {}", warm.line(cores));
    }
    cluster.create_topic("bench", partitions, 1).unwrap();
    cluster.create_topic("bench.dlq", 1, 1).unwrap();
    if args.iter().any(|a| a == "--raw") {
        return raw_consume(&pass, "bench", cores);
    }
    let measured = pass.run("bench", &extra);
    let rss_mb = leadflow_benches::peak_child_rss_kb() as f64 / 1024.0;
    let what = if pass.bare {
        "a bare consumer, not leadflow (librdkafka alone)"
    } else {
        "leadflow stream"
    };
    println!(
        "stream_e2e: {what}: {}, peak RSS {rss_mb:.0} MB",
        measured.line(cores)
    );
    eprint!("{}", measured.summary);
    if vs_run {
        let run_cpu = pass.run_same_leads(&run_extra);
        println!(
            "the run on the same leads as NDJSON used {run_cpu:.2} CPU-s: the stream is {:.2}x the run's CPU per lead",
            measured.cpu_secs / run_cpu
        );
    }
}

/// Leads per `leadflow produce` call (preloading).
const CHUNK: usize = 50_000;

/// Messages the producer may be ahead of the stream's commits: the mock
/// broker keeps only 5 MB (~15k leads) per partition, and a cut is 8,192 per
/// partition: the backlog must hold a full cut for each.
const BACKLOG: i64 = 100_000;

struct Pass<'a> {
    leadflow: &'a Path,
    brokers: &'a str,
    work: &'a Path,
    partitions: i32,
    chunks: &'a [PathBuf],
    leads: usize,
    seed: u64,
    /// Send everything before the stream starts (needs partitions enough
    /// to hold it at 5 MB each); otherwise send while it runs.
    preload: bool,
    /// A bare consumer in place of `leadflow stream` (`--bare`).
    bare: bool,
}

struct Measured {
    messages: i64,
    secs: f64,
    /// The stream process's own CPU time (user + system).
    cpu_secs: f64,
    partitions: i32,
    summary: String,
}

impl Measured {
    fn line(&self, cores: usize) -> String {
        format!(
            "{} messages over {} partitions, produced and consumed (offsets committed) in {:.2}s = {:.0} leads/s; \
             the consumer used {:.2} CPU-s ({:.0} leads per CPU-second), {cores} cores",
            self.messages,
            self.partitions,
            self.secs,
            self.messages as f64 / self.secs,
            self.cpu_secs,
            self.messages as f64 / self.cpu_secs
        )
    }
}

impl Pass<'_> {
    /// The messages the producer sends, in order: the export-like leads as
    /// JSON.
    fn payloads(&self) -> impl Iterator<Item = String> + use<> {
        let phones = leadflow_benches::export::phones(self.leads.min(100_000), self.seed);
        let leads = self.leads;
        (0..leads).map(move |i| leadflow_benches::export::lead_json(i, &phones[i % phones.len()]))
    }

    /// `leadflow run` over the very messages the producer sends, as one
    /// NDJSON file: its CPU-s (user + system).
    fn run_same_leads(&self, extra: &[String]) -> f64 {
        let input = self.work.join("same-leads.ndjson");
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&input).unwrap());
        for payload in self.payloads() {
            writeln!(w, "{payload}").unwrap();
        }
        w.flush().unwrap();
        let before = leadflow_benches::child_cpu_secs();
        let status = Command::new(self.leadflow)
            .args(["run", "--no-progress", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(self.work.join("same-leads-run"))
            .args(extra)
            .env("LEADFLOW_LOG", "warn")
            .env_remove("REDIS_URL")
            .status()
            .unwrap();
        assert!(status.success(), "leadflow run failed");
        leadflow_benches::child_cpu_secs() - before
    }

    /// Streams topic `name` (group and output of the same name) while
    /// sending every chunk to it.
    fn run(&self, name: &str, extra: &[String]) -> Measured {
        let mut produced = 0i64;
        if self.preload {
            for chunk in self.chunks {
                self.produce(name, chunk);
            }
            produced = end_offsets(self.brokers, name, self.partitions)
                .iter()
                .sum();
        }
        let log = self.work.join(format!("{name}.log"));
        let mut command = if self.bare {
            let mut c = Command::new(std::env::current_exe().unwrap());
            c.args(["--bare-consumer", self.brokers, name]);
            c
        } else {
            let mut c = Command::new(self.leadflow);
            c.args([
                "stream",
                "--brokers",
                self.brokers,
                "--topic",
                name,
                "--group",
                name,
            ])
            .arg("--out")
            .arg(self.work.join(name))
            .args(extra);
            c
        };
        let mut child = command
            .env("LEADFLOW_LOG", "info")
            .env_remove("REDIS_URL")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let spawned = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap()
            .contains("partitions assigned")
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The clock starts at the assignment: joining the group is a
        // one-time cost, not throughput.
        let t = Instant::now();
        eprintln!(
            "{name}: joined its group in {:.1}s",
            spawned.elapsed().as_secs_f64()
        );
        if !self.preload {
            produced = self.produce_while_streaming(name);
        }
        wait_committed(self.brokers, name, self.partitions, produced, &mut child);
        let secs = t.elapsed().as_secs_f64();
        let cpu_secs = leadflow_benches::cpu_seconds(child.id());
        if std::env::var_os("STREAM_E2E_THREADS").is_some() {
            for task in std::fs::read_dir(format!("/proc/{}/task", child.id()))
                .unwrap()
                .flatten()
            {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                let name = &stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()];
                let tid: u32 = task.file_name().to_string_lossy().parse().unwrap();
                let cpu =
                    leadflow_benches::cpu_of(&format!("/proc/{}/task/{tid}/stat", child.id()));
                if cpu > 0.05 {
                    eprintln!("  thread {name} {cpu:.2} CPU-s");
                }
            }
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: getrusage writes into the struct we own.
            unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
            eprintln!(
                "  this process (the mock broker): {:.2} CPU-s so far",
                usage.ru_utime.tv_sec as f64 + usage.ru_stime.tv_sec as f64
            );
        }
        stop(child);
        Measured {
            messages: produced,
            secs,
            cpu_secs,
            partitions: self.partitions,
            summary: std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('{'))
                .map(|l| format!("{l}\n"))
                .collect(),
        }
    }
}

impl Pass<'_> {
    /// Sends the leads from this process as fast as the stream takes them:
    /// at most [`BACKLOG`] messages ahead of what it has committed.
    fn produce_while_streaming(&self, topic: &str) -> i64 {
        let producer: BaseProducer = client(self.brokers)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        let committed = committed_reader(self.brokers, topic, self.partitions);
        let mut sent = 0i64;
        for (i, payload) in self.payloads().enumerate() {
            let key = format!("L{i}");
            loop {
                match producer.send(BaseRecord::to(topic).payload(&payload).key(&key)) {
                    Ok(()) => break,
                    Err(_) => producer.poll(Duration::from_millis(1)),
                }
            }
            sent += 1;
            if sent % 10_000 == 0 {
                producer.poll(Duration::ZERO);
                while sent - committed() > BACKLOG {
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
        sent
    }

    fn produce(&self, topic: &str, chunk: &Path) {
        let status = Command::new(self.leadflow)
            .args(["produce", "--brokers", self.brokers, "--topic", topic])
            .arg(chunk)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The ceiling the broker sets: the same messages read by a bare polled
/// consumer that does nothing with them.
fn raw_consume(pass: &Pass<'_>, topic: &str, cores: usize) {
    for chunk in pass.chunks {
        pass.produce(topic, chunk);
    }
    let total: i64 = end_offsets(pass.brokers, topic, pass.partitions)
        .iter()
        .sum();
    let consumer = group_consumer(pass.brokers, "raw", topic);
    let mut seen = 0i64;
    let mut bytes = 0usize;
    let mut t = None;
    while seen < total {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            t.get_or_insert_with(Instant::now);
            bytes += rdkafka::Message::payload(&message).map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    let secs = t.unwrap().elapsed().as_secs_f64();
    println!(
        "stream_e2e raw: {seen} messages ({:.0} MB) over {} partitions read by a bare consumer in {secs:.2}s = {:.0} messages/s, {cores} cores",
        bytes as f64 / 1e6,
        pass.partitions,
        seen as f64 / secs
    );
}

/// `--bare`'s child: joins group `topic` and consumes `topic` much as the
/// stream's consumer does (polled, one message at a time, offsets
/// committed as it goes, statistics every 5 s) and does nothing else with
/// the messages; exits on SIGTERM. Its CPU is about what librdkafka alone
/// costs the stream.
fn bare_consumer(brokers: &str, topic: &str) {
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    extern "C" fn on_term(_: libc::c_int) {
        STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    let consumer = group_consumer(brokers, topic, topic);
    let mut announced = false;
    let mut bytes = 0usize;
    let mut since_commit = 0u32;
    while !STOP.load(std::sync::atomic::Ordering::Relaxed) {
        let polled = consumer.poll(Duration::from_millis(100));
        if !announced && consumer.assignment().is_ok_and(|a| a.count() > 0) {
            eprintln!("bare consumer: partitions assigned");
            announced = true;
        }
        match polled {
            Some(Ok(message)) => {
                bytes += rdkafka::Message::payload(&message).map_or(0, <[u8]>::len);
                since_commit += 1;
                if since_commit == 8192 {
                    let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Async);
                    since_commit = 0;
                }
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            // Idle: commit what was read, again until it is taken, so the
            // harness's wait for every offset ends.
            None if since_commit > 0
                && consumer
                    .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
                    .is_ok() =>
            {
                since_commit = 0;
            }
            None => {}
        }
    }
    eprintln!("bare consumer: {bytes} payload bytes");
}

fn spawn(leadflow: &Path, brokers: &str, group: &str, out: &Path, extra: &[String]) -> Child {
    Command::new(leadflow)
        .args([
            "stream",
            "--brokers",
            brokers,
            "--topic",
            TOPIC,
            "--group",
            group,
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("REDIS_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// SIGTERM, wait; the stream's summary.
fn stop(child: Child) -> String {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A consumer in `group` subscribed to `topic`, from its start, committing
/// only when told.
fn group_consumer(brokers: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client(brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "5000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

fn end_offsets(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = client(brokers).create().unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// A function reading what group `topic` has committed, in all.
fn committed_reader(brokers: &str, topic: &str, partitions: i32) -> impl Fn() -> i64 {
    let consumer: BaseConsumer = client(brokers).set("group.id", topic).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    move || {
        consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    }
}

/// Waits until group `topic` has committed `total` offsets across the
/// partitions of `topic`; panics if `consumer` exits first.
fn wait_committed(brokers: &str, topic: &str, partitions: i32, total: i64, consumer: &mut Child) {
    let committed = committed_reader(brokers, topic, partitions);
    while committed() < total {
        if let Some(status) = consumer.try_wait().unwrap() {
            panic!("the consumer exited ({status}) before committing every offset");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends leads at `rate`/s for `secs` while the stream runs; reads every
/// file as it appears and reports how long each lead took to be visible.
fn latency(leadflow: &Path, brokers: &str, work: &Path, rate: u64, secs: u64, cores: usize) {
    let out = work.join("out");
    let child = spawn(leadflow, brokers, "latency", &out, &[]);
    // Let the consumer join its group before the clock starts.
    std::thread::sleep(Duration::from_secs(5));
    let producer: BaseProducer = client(brokers).set("linger.ms", "5").create().unwrap();
    let phones = leadflow_benches::export::phones(4096, 7);
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut seen: HashMap<PathBuf, ()> = HashMap::new();
    let mut latencies: Vec<f64> = Vec::new();
    let start = Instant::now();
    let total = rate * secs;
    let mut i = 0u64;
    while i < total || latencies.len() < total as usize {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while i < total && i < due {
            let id = format!("lat-{i}");
            let phone = &phones[(i % 4096) as usize];
            let payload = format!(
                r#"{{"lead_id":"{id}","email":"{id}@example.com","phone_raw":{},"country":{}}}"#,
                serde_json::Value::from(phone.raw.as_str()),
                serde_json::Value::from(phone.country.as_str()),
            );
            loop {
                match producer.send(BaseRecord::to(TOPIC).payload(&payload).key(&id)) {
                    Ok(()) => break,
                    Err(_) => producer.poll(Duration::from_millis(1)),
                }
            }
            sent_at.insert(id, Instant::now());
            i += 1;
        }
        producer.poll(Duration::ZERO);
        collect_visible(&out, &mut seen, &sent_at, &mut latencies);
        assert!(
            start.elapsed() < Duration::from_secs(secs + 60),
            "only {} of {total} leads became visible",
            latencies.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stderr = stop(child);
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "stream_e2e latency: {} leads at {rate}/s for {secs}s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (produce to file visible), {cores} cores",
        latencies.len(),
        q(0.5) * 1000.0,
        q(0.99) * 1000.0,
        q(1.0) * 1000.0
    );
    eprint!("{stderr}");
}

fn collect_visible(
    out: &Path,
    seen: &mut HashMap<PathBuf, ()>,
    sent_at: &HashMap<String, Instant>,
    latencies: &mut Vec<f64>,
) {
    let now = Instant::now();
    let Ok(days) = std::fs::read_dir(out.join("enriched_leads")) else {
        return;
    };
    for day in days.flatten() {
        for file in std::fs::read_dir(day.path()).unwrap().flatten() {
            let path = file.path();
            if seen.contains_key(&path) {
                continue;
            }
            seen.insert(path.clone(), ());
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let ids = batch.column_by_name("lead_id").unwrap().as_string::<i32>();
                for id in ids.iter().flatten() {
                    if let Some(t) = sent_at.get(id) {
                        latencies.push(now.duration_since(*t).as_secs_f64());
                    }
                }
            }
        }
    }
}
