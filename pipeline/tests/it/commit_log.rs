//! Writers at once into one output through the commit log, on disk and on
//! S3: runs that overlap in time all commit, a writer paused before its
//! commit never overwrites a newer one, and SIGKILL at random moments
//! leaves exactly the last committed version.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leadflow_pipeline::publish::{Operation, Snapshot};
use leadflow_pipeline::storage;

use super::support::{example, files_under, lead_counts};

/// The example's rows split into `n` CSV files under `dir`.
fn split_example(dir: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(example()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let chunk = body.len().div_ceil(n);
    body.chunks(chunk)
        .enumerate()
        .map(|(i, rows)| {
            let path = dir.join(format!("part-{i}.csv"));
            std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
            path.display().to_string()
        })
        .collect()
}

fn leadflow_run(input: &str, out: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    cmd.args([
        "run",
        "--no-progress",
        "--input",
        input,
        "--out",
        out,
        "--batch-size",
        "64",
    ])
    .env_remove("LEADFLOW_CONFIG")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

async fn snapshot(out: &str) -> Snapshot {
    match storage::open(out) {
        Ok(location) => Snapshot::read(&location).await.unwrap(),
        // A run killed before it created the output.
        Err(_) => Snapshot::default(),
    }
}

/// Makes `cmd` stop itself (SIGSTOP) right before its commit, until
/// [`resume`]: a SIGCONT that comes before it (seen while other tests run
/// beside this one) finds no `gate`, and the process stops again.
fn stop_before_commit(cmd: &mut Command, gate: &Path) {
    cmd.env("LEADFLOW_STOP_AT", "before_commit")
        .env("LEADFLOW_STOP_UNTIL", gate);
}

/// Lets a process stopped by [`stop_before_commit`] go on, until it ends
/// (sending SIGCONT again whenever it stopped again before it saw the gate).
pub(crate) fn resume(child: &mut Child, gate: &Path) {
    std::fs::write(gate, b"").unwrap();
    while child.try_wait().unwrap().is_none() {
        if stopped(child.id()) {
            signal(child, "-CONT");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .next()
        == Some("T")
}

/// Waits until `child` has stopped itself (`LEADFLOW_STOP_AT`).
pub(crate) fn wait_stopped(child: &mut Child) {
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            panic!("pid {pid} ended before it stopped: {stderr}");
        }
        if stopped(pid) {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} never stopped");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn succeeded(child: Child) -> std::process::Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `n` runs over different parts of the example into `out`: the first
/// stops itself right before its commit; the others run and publish at
/// once meanwhile; then the first resumes and commits after them. Every
/// lead is there once.
async fn runs_at_once(out: &str, inputs: &[String]) {
    let n = inputs.len();
    let gate = tempfile::tempdir().unwrap();
    let gate = gate.path().join("go");
    let mut first = leadflow_run(&inputs[0], out);
    stop_before_commit(&mut first, &gate);
    let mut first = tokio::task::block_in_place(|| {
        let mut child = first.spawn().unwrap();
        wait_stopped(&mut child);
        child
    });
    let others: Vec<Child> = inputs[1..]
        .iter()
        .map(|input| leadflow_run(input, out).spawn().unwrap())
        .collect();
    tokio::task::block_in_place(|| others.into_iter().for_each(|c| drop(succeeded(c))));
    // The short runs published while the long one, begun before them,
    // had yet to.
    let meanwhile = snapshot(out).await;
    assert_eq!(
        meanwhile.version,
        Some(n as u64 - 2),
        "{out}: {:#?}",
        meanwhile.recent
    );
    tokio::task::block_in_place(|| {
        resume(&mut first, &gate);
        succeeded(first)
    });

    let last = snapshot(out).await;
    assert_eq!(last.version, Some(n as u64 - 1), "{out}");
    let commit = last.recent.last().unwrap();
    assert_eq!(commit.operation, Operation::Run);
    // It began before any of the others committed, and lost the race for
    // the version it first tried: it read what they did and came after.
    assert_eq!(commit.read_version, None, "{out}");
    assert_eq!(last.runs.iter().filter(|r| !r.usage_only).count(), n);
    assert_eq!(
        lead_counts(out).await,
        ("400".into(), "400".into()),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_three_and_four_runs_at_once_into_one_output_on_disk_all_commit() {
    for n in [2, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let inputs = split_example(dir.path(), n);
        let out = dir.path().join("out");
        runs_at_once(&out.display().to_string(), &inputs).await;
        assert!(
            !out.join("_leadflow/staging").exists()
                || files_under(&out.join("_leadflow/staging")).is_empty(),
            "nothing left staged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_three_and_four_runs_at_once_into_one_output_on_s3_all_commit() {
    let bucket = super::s3::new_bucket("log");
    for n in [2, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let inputs = split_example(dir.path(), n);
        runs_at_once(&format!("s3://{bucket}/out-{n}"), &inputs).await;
    }
}

/// A rerun paused right before its commit (a machine that froze) while
/// another rerun of the same input commits: resumed, it cannot overwrite
/// that commit; it fails with exit 3, naming the other run, and the output
/// is the other run's.
async fn paused_rerun_loses(out: &str) {
    let input = example();
    assert!(leadflow_run(&input, out).status().unwrap().success());
    let gate = tempfile::tempdir().unwrap();
    let gate = gate.path().join("go");
    let mut paused = leadflow_run(&input, out);
    stop_before_commit(&mut paused, &gate);
    let mut paused = tokio::task::block_in_place(|| {
        let mut child = paused.spawn().unwrap();
        wait_stopped(&mut child);
        child
    });
    let mut winner = leadflow_run(&input, out);
    winner.args(["--run-id", "winner"]);
    tokio::task::block_in_place(|| succeeded(winner.spawn().unwrap()));
    let won = snapshot(out).await;
    let lost = tokio::task::block_in_place(|| {
        resume(&mut paused, &gate);
        paused.wait_with_output().unwrap()
    });
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert_eq!(
        lost.status.code(),
        Some(3),
        "{stderr}\n{:#?}",
        snapshot(out).await.recent
    );
    assert!(stderr.contains("run `winner` committed"), "{stderr}");
    let after = snapshot(out).await;
    let leads = |s: &Snapshot| -> Vec<String> {
        s.runs
            .iter()
            .filter(|r| !r.usage_only)
            .map(|r| r.write_id.clone())
            .collect()
    };
    assert_eq!(leads(&after), leads(&won), "{out}");
    assert_eq!(lead_counts(out).await, ("400".into(), "400".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_rerun_cannot_overwrite_a_newer_commit_on_disk_or_s3() {
    let dir = tempfile::tempdir().unwrap();
    paused_rerun_loses(&dir.path().join("out").display().to_string()).await;
    let bucket = super::s3::new_bucket("paused");
    paused_rerun_loses(&format!("s3://{bucket}/out")).await;
}

/// `(rows, distinct lead_ids)` of `enriched_leads`, or the error's text.
async fn counts(out: &str) -> Result<(u64, u64), String> {
    let (ctx, _) = leadflow_pipeline::sql::context(Some(out), &[])
        .await
        .map_err(|e| e.to_string())?;
    let batches = ctx
        .sql("select count(*), count(distinct lead_id) from enriched_leads")
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let row = super::support::rows(&batches).remove(0);
    Ok((row[0].parse().unwrap(), row[1].parse().unwrap()))
}

/// A small deterministic generator: the kills' moments vary, the test
/// does not.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_leaves_exactly_the_last_committed_version() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = split_example(dir.path(), 2);
    // What each input alone gives, and how long a run of it takes.
    let mut leads_of = HashMap::new();
    let mut longest = Duration::ZERO;
    for input in &inputs {
        let alone = dir.path().join(format!("alone-{}", leads_of.len()));
        let alone = alone.display().to_string();
        let started = Instant::now();
        assert!(leadflow_run(input, &alone).status().unwrap().success());
        longest = longest.max(started.elapsed());
        let snapshot = snapshot(&alone).await;
        let run = snapshot.runs.iter().find(|r| !r.usage_only).unwrap();
        let (leads, _) = lead_counts(&alone).await;
        leads_of.insert(run.inputs.clone(), leads.parse::<u64>().unwrap());
    }

    let out = dir.path().join("out").display().to_string();
    // A reader in a loop meanwhile: every count it gets is that of some
    // version (the leads of one input, of the other, of both, or none),
    // each lead once.
    let valid: Vec<u64> = {
        let v: Vec<u64> = leads_of.values().copied().collect();
        vec![0, v[0], v[1], v[0] + v[1]]
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn({
        let (out, stop, valid) = (out.clone(), stop.clone(), valid.clone());
        async move {
            let (mut reads, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if !Path::new(&out).exists() {
                    tokio::task::yield_now().await;
                    continue;
                }
                match counts(&out).await {
                    Ok((n, distinct)) => {
                        assert_eq!(n, distinct, "a lead twice");
                        assert!(valid.contains(&n), "{n} leads is no version's");
                        reads += 1;
                    }
                    // A file replaced by a commit after the read listed it.
                    Err(e) if e.contains("not found") || e.contains("No such file") => failed += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (reads, failed)
        }
    });
    let mut random = Lcg(0x1ead_f10e);
    let span = (longest.as_millis() as u64).max(50);
    let mut killed = 0;
    let mut i = 0;
    while killed < 16 {
        assert!(
            i < 64,
            "only {killed} of {i} runs were killed before they ended"
        );
        let input = &inputs[i % inputs.len()];
        i += 1;
        let mut child = leadflow_run(input, &out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = Duration::from_millis(random.below(span));
        tokio::task::block_in_place(|| {
            std::thread::sleep(at);
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                killed += 1;
            }
            child.wait().unwrap();
        });
        // The output is its newest version, exactly: the leads of the live
        // runs (one per input, the last to commit), each once.
        let now = snapshot(&out).await;
        let expected: u64 = now
            .runs
            .iter()
            .filter(|r| !r.usage_only)
            .map(|r| leads_of[&r.inputs])
            .sum();
        let live_inputs: Vec<_> = now
            .runs
            .iter()
            .filter(|r| !r.usage_only)
            .map(|r| &r.inputs)
            .collect();
        let mut unique = live_inputs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), live_inputs.len(), "kill {i}: an input twice");
        if !Path::new(&out).exists() {
            continue; // killed before it created the output
        }
        assert_eq!(
            lead_counts(&out).await,
            (expected.to_string(), expected.to_string()),
            "kill {i} after {at:?}"
        );
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, failed) = reader.await.unwrap();
    assert!(
        reads > 0,
        "the reader read ({failed} reads met a replaced file)"
    );
    eprintln!("reader: {reads} reads exact, {failed} met a file replaced under them");

    // A run to the end tidies what the kills left: the tables hold exactly
    // the newest version's files, and nothing is staged.
    let last = &inputs[0];
    assert!(leadflow_run(last, &out).status().unwrap().success());
    let now = snapshot(&out).await;
    let out_path = Path::new(&out);
    let mut visible: Vec<String> = files_under(out_path)
        .into_iter()
        .map(|p| p.strip_prefix(out_path).unwrap().display().to_string())
        .filter(|p| !p.starts_with('_'))
        .collect();
    visible.sort();
    let mut listed: Vec<String> = now.files().into_iter().map(str::to_string).collect();
    listed.sort();
    assert_eq!(visible, listed);
    let staging = out_path.join("_leadflow/staging");
    assert!(!staging.exists() || files_under(&staging).is_empty());
}

/// An output written before the log (`_leadflow/manifest.json`, here with a
/// publish its writer never finished) is read as it is, then upgraded by its
/// next commit: version 0 holds its runs, the manifest goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_from_before_the_log_is_read_as_it_is_and_upgraded_by_its_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = split_example(dir.path(), 2);
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    assert!(leadflow_run(&inputs[0], &out).status().unwrap().success());
    let (first_leads, _) = lead_counts(&out).await;

    // Rewrite it as the manifest protocol left it mid-publish: the run
    // committed, one of its files still staged.
    let written = snapshot(&out).await;
    let run = written.runs[0].clone();
    let staged = &run.files[0];
    let from = out_path.join(staged);
    let to = out_path
        .join("_leadflow/staging")
        .join(&run.write_id)
        .join(staged);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(&from, &to).unwrap();
    let manifest = serde_json::json!({
        "version": 1,
        "runs": [run],
        "publishing": {"write_id": run.write_id, "delete": []},
    });
    std::fs::remove_dir_all(out_path.join("_leadflow/log")).unwrap();
    std::fs::write(
        out_path.join("_leadflow/manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let legacy = snapshot(&out).await;
    assert!(legacy.version.is_none() && legacy.legacy.is_some());
    assert_eq!(
        lead_counts(&out).await,
        (first_leads.clone(), first_leads.clone()),
        "read as the manifest says, the staged file in place"
    );

    // The next run finishes that publish, upgrades, then commits.
    assert!(leadflow_run(&inputs[1], &out).status().unwrap().success());
    let upgraded = snapshot(&out).await;
    assert_eq!(upgraded.version, Some(1));
    assert_eq!(upgraded.recent[0].operation, Operation::Upgrade);
    assert!(from.exists(), "the unfinished publish was finished");
    assert!(!out_path.join("_leadflow/manifest.json").exists());
    assert_eq!(lead_counts(&out).await, ("400".into(), "400".into()));
}
