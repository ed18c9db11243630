//! End-to-end benchmark harness: generates N leads as CSV (once, cached),
//! runs the real `leadflow run` on them in a child process, and reports
//! wall time, leads/s, the child's CPU time and its peak RSS.
//!
//!   cargo build --release -p leadflow-pipeline -p leadflow-benches
//!   target/release/e2e --leads 1000000
//!   target/release/e2e --phone-cold      # 8,192 phones over all regions in a fresh process
//!   target/release/e2e --leads 10000 --no-phones --config benches/waterfall-50ms.toml
//!                                        # every lead down the provider waterfall
//!   target/release/e2e --leads 1000000 --corpus export --seed 2
//!   target/release/e2e --leads 1000000 --corpus export --generate   # only write the CSV
//!                                        # leads as sales exports look (benches/src/export.rs)
//!
//!   target/release/e2e --leads 1000000 --batch     # the same input through `leadflow batch`
//!   target/release/e2e --leads 100000 --no-phones --config benches/waterfall-0ms.toml --job
//!                                        # the same input as a job of `leadflow serve`:
//!                                        # POST /v1/jobs to the job's `finished_at`, the
//!                                        # server's CPU for it and its peak RSS
//!                                        # (`--ndjson`: the leads sent as NDJSON)
//!   target/release/e2e --leads 1000000 --config benches/waterfall-0ms.toml --report
//!                                        # then `leadflow report` on the output, and the page
//!                                        # opened in headless Chromium (when one is installed)
//!
//! `--no-phones` generates leads without a phone, so every one is looked up;
//! `--corpus export` generates export-like leads (20 countries, every phone
//! format, blanks, junk, repeats; `--seed`, default 1) instead of e2e's own
//! 8-country corpus; `--query FILE` and `--config` are passed to `leadflow run`.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use leadflow_phone::corpus::XorShift;

const REGIONS: &[(&str, &str, &[&str])] = &[
    (
        "US",
        "United States",
        &[
            "(201) 555-{4}",
            "+1 415 555 {4}",
            "212.555.{4}",
            "+1-646-555-{4}",
        ],
    ),
    (
        "GB",
        "United Kingdom",
        &["020 7183 {4}", "+44 7700 900{3}", "07400 1{5}"],
    ),
    (
        "DE",
        "DEU",
        &["030 1234{4}", "+49 151 2345{4}", "+49 (0)89 1234{4}"],
    ),
    ("FR", "france", &["06 12 34 {2} {2}", "+33 1 23 45 {2} {2}"]),
    ("IN", "IN", &["+91 98765 4{4}", "098765 4{4}"]),
    ("BR", "Brazil", &["(11) 91234-{4}", "+55 21 3123-{4}"]),
    ("JP", "jp", &["03-1234-{4}", "+81 90-1234-{4}"]),
    ("AU", "AUS", &["0412 345 {3}", "+61 2 9374 {4}"]),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--phone-cold") {
        return phone_cold(&args);
    }
    let leads: usize = flag(&args, "--leads").map_or(1_000_000, |v| v.parse().expect("--leads N"));
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().unwrap();
    let work = flag(&args, "--work")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir.join("e2e-data"));
    std::fs::create_dir_all(&work).unwrap();
    let with_phones = !args.iter().any(|a| a == "--no-phones");
    let export_seed = match flag(&args, "--corpus") {
        None | Some("e2e") => None,
        Some("export") => Some(flag(&args, "--seed").map_or(1, |s| s.parse().expect("--seed N"))),
        Some(other) => panic!("--corpus {other}: expected e2e or export"),
    };
    let input = match (export_seed, with_phones) {
        (Some(seed), _) => work.join(format!("leads-{leads}-export-{seed}.csv")),
        (None, true) => work.join(format!("leads-{leads}.csv")),
        (None, false) => work.join(format!("leads-{leads}-nophone.csv")),
    };
    if !input.exists() {
        let t = Instant::now();
        match export_seed {
            Some(seed) => leadflow_benches::export::write_csv_file(&input, leads, seed).unwrap(),
            None => generate(&input, leads, with_phones),
        }
        eprintln!(
            "generated {} in {:.1}s",
            input.display(),
            t.elapsed().as_secs_f64()
        );
    }
    if args.iter().any(|a| a == "--generate") {
        println!("{}", input.display());
        return;
    }
    let leadflow = flag(&args, "--leadflow")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir.join("leadflow"));
    let out = work.join(format!("out-{leads}"));
    let _ = std::fs::remove_dir_all(&out);
    if args.iter().any(|a| a == "--job") {
        let ndjson = args.iter().any(|a| a == "--ndjson");
        return job(
            &leadflow,
            &input,
            &out,
            flag(&args, "--config"),
            leads,
            ndjson,
        );
    }
    let mut command = Command::new(&leadflow);
    if args.iter().any(|a| a == "--batch") {
        // A batch reads a date's directory: the same file, linked into one.
        let day = work.join(format!("batch-{leads}/dt=2026-11-21"));
        let _ = std::fs::remove_dir_all(&day);
        std::fs::create_dir_all(&day).unwrap();
        std::fs::hard_link(&input, day.join(input.file_name().unwrap())).unwrap();
        command
            .args(["batch", "--no-progress", "--date", "2026-11-21", "--input"])
            .arg(day.parent().unwrap().join("dt={date}"));
    } else {
        command
            .args(["run", "--no-progress", "--input"])
            .arg(&input);
    }
    command.arg("--out").arg(&out);
    if let Some(config) = flag(&args, "--config") {
        command.arg("--config").arg(config);
    }
    if let Some(query) = flag(&args, "--query") {
        command.arg("--query").arg(query);
    }
    let t = Instant::now();
    let status = command.status().unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build it: cargo build --release -p leadflow-pipeline)",
            leadflow.display()
        )
    });
    let secs = t.elapsed().as_secs_f64();
    assert!(status.success(), "leadflow failed: {status}");
    let rss_mb = leadflow_benches::peak_child_rss_kb() as f64 / 1024.0;
    let cpu = leadflow_benches::child_cpu_secs();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "e2e: {leads} leads ({}) in {secs:.2}s = {:.0} leads/s ({cpu:.2} CPU-s), peak RSS \
         {rss_mb:.0} MB, {cores} cores",
        input.file_name().unwrap().to_string_lossy(),
        leads as f64 / secs
    );
    if args.iter().any(|a| a == "--report") {
        report(&leadflow, &out, &work);
    }
}

