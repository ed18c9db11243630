//! The commit log's costs.
//!
//!   cargo build --release --workspace --all-targets
//!   target/release/commit_log --versions 1000
//!       # one writer after another into one local output: the time of each
//!       # `Publisher::open` and `commit` (read the newest version, create
//!       # the next, move the file in) at the first and the last versions
//!   target/release/commit_log --runs-at-once --leads 500000 [--config FILE]
//!       # two `leadflow run`s of export-like leads (different seeds): one
//!       # after the other into two outputs, then both at once into one
//!       # (`--config benches/waterfall-50ms.toml`: runs that wait on providers)
//!
//! Reports on stdout, with the machine's core count.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use leadflow_pipeline::publish::Publisher;
use leadflow_pipeline::sinks::parquet::WrittenFile;
use leadflow_pipeline::storage;
use object_store::ObjectStoreExt;

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--runs-at-once") {
        let leads = flag(&args, "--leads").map_or(500_000, |v| v.parse().expect("--leads N"));
        return runs_at_once(&args, leads);
    }
    let versions: usize = flag(&args, "--versions").map_or(1000, |v| v.parse().expect("N"));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(commits(versions));
}

/// Milliseconds at the 50th and 99th percentile, and the mean.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    let at = |q: f64| ms(times[((times.len() - 1) as f64 * q) as usize]);
    format!(
        "mean {mean:.2} ms, p50 {:.2} ms, p99 {:.2} ms",
        at(0.5),
        at(0.99)
    )
}

async fn commits(versions: usize) {
    let dir = tempdir("commit-log");
    let out = dir.join("out").display().to_string();
    let (mut opens, mut commits) = (Vec::new(), Vec::new());
    for i in 0..versions {
        let location = storage::create(&out).unwrap();
        let t = Instant::now();
        let publisher = Publisher::open(location.clone(), "bench").await.unwrap();
        opens.push(t.elapsed());
        let staging = publisher.staging();
        let path = staging.child(&format!(
            "enriched_leads/dt=2026-12-05/part-{}-0-0.parquet",
            publisher.write_id()
        ));
        staging
            .store
            .put(&path, vec![0u8; 1024].into())
            .await
            .unwrap();
        let file = WrittenFile {
            path: path.to_string(),
            rows: 1,
        };
        let t = Instant::now();
        publisher
            .commit(vec![format!("input-{i}")], None, &[file])
            .await
            .unwrap();
        commits.push(t.elapsed());
    }
    let window = 100.min(versions);
    println!(
        "commit_log: {versions} versions on local disk, {} cores",
        cores()
    );
    println!(
        "  commit, versions 0..{window}: {}",
        summary(commits[..window].to_vec())
    );
    println!(
        "  commit, versions {}..{versions}: {}",
        versions - window,
        summary(commits[versions - window..].to_vec())
    );
    println!(
        "  open (tidy + read), last {window}: {}",
        summary(opens[versions - window..].to_vec())
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .parent()
        .unwrap()
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn input(work: &Path, leads: usize, seed: u64) -> PathBuf {
    let path = work.join(format!("leads-{leads}-export-{seed}.csv"));
    if !path.exists() {
        leadflow_benches::export::write_csv_file(&path, leads, seed).unwrap();
    }
    path
}

fn runs_at_once(args: &[String], leads: usize) {
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().unwrap().to_path_buf();
    let work = bin_dir.join("e2e-data");
    std::fs::create_dir_all(&work).unwrap();
    let leadflow = flag(args, "--leadflow")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir.join("leadflow"));
    let inputs = [input(&work, leads, 11), input(&work, leads, 12)];
    let config = flag(args, "--config");
    let run = |input: &Path, out: &Path| {
        let mut cmd = Command::new(&leadflow);
        cmd.args(["run", "--no-progress", "--input"])
            .arg(input)
            .arg("--out")
            .arg(out)
            .env_remove("LEADFLOW_CONFIG")
            .stderr(std::process::Stdio::null());
        if let Some(config) = config {
            cmd.args(["--config", config]);
        }
        cmd.spawn().unwrap()
    };
    let outs: Vec<PathBuf> = (0..3).map(|i| work.join(format!("at-once-{i}"))).collect();
    for out in &outs {
        let _ = std::fs::remove_dir_all(out);
    }
    let t = Instant::now();
    for (input, out) in inputs.iter().zip(&outs[..2]) {
        assert!(run(input, out).wait().unwrap().success());
    }
    let apart = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let children: Vec<_> = inputs.iter().map(|input| run(input, &outs[2])).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let together = t.elapsed().as_secs_f64();
    println!(
        "runs at once: 2 x {leads} leads, one after the other into two outputs {apart:.2}s, \
         at once into one output {together:.2}s ({:.2}x), {} cores",
        together / apart,
        cores()
    );
    for out in &outs {
        let _ = std::fs::remove_dir_all(out);
    }
}
