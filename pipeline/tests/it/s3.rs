//! Input from and output to a real S3-compatible server (moto, started by
//! scripts/test.sh). Found through S3_ENDPOINT, default http://127.0.0.1:5055.

use std::io::{Read, Write};
use std::path::Path;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::support::{config, lead_counts, query, rows, run};

fn endpoint() -> String {
    std::env::var("S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5055".into())
}

/// Creates a bucket with a plain S3 `PUT /bucket` (moto needs no signature).
fn create_bucket(endpoint: &str, bucket: &str) {
    let url = url::Url::parse(endpoint).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(80));
    let mut stream = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| {
        panic!("no S3 server at {endpoint} ({e}); run the tests with scripts/test.sh")
    });
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "create bucket: {response}"
    );
}

/// A new bucket for one test, named by `tag` and this process.
pub(crate) fn new_bucket(tag: &str) -> String {
    let bucket = format!("leadflow-it-{tag}-{}", std::process::id());
    create_bucket(&endpoint(), &bucket);
    bucket
}

#[tokio::test]
async fn s3_input_and_output_round_trip() {
    let endpoint = endpoint();
    assert_eq!(
        std::env::var("AWS_ENDPOINT_URL").ok().as_deref(),
        Some(endpoint.as_str()),
        "export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test (scripts/test.sh does)"
    );
    let bucket = format!("leadflow-it-{}", std::process::id());
    create_bucket(&endpoint, &bucket);

    let location = leadflow_pipeline::storage::open(&format!("s3://{bucket}/")).unwrap();
    let example =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/leads.csv")).unwrap();
    location
        .store
        .put(&ObjectPath::from("in/day1/leads.csv"), example.into())
        .await
        .unwrap();

    let input = format!("s3://{bucket}/in/");
    let out = format!("s3://{bucket}/out");
    let summary = run(config(&input, &out)).await;
    assert_eq!(
        (summary.records_read, summary.leads_written, summary.rejects),
        (403, 400, 3)
    );

    let written: Vec<_> = location
        .store
        .list(Some(&ObjectPath::from("out/enriched_leads")))
        .try_collect()
        .await
        .unwrap();
    assert!(!written.is_empty());
    assert!(
        written
            .iter()
            .all(|m| m.location.as_ref().contains("/dt=2026-11-2")
                && m.location.as_ref().ends_with(".parquet"))
    );

    assert_eq!(lead_counts(&out).await, ("400".into(), "400".into()));
    let rejects = rows(&query(&out, "select count(*) from rejects").await);
    assert_eq!(rejects, vec![vec!["3".to_string()]]);

    // A rerun replaces the first run's output through the same publish
    // protocol as on disk: S3's conditional PUT creates each version.
    run(config(&input, &out)).await;
    assert_eq!(lead_counts(&out).await, ("400".into(), "400".into()));
    let meta: Vec<String> = location
        .store
        .list(Some(&ObjectPath::from("out/_leadflow")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        meta,
        vec![
            "out/_leadflow/log/00000000000000000000.json".to_string(),
            "out/_leadflow/log/00000000000000000001.json".to_string(),
        ],
        "two versions, and nothing left staged"
    );
}

/// `leadflow run` from `input` in a child process whose AWS environment is
/// only `env`: its exit code and stderr.
fn run_with_aws_env(input: &str, env: &[(&str, String)]) -> (Option<i32>, String) {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_leadflow"));
    cmd.args(["run", "--no-progress", "--input", input, "--out"])
        .arg(out.path());
    for (var, _) in std::env::vars().filter(|(v, _)| v.starts_with("AWS_")) {
        cmd.env_remove(var);
    }
    for (var, value) in env {
        cmd.env(var, value);
    }
    let output = cmd.output().expect("leadflow runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn an_endpoint_without_a_scheme_is_a_clear_error_not_a_panic() {
    for endpoint in ["localhost:9000", "http://localhost:9000 ", "not a url"] {
        let (code, stderr) = run_with_aws_env(
            "s3://leads/in/",
            &[("AWS_ENDPOINT_URL", endpoint.to_string())],
        );
        assert_eq!(code, Some(2), "{endpoint}: {stderr}");
        assert!(stderr.contains("AWS_ENDPOINT_URL"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_silent_endpoint_is_given_up_on_and_named() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let (code, stderr) = run_with_aws_env(
        "s3://leads/in/",
        &[
            ("AWS_ENDPOINT_URL", format!("http://{addr}")),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("LEADFLOW_S3_REQUEST_TIMEOUT_SECS", "1".into()),
            ("LEADFLOW_S3_RETRY_SECS", "1".into()),
        ],
    );
    assert_eq!(code, Some(3), "a service failure: {stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
}

#[test]
fn no_credentials_says_where_they_are_looked_for() {
    // No credentials in the environment, and a metadata endpoint that is closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metadata = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (code, stderr) = run_with_aws_env(
        "s3://leads/in/",
        &[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".into()),
            ("AWS_METADATA_ENDPOINT", metadata),
            ("LEADFLOW_S3_RETRY_SECS", "1".into()),
        ],
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("no S3 credentials in the environment")
            && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
}

/// The stream ledger's fence on S3 (conditional PUTs): a consumer that lost
/// its partition cannot commit offsets its successor committed, whichever
/// comes first, and the output holds each offset once.
#[tokio::test]
async fn a_zombie_stream_writer_is_fenced_on_s3() {
    use leadflow_pipeline::error::Error;
    use leadflow_pipeline::stream::ledger::StreamLedger;

    let bucket = new_bucket("zombie");
    let location = leadflow_pipeline::storage::open(&format!("s3://{bucket}/out")).unwrap();
    let commit = |ledger: StreamLedger, first: i64, last: i64| {
        let location = location.clone();
        async move {
            let rel = format!(
                "enriched_leads/dt=2026-12-05/part-{}-0000.parquet",
                ledger.file_stem(0, first, last)
            );
            location
                .store
                .put(&ledger.staging(0).child(&rel), b"x".to_vec().into())
                .await
                .unwrap();
            let cut = leadflow_pipeline::stream::ledger::CommittedCut {
                files: vec![rel],
                ..ledger.cut(0, first, last, &format!("cut-{first}-{last}-{:p}", &ledger))
            };
            ledger.commit(&cut).await?;
            ledger.publish(&cut).await
        }
    };
    let zombie = StreamLedger::writer(location.clone(), "leads").unwrap();
    assert_eq!(zombie.recover(0).await.unwrap(), None);
    commit(zombie.clone(), 0, 99).await.unwrap();
    let owner = StreamLedger::writer(location.clone(), "leads").unwrap();
    assert_eq!(owner.recover(0).await.unwrap(), Some(99));
    commit(owner.clone(), 100, 249).await.unwrap();
    let fenced = commit(zombie.clone(), 100, 199).await.unwrap_err();
    assert!(matches!(fenced, Error::Conflict(_)), "{fenced}");

    // The other way round: the zombie's commit first, the owner fenced.
    let late = StreamLedger::writer(location.clone(), "leads").unwrap();
    assert_eq!(late.recover(0).await.unwrap(), Some(249));
    commit(owner.clone(), 250, 259).await.unwrap();
    let fenced = commit(late, 250, 299).await.unwrap_err();
    assert!(matches!(fenced, Error::Conflict(_)), "{fenced}");

    let listed: Vec<_> = location
        .store
        .list(Some(&location.child("enriched_leads")))
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<String> = listed
        .iter()
        .map(|m| m.location.filename().unwrap().to_string())
        .collect();
    names.sort();
    let stem = |first, last| format!("part-{}-0000.parquet", owner.file_stem(0, first, last));
    assert_eq!(names, [stem(0, 99), stem(100, 249), stem(250, 259)]);
}

/// Stages a stream file of `partition`'s cut `first..=last` (number
/// `seq`) holding one reject per offset in `offsets`: its path in the output.
async fn stage_cut_file(
    location: &leadflow_pipeline::storage::Location,
    ledger: &leadflow_pipeline::stream::ledger::StreamLedger,
    (partition, first, last, seq): (i32, i64, i64, usize),
    offsets: std::ops::RangeInclusive<i64>,
) -> String {
    use datafusion::arrow::array::{RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("lead_id", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]));
    let ids: Vec<String> = offsets
        .map(|o| format!("p{partition}-{:03}", 999 - o))
        .collect();
    let reasons = vec!["bad phone"; ids.len()];
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(StringArray::from(ids)),
            std::sync::Arc::new(StringArray::from(reasons)),
        ],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let rel = format!(
        "rejects/dt=2026-12-05/part-{}-{seq:04}.parquet",
        ledger.file_stem(partition, first, last)
    );
    location
        .store
        .put(&ledger.staging(partition).child(&rel), bytes.into())
        .await
        .unwrap();
    rel
}

/// Stream cuts committed on S3 and moved in, compacted: one commit
/// rewrites them all into one file; readers count each row once before
/// and after, and a second compaction finds nothing to do. A cut whose
/// writer died half-way through moving its two files in is left alone
/// (the file it did move too): once the next writer moves the other one
/// in, every row is there once.
#[tokio::test]
async fn a_streams_cuts_on_s3_are_compacted_in_one_commit() {
    use leadflow_pipeline::publish::compact::{CompactOptions, compact};
    use leadflow_pipeline::stream::ledger::{CommittedCut, StreamLedger};

    let bucket = new_bucket("compact");
    let out = format!("s3://{bucket}/out");
    let location = leadflow_pipeline::storage::open(&out).unwrap();
    let ledger = StreamLedger::writer(location.clone(), "leads").unwrap();
    for partition in 0..2 {
        assert_eq!(ledger.recover(partition).await.unwrap(), None);
        for k in 0..10i64 {
            let (first, last) = (k * 10, k * 10 + 9);
            let rel = stage_cut_file(
                &location,
                &ledger,
                (partition, first, last, 0),
                first..=last,
            )
            .await;
            let cut = CommittedCut {
                files: vec![rel],
                ..ledger.cut(partition, first, last, &format!("cut-{partition}-{first}"))
            };
            ledger.commit(&cut).await.unwrap();
            ledger.publish(&cut).await.unwrap();
        }
    }
    let counts = "select count(*), count(distinct lead_id) from rejects";
    assert_eq!(rows(&query(&out, counts).await), [["200", "200"]]);

    let done = compact(&location, &CompactOptions::default())
        .await
        .unwrap();
    assert_eq!((done.files_in, done.files_out, done.rows), (20, 1, 200));
    assert_eq!(rows(&query(&out, counts).await), [["200", "200"]]);
    let listed: Vec<_> = location
        .store
        .list(Some(&location.child("rejects")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let again = compact(&location, &CompactOptions::default())
        .await
        .unwrap();
    assert_eq!(again.version, None, "nothing left to compact: {again:?}");

    // Partition 0's next cut has two files; its writer moves the first in
    // and dies. With another small file there, a compaction has work.
    let cut = CommittedCut {
        files: vec![
            stage_cut_file(&location, &ledger, (0, 100, 119, 0), 100..=109).await,
            stage_cut_file(&location, &ledger, (0, 100, 119, 1), 110..=119).await,
        ],
        ..ledger.cut(0, 100, 119, "cut-0-100")
    };
    ledger.commit(&cut).await.unwrap();
    let staged = ledger.staging(0).child(&cut.files[0]);
    location
        .store
        .rename(&staged, &location.child(&cut.files[0]))
        .await
        .unwrap();
    let rel = stage_cut_file(&location, &ledger, (1, 100, 109, 0), 100..=109).await;
    let other = CommittedCut {
        files: vec![rel],
        ..ledger.cut(1, 100, 109, "cut-1-100")
    };
    ledger.commit(&other).await.unwrap();
    ledger.publish(&other).await.unwrap();
    assert_eq!(rows(&query(&out, counts).await), [["220", "220"]]);
    let done = compact(&location, &CompactOptions::default())
        .await
        .unwrap();
    assert_eq!((done.files_in, done.rows), (2, 210), "{done:?}");
    let next = StreamLedger::writer(location.clone(), "leads").unwrap();
    assert_eq!(next.recover(0).await.unwrap(), Some(119));
    assert_eq!(rows(&query(&out, counts).await), [["230", "230"]]);
}

/// A partition that cannot be read (here a cut file that is not Parquet)
/// is named and left as it is; the other partitions are compacted.
#[tokio::test]
async fn a_partition_that_cannot_be_read_is_named_and_the_others_are_compacted() {
    use leadflow_pipeline::publish::compact::{CompactOptions, compact};
    use leadflow_pipeline::stream::ledger::{CommittedCut, StreamLedger};

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let location = leadflow_pipeline::storage::create(&out).unwrap();
    let ledger = StreamLedger::writer(location.clone(), "leads").unwrap();
    assert_eq!(ledger.recover(0).await.unwrap(), None);
    for k in 0..4i64 {
        let (first, last) = (k * 10, k * 10 + 9);
        let mut files =
            vec![stage_cut_file(&location, &ledger, (0, first, last, 0), first..=last).await];
        // The same cut's file in another day's partition, broken.
        let broken = files[0].replace("dt=2026-12-05", "dt=2026-12-04");
        location
            .store
            .put(
                &ledger.staging(0).child(&broken),
                b"not parquet".to_vec().into(),
            )
            .await
            .unwrap();
        files.push(broken);
        let cut = CommittedCut {
            files,
            ..ledger.cut(0, first, last, &format!("cut-{first}"))
        };
        ledger.commit(&cut).await.unwrap();
        ledger.publish(&cut).await.unwrap();
    }
    let done = compact(&location, &CompactOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (done.dirs, done.files_in, done.rows),
        (1, 4, 40),
        "{done:?}"
    );
    assert_eq!(done.failed.len(), 1, "{done:?}");
    assert!(
        done.failed[0].contains("dt=2026-12-04"),
        "{:?}",
        done.failed
    );
    let left = super::support::files_under(&dir.path().join("out/rejects/dt=2026-12-04"));
    assert_eq!(left.len(), 4, "the broken partition is left as it was");
    let compacted = super::support::files_under(&dir.path().join("out/rejects/dt=2026-12-05"));
    assert_eq!(compacted.len(), 1);
}
