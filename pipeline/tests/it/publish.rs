//! The publish protocol: reruns killed at every moment, a new file under a
//! used name, runs at once. Kills are real: the `leadflow` binary aborts at
//! a named point of its publish (`LEADFLOW_CRASH_AT`) or is SIGKILLed.

use std::path::{Path, PathBuf};
use std::process::Command;

use leadflow_pipeline::publish::{META_DIR, Snapshot};
use leadflow_pipeline::storage;

use super::support::{config, example, files_under, lead_counts, run};

/// Every file a directory reader (pyarrow, DuckDB, Polars) would see: none
/// under a `_` or `.` name.
fn visible_files(out: &Path) -> Vec<PathBuf> {
    files_under(out)
        .into_iter()
        .filter(|p| {
            !p.strip_prefix(out)
                .unwrap()
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with(['_', '.']))
        })
        .collect()
}

async fn snapshot(out: &str) -> Snapshot {
    Snapshot::read(&storage::open(out).unwrap()).await.unwrap()
}

fn staged(out: &Path) -> usize {
    let staging = out.join(META_DIR).join("staging");
    if staging.exists() {
        files_under(&staging).len()
    } else {
        0
    }
}

/// Every file under `dir` with its size and modification time: what a
/// reader that writes nothing leaves as it was.
fn tree(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut all: Vec<_> = files_under(dir)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).unwrap();
            (p, meta.len(), meta.modified().unwrap())
        })
        .collect();
    all.sort();
    all
}

/// Runs the real binary over the example into `out`, aborting at `crash_at`.
fn run_binary_crashing(out: &str, crash_at: &str) -> std::process::ExitStatus {
    Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args([
            "run",
            "--no-progress",
            "--input",
            &example(),
            "--out",
            out,
            "--batch-size",
            "64",
        ])
        .env("LEADFLOW_CRASH_AT", crash_at)
        .env_remove("LEADFLOW_CONFIG")
        .output()
        .expect("leadflow runs")
        .status
}

#[tokio::test]
async fn a_rerun_killed_at_any_moment_leaves_every_lead_once() {
    for crash_at in ["before_commit", "after_commit", "mid_publish"] {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("out");
        let out = out_path.display().to_string();
        run(config(&example(), &out)).await;
        let first = snapshot(&out).await;
        assert_eq!(first.runs.len(), 1);

        let status = run_binary_crashing(&out, crash_at);
        assert!(!status.success(), "{crash_at}: the run was killed");

        if crash_at == "before_commit" {
            // Nothing committed: the output is the first run's, and what the
            // killed run staged is invisible to directory readers.
            assert!(staged(&out_path) > 0, "{crash_at}: files were staged");
            let names: Vec<PathBuf> = visible_files(&out_path);
            assert!(
                names
                    .iter()
                    .all(|p| p.extension().is_some_and(|e| e == "parquet")),
                "{crash_at}: {names:?}"
            );
            assert_eq!(
                snapshot(&out).await.runs[0].write_id,
                first.runs[0].write_id
            );
        } else {
            let after = snapshot(&out).await;
            assert_eq!(after.version, Some(1), "{crash_at}: the rerun committed");
            assert_ne!(after.runs[0].write_id, first.runs[0].write_id);
        }
        // `leadflow sql` reads the newest version: 400 leads, each once,
        // some of them still in the killed run's staging after its commit,
        // and it writes nothing to do so (a read-only copy reads the same).
        // Before the commit, the dead run's usage log is what it commits
        // where it can (the billing audit), its one write.
        let before_read = tree(&out_path);
        assert_eq!(
            lead_counts(&out).await,
            ("400".into(), "400".into()),
            "{crash_at}"
        );
        if crash_at != "before_commit" {
            assert_eq!(tree(&out_path), before_read, "{crash_at}: the reader wrote");
        }

        // The next run cleans up and replaces: still every lead once.
        run(config(&example(), &out)).await;
        assert_eq!(lead_counts(&out).await, ("400".into(), "400".into()));
        assert_eq!(staged(&out_path), 0, "{crash_at}: staging cleaned");
        let last = snapshot(&out).await;
        let leads: Vec<_> = last.runs.iter().filter(|r| !r.usage_only).collect();
        assert_eq!(leads.len(), 1, "{crash_at}: {last:?}");
        let live: std::collections::BTreeSet<PathBuf> =
            last.files().into_iter().map(|f| out_path.join(f)).collect();
        assert_eq!(
            visible_files(&out_path)
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>(),
            live,
            "{crash_at}: only the last run's files (and every run's calls) remain"
        );
    }
}