/// Runs `input` as a job of `leadflow serve`: from just before the first
/// byte of `POST /v1/jobs` (curl streams the file) to the job's own
/// `finished_at` (read once `GET /v1/jobs/{id}` says `done`), the server's
/// CPU over that time, then its peak RSS (upload, run and all).
fn job(
    leadflow: &Path,
    input: &Path,
    out: &Path,
    config: Option<&str>,
    leads: usize,
    ndjson: bool,
) {
    // The leads as the key's organization sends them: a lead naming
    // another organization would be refused.
    let input = &owned_by_bench(input, ndjson);
    let made = Command::new(leadflow)
        .args(["keys", "new", "bench", "--org", "bench"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let key = String::from_utf8(made.stderr).unwrap();
    let key = key.lines().last().unwrap().trim().to_string();
    let text = config.map_or_else(String::new, |c| std::fs::read_to_string(c).unwrap());
    let config = out.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "{text}\n[api]\nmax_job_leads = {}\n{}",
            leads.max(1),
            String::from_utf8(made.stdout).unwrap()
        ),
    )
    .unwrap();
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut server = Command::new(leadflow)
        .args(["serve", "--addr", &addr, "--config"])
        .arg(&config)
        .arg("--out")
        .arg(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let curl = |args: &[&str]| -> String {
        let got = Command::new("curl")
            .args(["-sS", "-H", &format!("authorization: Bearer {key}")])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8(got.stdout).unwrap()
    };
    while !Command::new("curl")
        .args(["-sf", "-o", "/dev/null", &format!("http://{addr}/healthz")])
        .status()
        .unwrap()
        .success()
    {
        assert!(server.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let content_type = match input.extension().and_then(|e| e.to_str()) {
        Some("csv") => "content-type: text/csv",
        _ => "content-type: application/x-ndjson",
    };
    let t = Instant::now();
    let sent_at = chrono::Utc::now();
    let cpu_before = leadflow_benches::cpu_seconds(server.id());
    let input = input.display().to_string();
    let accepted = curl(&[
        "-X",
        "POST",
        "-H",
        content_type,
        "-T",
        &input,
        &format!("http://{addr}/v1/jobs"),
    ]);
    let uploaded = t.elapsed().as_secs_f64();
    // The server's peak RSS so far: the upload's (and the job's first moments).
    let upload_rss = std::fs::read_to_string(format!("/proc/{}/status", server.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0);
    let job: serde_json::Value = serde_json::from_str(&accepted).expect(&accepted);
    let id = job["id"].as_str().expect(&accepted).to_string();
    let job = loop {
        let got = curl(&[&format!("http://{addr}/v1/jobs/{id}")]);
        let job: serde_json::Value = serde_json::from_str(&got).expect(&got);
        if job["state"] != "queued" && job["state"] != "running" {
            break job;
        }
        // Each poll is a curl process: polling every 20 ms took a tenth of
        // the cores from the job. The time is the job's own
        // `finished_at`, so the poll's period does not count.
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let server_cpu = leadflow_benches::cpu_seconds(server.id()) - cpu_before;
    assert_eq!(job["state"], "done", "{job}");
    let finished = job["finished_at"]
        .as_str()
        .and_then(|f| chrono::DateTime::parse_from_rfc3339(f).ok())
        .unwrap_or_else(|| panic!("a done job without finished_at: {job}"));
    let secs = (finished.with_timezone(&chrono::Utc) - sent_at).as_seconds_f64();
    // SIGTERM: the server stops, and its peak RSS is the children's.
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(server.wait().unwrap().success());
    let rss_mb = leadflow_benches::peak_child_rss_kb() as f64 / 1024.0;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "job: {leads} leads ({}) uploaded in {uploaded:.2}s (peak RSS {upload_rss:.0} MB), done in \
         {secs:.2}s = {:.0} leads/s (serve used {server_cpu:.2} CPU-s), {} written, serve peak \
         RSS {rss_mb:.0} MB, {cores} cores",
        Path::new(&input).file_name().unwrap().to_string_lossy(),
        leads as f64 / secs,
        job["written"]
    );
}

/// A copy of the CSV `input` whose `organization_id` is `bench`'s, as
/// CSV or NDJSON.
fn owned_by_bench(input: &Path, ndjson: bool) -> PathBuf {
    let owned = input.with_extension(if ndjson {
        "bench-org.ndjson"
    } else {
        "bench-org.csv"
    });
    if owned.exists() {
        return owned;
    }
    let mut reader = csv::Reader::from_path(input).unwrap();
    let headers = reader.headers().unwrap().clone();
    let org = headers.iter().position(|h| h == "organization_id");
    let file = BufWriter::new(std::fs::File::create(&owned).unwrap());
    let records = reader.records().map(|record| {
        let record = record.unwrap();
        let fields: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, f)| if Some(i) == org { "bench" } else { f }.to_string())
            .collect();
        fields
    });
    if ndjson {
        let mut out = file;
        for fields in records {
            let object: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .zip(fields)
                .filter(|(_, f)| !f.is_empty())
                .map(|(h, f)| (h.to_string(), serde_json::Value::from(f)))
                .collect();
            serde_json::to_writer(&mut out, &object).unwrap();
            out.write_all(b"\n").unwrap();
        }
        out.flush().unwrap();
    } else {
        let mut writer = csv::Writer::from_writer(file);
        writer.write_record(&headers).unwrap();
        for fields in records {
            writer.write_record(&fields).unwrap();
        }
        writer.flush().unwrap();
    }
    owned
}

/// Times `leadflow report` over a run's output, then the page in headless
/// Chromium: the process's wall time and the page's own time from
/// navigation to drawn (`data-draw-ms`, which the page sets).
fn report(leadflow: &Path, out: &Path, work: &Path) {
    let page = work.join("report.html");
    let t = Instant::now();
    let status = Command::new(leadflow)
        .args(["report", "--data"])
        .arg(out)
        .arg("--out")
        .arg(&page)
        .status()
        .unwrap();
    assert!(status.success(), "leadflow report failed: {status}");
    let secs = t.elapsed().as_secs_f64();
    let kb = std::fs::metadata(&page).unwrap().len() / 1024;
    println!("report: rendered in {secs:.2}s, {kb} KB");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = work.join("chromium-profile");
    let t = Instant::now();
    let Ok(opened) = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
    else {
        println!("report: no {chromium} to open it in");
        return;
    };
    let wall = t.elapsed().as_secs_f64();
    let dom = String::from_utf8_lossy(&opened.stdout);
    let drawn = dom
        .split("data-draw-ms=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("?");
    println!("report: drawn {drawn} ms after navigation; chromium start to exit {wall:.2}s");
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Deterministic leads with realistic spread: formats, countries written as
/// codes and names, some without a phone, an extra column.
fn generate(path: &Path, n: usize, with_phones: bool) {
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).unwrap());
    writeln!(w, "lead_id,first_name,last_name,email,company,company_website,phone_raw,country,user_tier,organization_id,received_at,utm_source").unwrap();
    let mut rng = XorShift(0x5eed);
    let mut phone = String::new();
    for i in 0..n {
        let (code, name, formats) = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        let country = if rng.below(3) == 0 { name } else { code };
        phone.clear();
        if with_phones && rng.below(20) != 0 {
            let fmt = formats[rng.below(formats.len() as u64) as usize];
            let mut chars = fmt.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '{' {
                    let k = chars.next().unwrap().to_digit(10).unwrap();
                    chars.next();
                    for _ in 0..k {
                        phone.push(char::from(b'0' + rng.below(10) as u8));
                    }
                } else {
                    phone.push(c);
                }
            }
        }
        writeln!(
            w,
            "L{i},First{},Last{},user{i}@company{}.com,Company {},company{}.com,{phone},{country},{},org_{},2026-11-{:02}T{:02}:00:00Z,src{}",
            i % 997, i % 991, i % 5000, i % 5000, i % 5000, 1 + i % 3, i % 17, 20 + i % 3, i % 24, i % 7
        )
        .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    std::fs::rename(tmp, path).unwrap();
}

/// Times the first batch of phones a fresh process parses: what a run pays
/// before its first row while the phone metadata loads. The batch is 8,192
/// numbers over every region libphonenumber knows (the synthetic corpus,
/// every format and junk included), written to a file by one process and
/// timed in another, so nothing is warm; `--input CSV` times the first 8,192
/// phones of a lead file instead.
fn phone_cold(args: &[String]) {
    let exe = std::env::current_exe().unwrap();
    let rows: Vec<(String, String)> = match flag(args, "--input") {
        Some(path) => csv_phones(Path::new(&path)),
        None => {
            let path = exe
                .parent()
                .unwrap()
                .join("e2e-data/phones-all-regions.tsv");
            if flag(args, "--cold-file").is_none() {
                if !path.exists() {
                    write_all_region_phones(&path);
                }
                // Time it in a process that has not built the corpus.
                let status = Command::new(&exe)
                    .args(["--phone-cold", "--cold-file", "1"])
                    .status()
                    .unwrap();
                std::process::exit(status.code().unwrap_or(1));
            }
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| {
                    let (raw, region) = l.split_once('\t').unwrap_or((l, ""));
                    (raw.to_string(), region.to_string())
                })
                .collect()
        }
    };
    let mut parser = leadflow_phone::PhoneParser::default();
    let mut info = leadflow_phone::PhoneInfo::default();
    let t = Instant::now();
    let mut valid = 0;
    for (raw, country) in &rows {
        let region =
            leadflow_phone::resolve_country(country).and_then(leadflow_phone::parse_region);
        parser.parse_into(raw, region, &mut info);
        valid += info.valid as usize;
    }
    let cold = t.elapsed();
    let t = Instant::now();
    for (raw, country) in &rows {
        let region =
            leadflow_phone::resolve_country(country).and_then(leadflow_phone::parse_region);
        parser.parse_into(raw, region, &mut info);
    }
    let regions: std::collections::HashSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    println!(
        "phone cold first batch: {} numbers over {} regions in {:.1} ms ({valid} valid); same batch warm: {:.1} ms",
        rows.len(),
        regions.len(),
        cold.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}

fn csv_phones(path: &Path) -> Vec<(String, String)> {
    let file = std::io::BufReader::new(
        std::fs::File::open(path).expect("generate leads first: e2e --leads 1000000"),
    );
    file.lines()
        .skip(1)
        .take(8192)
        .map(|l| {
            let l = l.unwrap();
            let f: Vec<&str> = l.split(',').collect();
            (f[6].to_string(), f[7].to_string())
        })
        .collect()
}

/// 8,192 phones of the synthetic corpus spread evenly over its regions.
fn write_all_region_phones(path: &Path) {
    let cases = leadflow_phone::corpus::build(7, 4);
    let stride = (cases.len() / 8192).max(1);
    let mut out = String::new();
    for case in cases.iter().step_by(stride).take(8192) {
        let region = case.region.map(|r| r.as_region_str());
        let region = region.as_deref().unwrap_or("");
        out.push_str(&format!(
            "{}\t{region}\n",
            case.raw.replace(['\t', '\n'], " ")
        ));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, out).unwrap();
}
