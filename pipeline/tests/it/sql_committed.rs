//! `leadflow sql --data` reads what leadflow committed: a Parquet file
//! dropped into a table directory by anything else is named, not read.

use std::process::{Command, Output};

use super::support::{analytics_fixture, config, example, run};

fn sql(data: &str, query: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["sql", query, "--data", data, "--format", "csv"])
        .env_remove("LEADFLOW_CONFIG")
        .output()
        .expect("leadflow runs")
}

#[tokio::test]
async fn a_parquet_file_no_commit_lists_is_named_and_the_clean_output_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    let summary = run(config(&example(), &out)).await;

    let count = "select count(*) as n from enriched_leads";
    let clean = sql(&out, count);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&clean.stdout),
        format!("n\n{}\n", summary.leads_written)
    );

    // A copy of one of the run's own files, under a name no commit lists.
    // Summary paths are relative to the output.
    let committed = out_path.join(&summary.output_files[0].path);
    let day = committed.parent().unwrap();
    let stranger = day.join("x.parquet");
    std::fs::copy(&committed, &stranger).unwrap();
    let got = sql(&out, count);
    let err = String::from_utf8_lossy(&got.stderr);
    assert_eq!(got.status.code(), Some(2), "{err}");
    let day_name = day.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(&format!(
            "enriched_leads/{day_name}/x.parquet is in the table directory but no leadflow commit lists it"
        )),
        "{err}"
    );

    // Moved out, the output reads as before.
    std::fs::remove_file(&stranger).unwrap();
    let again = sql(&out, count);
    assert!(again.status.success());
    assert_eq!(again.stdout, clean.stdout);
}

#[test]
fn a_plain_directory_of_parquet_without_a_manifest_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("out");
    analytics_fixture(&data);
    let day = data.join("enriched_leads/dt=2026-11-25");
    std::fs::copy(day.join("part-0.parquet"), day.join("part-1.parquet")).unwrap();
    let got = sql(
        data.to_str().unwrap(),
        "select count(*) as n from enriched_leads",
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    // 6 leads on that day, twice, and 4 on the next.
    assert_eq!(String::from_utf8_lossy(&got.stdout), "n\n16\n");
}
