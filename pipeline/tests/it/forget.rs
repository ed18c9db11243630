//! `leadflow forget`: a subject's rows gone from every table and every file
//! a directory reader sees, everyone else's untouched (byte for byte), a
//! receipt without the subject in clear, kill -9 before or after and never
//! half, a rerun during the erasure, and the Redis purge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use leadflow_pipeline::config::LeadflowConfig;

use super::support::{config, example, files_under, query, redis_url, rows, run};

const KEY_ENV: &str = "LEADFLOW_TEST_RECEIPT_KEY";
const KEY: &str = "a test key of at least sixteen bytes";

/// The example's providers, and `[privacy]` with the test's receipt key.
fn providers() -> LeadflowConfig {
    let mut cfg = LeadflowConfig::load(Path::new(&format!(
        "{}/../examples/leadflow.toml",
        env!("CARGO_MANIFEST_DIR")
    )))
    .unwrap();
    cfg.privacy.receipt_key_env = Some(KEY_ENV.into());
    cfg
}

/// `providers()` as a file `forget --config` reads.
pub(crate) fn config_file(dir: &Path, redis: Option<(&str, &str)>) -> PathBuf {
    let mut text = format!("[privacy]\nreceipt_key_env = \"{KEY_ENV}\"\n");
    if let Some((url, prefix)) = redis {
        text += &format!("[redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\n");
    }
    let path = dir.join("forget.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn forget_command(out: &Path, config: &Path, subject: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
    command
        .arg("forget")
        .arg("--data")
        .arg(out)
        .arg("--config")
        .arg(config)
        .args(subject)
        .env(KEY_ENV, KEY)
        .env_remove("REDIS_URL")
        .env_remove("LEADFLOW_CRASH_AT")
        .env_remove("LEADFLOW_STOP_AT");
    command
}

pub(crate) fn succeeded(output: Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every table file a directory reader (DuckDB's `read_parquet('out/t/**')`,
/// pyarrow's dataset) sees, with its bytes.
fn table_files(out: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for table in ["enriched_leads", "provider_usage", "rejects"] {
        let dir = out.join(table);
        if !dir.exists() {
            continue;
        }
        for file in files_under(&dir) {
            if file.extension().is_some_and(|e| e == "parquet") {
                files.insert(file.clone(), std::fs::read(&file).unwrap());
            }
        }
    }
    files
}

/// The rows of every file a directory reader sees that hold any of
/// `needles` in any column (as text, any case).
pub(crate) fn rows_holding(out: &Path, needles: &[String]) -> Vec<String> {
    let needles: Vec<String> = needles.iter().map(|n| n.to_lowercase()).collect();
    let mut found = Vec::new();
    for (file, bytes) in table_files(out) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            for column in batch.columns() {
                let Ok(text) = cast(column, &DataType::Utf8) else {
                    continue;
                };
                let text = text.as_string::<i32>();
                for i in 0..text.len() {
                    if text.is_valid(i) {
                        let v = text.value(i).to_lowercase();
                        if needles.iter().any(|n| v.contains(n.as_str())) {
                            found.push(format!("{}: {v}", file.display()));
                        }
                    }
                }
            }
        }
    }
    found
}

/// One number from `sql`.
async fn count(out: &str, sql: &str) -> usize {
    rows(&query(out, sql).await)[0][0].parse().unwrap()
}

/// A subject of the example run with provider calls: their email and
/// lead ids.
async fn a_subject(out: &str) -> (String, Vec<String>) {
    let email = rows(
        &query(
            out,
            "select lower(trim(email)) from enriched_leads
             where lookup_attempts > 0 and email is not null order by lead_id limit 1",
        )
        .await,
    )[0][0]
        .clone();
    let ids = rows(
        &query(
            out,
            &format!(
                "select distinct lead_id from enriched_leads where lower(trim(email)) = '{email}'"
            ),
        )
        .await,
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    (email, ids)
}

/// The leads, calls and rejects leadflow reads in `out`.
async fn totals(out: &str) -> [usize; 3] {
    [
        count(out, "select count(*) from enriched_leads").await,
        count(out, "select count(*) from provider_usage").await,
        count(out, "select count(*) from rejects").await,
    ]
}

/// The bundled example run with its providers into a new directory: the
/// directory, the output's path and the output as text.
async fn example_run() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    let mut cfg = config(&example(), &out);
    cfg.providers = providers();
    run(cfg).await;
    (dir, out_path, out)
}

#[tokio::test]
async fn forget_removes_a_subject_from_every_file_and_leaves_every_other_file_as_it_was() {
    let (dir, out_path, out) = example_run().await;
    let (email, ids) = a_subject(&out).await;
    let calls = count(
        &out,
        &format!(
            "select count(*) from provider_usage where lead_id in ({})",
            ids.iter()
                .map(|i| format!("'{i}'"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
    .await;
    assert!(calls > 0);
    let before = totals(&out).await;
    let files_before = table_files(&out_path);
    let config = config_file(dir.path(), None);

    // A dry run says what would go and changes nothing.
    let dry = succeeded(
        forget_command(
            &out_path,
            &config,
            &["--email", &email.to_uppercase(), "--dry-run"],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["rows_removed"]["enriched_leads"], ids.len());
    assert_eq!(dry["rows_removed"]["provider_usage"], calls);
    assert_eq!(table_files(&out_path), files_before);

    let receipt = succeeded(
        forget_command(&out_path, &config, &["--email", &format!("  {email} ")])
            .output()
            .unwrap(),
    );
    assert_eq!(receipt["rows_removed"]["enriched_leads"], ids.len());
    assert_eq!(receipt["rows_removed"]["provider_usage"], calls);
    let after = totals(&out).await;
    assert_eq!(after[0], before[0] - ids.len());
    assert_eq!(after[1], before[1] - calls);
    assert_eq!(after[2], before[2]);

    // No file a directory reader sees holds the subject.
    let mut needles = ids.clone();
    needles.push(email.clone());
    assert_eq!(rows_holding(&out_path, &needles), Vec::<String>::new());
    // Every file not rewritten is byte for byte as it was; the rewritten
    // ones are replaced one for one (or gone when emptied).
    let files_after = table_files(&out_path);
    let kept: Vec<_> = files_before
        .iter()
        .filter(|(f, _)| files_after.contains_key(*f))
        .collect();
    for (file, bytes) in &kept {
        assert_eq!(&files_after[*file], *bytes, "{} changed", file.display());
    }
    let gone = files_before.len() - kept.len();
    let new = files_after.len() - kept.len();
    let rewritten = receipt["files_rewritten"].as_u64().unwrap() as usize;
    let emptied = receipt["files_emptied"].as_u64().unwrap() as usize;
    assert_eq!(gone, rewritten + emptied);
    assert_eq!(new, rewritten);
    assert!(gone >= 2, "a lead file and a usage file at least");

    // The receipt names the subject by keyed hash only.
    let id = receipt["id"].as_str().unwrap();
    let stored =
        std::fs::read_to_string(out_path.join(format!("_leadflow/erasures/{id}.json"))).unwrap();
    for needle in &needles {
        assert!(
            !stored.to_lowercase().contains(needle),
            "{needle} in the receipt"
        );
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY.as_bytes());
    let expected: String = ring::hmac::sign(&key, format!("email:{email}").as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(receipt["subjects"], serde_json::json!([expected]));

    // Twice changes nothing; nobody changes nothing.
    for subject in [email.as_str(), "nobody@nowhere.example"] {
        let again = succeeded(
            forget_command(&out_path, &config, &["--email", subject])
                .output()
                .unwrap(),
        );
        assert_eq!(again["files_rewritten"], 0);
        assert!(again["version"].is_null());
        assert_eq!(table_files(&out_path), files_after);
    }

    // A reject known only by its raw line, by phone: the line holds
    // `gold@example.com`; forgetting by lead id of nobody and a bad phone
    // are refused or change nothing.
    let receipt = succeeded(
        forget_command(&out_path, &config, &["--email", "gold@example.com"])
            .output()
            .unwrap(),
    );
    assert_eq!(receipt["rows_removed"]["rejects"], 1);
    assert_eq!(totals(&out).await[2], before[2] - 1);
    let bad = forget_command(&out_path, &config, &["--phone", "030 1234567"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("E.164"));
}

#[tokio::test]
async fn without_a_receipt_key_forget_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    run(config(&example(), &out)).await;
    let before = table_files(&out_path);
    let refused = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["forget", "--data", &out, "--email", "gold@example.com"])
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("receipt_key_env"), "{stderr}");
    assert_eq!(table_files(&out_path), before);

    // A directory that is not an output (a table's own, say) is refused,
    // and nothing is written into it.
    let key_config = config_file(dir.path(), None);
    let table_dir = out_path.join("enriched_leads");
    let before = files_under(&table_dir);
    let refused = forget_command(&table_dir, &key_config, &["--email", "gold@example.com"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a leadflow output"), "{stderr}");
    assert_eq!(files_under(&table_dir), before);
}

/// A reject is found by the number it holds however it is written, and
/// never by a lead id (a short one is in lines about others).
#[tokio::test]
async fn rejects_go_by_their_numbers_as_written_and_never_by_a_short_lead_id() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    let input = super::support::write(
        dir.path(),
        "leads.csv",
        b"lead_id,email,full_name,phone_raw,country,user_tier\n\
          1,ana@a.io,Ana A,+4930123456,DE,1\n\
          2,bob@b.io,Bob B,+4930654321,DE,1\n\
          77,dan@d.io,Dan D,+49 30 111111,DE,two 2\n\
          78,eve@e.io,Eve E,(030) 123-456,DE,gold\n",
    );
    run(config(&input, &out)).await;
    assert_eq!(count(&out, "select count(*) from rejects").await, 2);
    let config = config_file(dir.path(), None);
    let bob = succeeded(
        forget_command(&out_path, &config, &["--email", "bob@b.io"])
            .output()
            .unwrap(),
    );
    assert_eq!(bob["rows_removed"]["enriched_leads"], 1);
    assert_eq!(
        bob["rows_removed"]["rejects"], 0,
        "lead id 2 is not a token to erase by"
    );
    let ana = succeeded(
        forget_command(&out_path, &config, &["--phone", "+49 30 123456"])
            .output()
            .unwrap(),
    );
    assert_eq!(ana["rows_removed"]["enriched_leads"], 1);
    assert_eq!(
        ana["rows_removed"]["rejects"], 1,
        "(030) 123-456 in Eve's line"
    );
    assert_eq!(count(&out, "select count(*) from rejects").await, 1);
}

/// Killed right before its commit: the output is as it was. Killed right
/// after it: leadflow reads the output without the subject at once, and
/// the next writer (here, forget again) deletes the old files, so no
/// directory reader sees them either.
#[tokio::test]
async fn a_forget_killed_before_or_after_its_commit_leaves_before_or_after() {
    let (dir, out_path, out) = example_run().await;
    let (email, ids) = a_subject(&out).await;
    let before = totals(&out).await;
    let files_before = table_files(&out_path);
    let config = config_file(dir.path(), None);

    let killed = forget_command(&out_path, &config, &["--email", &email])
        .env("LEADFLOW_CRASH_AT", "erase_before_commit")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert_eq!(totals(&out).await, before);
    assert_eq!(table_files(&out_path), files_before);

    let killed = forget_command(&out_path, &config, &["--email", &email])
        .env("LEADFLOW_CRASH_AT", "erase_after_commit")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let after = totals(&out).await;
    assert_eq!(after[0], before[0] - ids.len(), "leadflow reads the commit");

    let again = succeeded(
        forget_command(&out_path, &config, &["--email", &email])
            .output()
            .unwrap(),
    );
    assert_eq!(again["files_rewritten"], 0, "{again}");
    // The killed erasure's receipt was written when its commit was
    // finished (by this second forget), with what it removed.
    let receipts: Vec<serde_json::Value> = files_under(&out_path.join("_leadflow/erasures"))
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    let killed = receipts
        .iter()
        .find(|r| !r["version"].is_null())
        .expect("the committed erasure's receipt");
    assert_eq!(killed["rows_removed"]["enriched_leads"], ids.len());
    let mut needles = ids.clone();
    needles.push(email.clone());
    assert_eq!(rows_holding(&out_path, &needles), Vec::<String>::new());
    assert_eq!(totals(&out).await, after);
    let staging = out_path.join("_leadflow/staging");
    assert!(
        !staging.exists() || files_under(&staging).is_empty(),
        "{:?}",
        files_under(&staging)
    );
}

/// A rerun of the input commits while forget is paused before its commit:
/// forget finds its files gone, plans again from the rerun's output, and
/// erases the subject from that; every other lead is there once.
#[tokio::test]
async fn a_rerun_committed_during_forget_is_erased_from_too_and_loses_nobody() {
    use super::commit_log::{resume, wait_stopped};
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    let mut cfg = config(&example(), &out);
    cfg.providers = providers();
    run(cfg.clone()).await;
    let (email, ids) = a_subject(&out).await;
    let before = totals(&out).await;
    let config = config_file(dir.path(), None);

    let gate = dir.path().join("resume");
    let mut paused = forget_command(&out_path, &config, &["--email", &email])
        .env("LEADFLOW_STOP_AT", "erase_before_commit")
        .env("LEADFLOW_STOP_UNTIL", &gate)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_stopped(&mut paused);
    cfg.run_id = "rerun".into();
    run(cfg).await;
    assert_eq!(
        totals(&out).await[0],
        before[0],
        "the rerun replaced the run"
    );
    resume(&mut paused, &gate);
    let receipt = succeeded(paused.wait_with_output().unwrap());
    assert_eq!(receipt["rows_removed"]["enriched_leads"], ids.len());
    // It planned again from the rerun's version, not from the one it
    // first read.
    let version = receipt["version"].as_u64().unwrap();
    let commit: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_path.join(format!("_leadflow/log/{version:020}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(commit["operation"], "erase");
    assert_eq!(
        commit["read_version"].as_u64(),
        Some(version - 1),
        "{commit}"
    );
    let leads = rows(
        &query(
            &out,
            "select count(*), count(distinct lead_id), max(run_id) from enriched_leads",
        )
        .await,
    );
    let kept = (before[0] - ids.len()).to_string();
    assert_eq!(leads[0], [kept.clone(), kept, "rerun".to_string()]);
    let mut needles = ids.clone();
    needles.push(email.clone());
    assert_eq!(rows_holding(&out_path, &needles), Vec::<String>::new());
}

/// With Redis, the subject's cached answers go: a rerun asks the providers
/// again about the subject's leads, and about no lead it would not have
/// asked about anyway.
#[tokio::test]
async fn forget_purges_the_subjects_cached_answers_so_only_they_are_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    let prefix = format!("lf-forget-{}", std::process::id());
    let mut providers = providers();
    providers.redis.url = Some(redis_url());
    providers.redis.key_prefix = prefix.clone();
    let mut cfg = config(&example(), &out);
    cfg.providers = providers;
    cfg.run_id = "first".into();
    run(cfg.clone()).await;
    let (email, ids) = a_subject(&out).await;
    let asked = |run: &'static str| {
        let out = out.clone();
        async move {
            rows(
                &query(
                    &out,
                    &format!(
                        "select distinct lead_id from provider_usage
                         where run_id = '{run}' and attempt > 0"
                    ),
                )
                .await,
            )
            .into_iter()
            .map(|r| r[0].clone())
            .collect::<BTreeSet<String>>()
        }
    };
    // Without forget, a rerun is answered from the cache for them.
    cfg.run_id = "control".into();
    run(cfg.clone()).await;
    let control = asked("control").await;
    assert!(ids.iter().all(|id| !control.contains(id)), "{control:?}");

    let config = config_file(dir.path(), Some((&redis_url(), &prefix)));
    let receipt = succeeded(
        forget_command(&out_path, &config, &["--email", &email])
            .output()
            .unwrap(),
    );
    assert!(
        receipt["redis"]["cache_keys"].as_u64().unwrap() >= 1,
        "{receipt}"
    );
    cfg.run_id = "after".into();
    run(cfg).await;
    let after = asked("after").await;
    let expected: BTreeSet<String> = control.iter().cloned().chain(ids.clone()).collect();
    assert_eq!(after, expected);
}

/// `[retention]`: exactly the partitions as old as their table's days go
/// (today counted), as one commit; everything else stays byte for byte.
#[tokio::test]
async fn retain_drops_exactly_the_partitions_past_their_days() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out");
    let out = out_path.display().to_string();
    let today = chrono::Utc::now().date_naive();
    let days_ago = |n: i64| today - chrono::Duration::days(n);
    for (age, rows) in [(30, 3), (7, 2), (6, 1)] {
        old_rejects(&out_path, days_ago(age), rows);
    }
    run(config(&example(), &out)).await;
    let rejects_today = count(&out, "select count(*) from rejects where run_id <> 'old'").await;
    assert_eq!(
        count(&out, "select count(*) from rejects").await,
        rejects_today + 6
    );
    let config = dir.path().join("retain.toml");
    std::fs::write(
        &config,
        "[retention]\nrejects_days = 7\nenriched_days = 30\n",
    )
    .unwrap();
    let retain = |dry: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadflow"));
        command
            .args(["retain", "--data", &out, "--today", &today.to_string()])
            .arg("--config")
            .arg(&config);
        if dry {
            command.arg("--dry-run");
        }
        command.output().unwrap()
    };
    let before = table_files(&out_path);
    let dry = retain(true);
    assert!(dry.status.success());
    assert_eq!(table_files(&out_path), before);
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(
        stderr.contains(&format!("would drop rejects/dt={}", days_ago(30))),
        "{stderr}"
    );

    let done = retain(false);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    let after = table_files(&out_path);
    let gone: Vec<String> = before
        .keys()
        .filter(|f| !after.contains_key(*f))
        .map(|f| f.strip_prefix(&out_path).unwrap().display().to_string())
        .collect();
    assert_eq!(
        gone,
        [
            format!("rejects/dt={}/part-old.parquet", days_ago(30)),
            format!("rejects/dt={}/part-old.parquet", days_ago(7)),
        ]
    );
    for (file, bytes) in &after {
        assert_eq!(&before[file], bytes, "{} changed", file.display());
    }
    assert_eq!(
        count(&out, "select count(*) from rejects").await,
        rejects_today + 1
    );
    // Again: nothing old enough.
    let again = retain(false);
    assert!(String::from_utf8_lossy(&again.stderr).contains("no partition old enough"));
    assert_eq!(table_files(&out_path), after);
}

/// `rows` rejects of `day` written into `out` before its first commit (an
/// output's files from before its log are kept by the first commit, as a
/// run of their own).
fn old_rejects(out: &Path, day: chrono::NaiveDate, rows: usize) {
    use datafusion::arrow::array::{
        Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use std::sync::Arc;
    let dt_dir = out.join(format!("rejects/dt={day}"));
    std::fs::create_dir_all(&dt_dir).unwrap();
    let at = day
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    let batch = RecordBatch::try_new(
        leadflow_schemas::reject_schema(),
        vec![
            Arc::new(StringArray::from(vec!["old.csv"; rows])),
            Arc::new(Int64Array::from(vec![2i64; rows])),
            Arc::new(StringArray::from(vec!["x,y"; rows])),
            Arc::new(StringArray::from(vec!["bad"; rows])),
            Arc::new(StringArray::from(vec!["old"; rows])),
            Arc::new(TimestampMicrosecondArray::from(vec![at; rows]).with_timezone("UTC")),
        ],
    )
    .unwrap();
    super::support::write_parquet(&dt_dir.join("part-old.parquet"), &batch);
}

/// `leadflow batch` applies `[retention]` after it publishes.
#[test]
fn a_batch_drops_what_retention_no_longer_keeps_after_it_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let today = chrono::Utc::now().date_naive();
    old_rejects(&out, today - chrono::Duration::days(40), 2);
    let old = out.join(format!(
        "rejects/dt={}/part-old.parquet",
        today - chrono::Duration::days(40)
    ));
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join(format!("dt={today}"))).unwrap();
    std::fs::copy(example(), input.join(format!("dt={today}/leads.csv"))).unwrap();
    let config = dir.path().join("retain.toml");
    std::fs::write(&config, "[retention]\nrejects_days = 30\n").unwrap();
    let done = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args([
            "batch",
            "--no-progress",
            "--date",
            &today.to_string(),
            "--input",
        ])
        .arg(format!("{}/dt={{date}}/", input.display()))
        .arg("--out")
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{stderr}");
    assert!(
        stderr.contains("[retention] dropped rejects/dt="),
        "{stderr}"
    );
    assert!(!old.exists());
    assert!(
        table_files(&out)
            .keys()
            .any(|f| f.to_string_lossy().contains(&format!("rejects/dt={today}"))),
        "today's rejects stay"
    );
}
