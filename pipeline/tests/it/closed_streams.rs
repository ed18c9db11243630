//! A reader that goes away: a closed stderr loses the messages, never the
//! run or its exit code; a closed stdout ends `leadflow sql` quietly with 0.

use std::process::{Command, Stdio};

use leadflow_pipeline::publish::Snapshot;
use leadflow_pipeline::storage;

use super::support::example;

#[tokio::test]
async fn a_run_whose_stderr_is_closed_commits_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["run", "--no-progress", "--input", &example(), "--out"])
        .arg(&out)
        .env_remove("LEADFLOW_CONFIG")
        // A warning is logged too (through tracing) after the reader is gone.
        .env("LEADFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `… 2>&1 | head -1` once head has its line: the read end is closed.
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let manifest = Snapshot::read(&storage::open(out.to_str().unwrap()).unwrap())
        .await
        .unwrap();
    assert_eq!(manifest.runs.len(), 1, "the run committed");
}

#[test]
fn sql_whose_stdout_is_closed_stops_quietly_with_0() {
    for format in ["csv", "json", "table"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leadflow"))
            .args([
                "sql",
                "select value, 'a lead' as name from generate_series(1, 300000)",
                "--format",
                format,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `leadflow sql … | head -1` once head has its line.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
    }
}