#[tokio::test]
async fn a_new_file_under_a_used_name_adds_to_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let example = std::fs::read_to_string(example()).unwrap();
    let mut lines = example.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let (yesterday, today) = body.split_at(body.len() / 2);
    let file = |rows: &[&str]| format!("{header}\n{}\n", rows.join("\n"));
    let input = inbox.join("leads.csv");
    let out = dir.path().join("out").display().to_string();

    std::fs::write(&input, file(yesterday)).unwrap();
    let first = run(config(&input.display().to_string(), &out)).await;
    std::fs::write(&input, file(today)).unwrap();
    let second = run(config(&input.display().to_string(), &out)).await;
    let both = first.leads_written + second.leads_written;
    assert_eq!(both, 400);
    assert_eq!(
        lead_counts(&out).await,
        (both.to_string(), both.to_string())
    );
    assert_eq!(snapshot(&out).await.runs.len(), 2);

    // Today's file again replaces today's output only.
    run(config(&input.display().to_string(), &out)).await;
    assert_eq!(
        lead_counts(&out).await,
        (both.to_string(), both.to_string())
    );
    assert_eq!(snapshot(&out).await.runs.len(), 2);
}

#[tokio::test]
async fn an_output_copied_without_its_commits_keeps_its_leads_through_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(example()).unwrap();
    let mut lines = example.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let (old, new) = body.split_at(body.len() / 2);
    let write = |name: &str, rows: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        path.display().to_string()
    };
    let (old, new) = (write("old.csv", old), write("new.csv", new));
    let out = dir.path().join("out").display().to_string();
    let first = run(config(&old, &out)).await;
    // Copied somewhere without `_leadflow/` (`aws s3 sync --exclude '_*'`,
    // a hand-made copy): the tables alone.
    std::fs::remove_dir_all(Path::new(&out).join(META_DIR)).unwrap();

    // The next run keeps them: readers read both runs' leads, and the
    // tables hold no file a commit does not list.
    let second = run(config(&new, &out)).await;
    let both = first.leads_written + second.leads_written;
    assert_eq!(both, 400);
    assert_eq!(
        lead_counts(&out).await,
        (both.to_string(), both.to_string())
    );
    let snapshot = snapshot(&out).await;
    let listed = snapshot.files();
    for file in visible_files(Path::new(&out)) {
        let rel = file
            .strip_prefix(&out)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(listed.contains(rel.as_str()), "{rel} is in no commit");
    }
}

#[tokio::test]
async fn two_reruns_at_once_end_with_every_lead_once_and_a_loser_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    run(config(&example(), &out)).await;
    let (a, b) = tokio::join!(
        leadflow_pipeline::run::run(config(&example(), &out)),
        leadflow_pipeline::run::run(config(&example(), &out)),
    );
    // When both began before either committed, the second to commit would
    // replace what the first just wrote: it fails instead (exit 3). When one
    // began after the other committed, it replaces it. Either way no lead
    // is doubled. (commit_log.rs pauses a rerun to make the conflict sure.)
    let (ok, failed): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
    assert!(!ok.is_empty(), "{failed:?}");
    for e in failed.into_iter().map(Result::unwrap_err) {
        assert!(
            matches!(e, leadflow_pipeline::error::Error::Conflict(_)),
            "{e}"
        );
        assert!(e.to_string().contains("Run it again"), "{e}");
        assert!(e.retryable());
    }
    assert_eq!(lead_counts(&out).await, ("400".into(), "400".into()));
    let snapshot = snapshot(&out).await;
    assert_eq!(snapshot.runs.iter().filter(|r| !r.usage_only).count(), 1);
}

#[tokio::test]
async fn an_output_inside_the_input_is_not_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("inbox");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(example(), input.join("leads.csv")).unwrap();
    let out = input.join("enriched").display().to_string();
    for _ in 0..2 {
        let summary = run(config(&input.display().to_string(), &out)).await;
        assert_eq!((summary.files, summary.leads_written), (1, 400));
    }
    assert_eq!(lead_counts(&out).await, ("400".into(), "400".into()));
}
