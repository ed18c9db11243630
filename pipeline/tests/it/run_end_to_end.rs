//! A whole run over the bundled example, and what it leaves on disk.

use std::path::Path;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;

use super::support::{
    config, example, files_under, query, rows, run, run_err, write, write_parquet,
};

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

#[tokio::test]
async fn example_run_accounts_for_every_row_and_writes_typed_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = run(config(&example(), &out.display().to_string())).await;
    assert_eq!(summary.records_read, 403);
    assert_eq!(summary.rejects, 3);
    assert_eq!(summary.leads_written, 400);
    assert!(summary.valid_phones.unwrap() > 300, "{summary}");

    // Partitioned by the UTC day of received_at.
    let days: Vec<String> = std::fs::read_dir(out.join("enriched_leads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(days.len(), 3, "{days:?}");
    assert!(
        days.iter().all(|d| d.starts_with("dt=2026-11-2")),
        "{days:?}"
    );

    let files = parquet_files(&out.join("enriched_leads"));
    let file = std::fs::File::open(&files[0]).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = reader.schema().clone();
    let utc_us = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(
        schema.field_with_name("received_at").unwrap().data_type(),
        &utc_us
    );
    assert_eq!(
        schema.field_with_name("enriched_at").unwrap().data_type(),
        &utc_us
    );
    assert_eq!(
        schema
            .field_with_name("lookup_cost_usd")
            .unwrap()
            .data_type(),
        &DataType::Decimal128(12, 6)
    );
    assert_eq!(
        schema.field_with_name("user_tier").unwrap().data_type(),
        &DataType::Int32
    );
    assert_eq!(
        schema.field_with_name("phone_valid").unwrap().data_type(),
        &DataType::Boolean
    );
    assert_eq!(
        schema.field_with_name("run_id").unwrap().data_type(),
        &DataType::Utf8
    );
    assert!(
        schema.field_with_name("utm_source").is_ok(),
        "extra columns pass through"
    );
    let meta = reader.metadata();
    let column = meta.row_group(0).column(0);
    assert!(
        matches!(column.compression(), Compression::ZSTD(_)),
        "{:?}",
        column.compression()
    );
    assert!(column.statistics().is_some(), "statistics on");
    let chunk = |name: &str| {
        meta.row_group(0)
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let statistics = |name: &str| chunk(name).statistics().is_some();
    assert!(statistics("lead_id"), "compacted files prune by lead_id");
    assert!(
        !statistics("email") && statistics("country"),
        "no min/max for a column unique per lead but lead_id"
    );
    let dictionary = |name: &str| chunk(name).dictionary_page_offset().is_some();
    assert!(
        !dictionary("email"),
        "a column unique per lead has no dictionary"
    );
    assert!(
        dictionary("country"),
        "a repetitive column keeps its dictionary"
    );
    assert!(
        !statistics("company") && dictionary("company"),
        "a name that repeats keeps its dictionary, not its min/max"
    );

    let status = rows(
        &query(
            &out.display().to_string(),
            "select lookup_status, count(*) from enriched_leads group by 1",
        )
        .await,
    );
    assert_eq!(status, vec![vec!["not_run".to_string(), "400".to_string()]]);
    let rejects = rows(
        &query(
            &out.display().to_string(),
            "select count(*) from rejects where source like '%leads.csv' and line > 1",
        )
        .await,
    );
    assert_eq!(rejects, vec![vec!["3".to_string()]]);
}

#[tokio::test]
async fn a_replay_replaces_instead_of_duplicating() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(config(&example(), &out.display().to_string())).await;
    let first = parquet_files(&out);
    run(config(&example(), &out.display().to_string())).await;
    let second = parquet_files(&out);
    // (How many files varies: the partitions race for batches.)
    assert!(
        first.iter().all(|f| !second.contains(f)),
        "each run writes names of its own, and the replaced files are gone"
    );
    let count = rows(
        &query(
            &out.display().to_string(),
            "select count(*) from enriched_leads",
        )
        .await,
    );
    assert_eq!(count, vec![vec!["400".to_string()]]);
    let leftovers: Vec<_> = files_under(&out)
        .into_iter()
        .filter(|p| !p.starts_with(out.join("_leadflow")))
        .filter(|p| p.extension().is_none_or(|e| e != "parquet"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

#[tokio::test]
async fn ndjson_and_parquet_inputs_give_the_same_leads_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "lead_id,email,phone_raw,country,user_tier,received_at,source\n\
               n1,a@x.com,(415) 555-0132,US,1,2026-11-20T10:00:00Z,web\n\
               n2,b@x.com,+44 20 7183 8750,,2,2026-11-20,fair\n";
    let ndjson = "{\"lead_id\":\"n1\",\"email\":\"a@x.com\",\"phone_raw\":\"(415) 555-0132\",\"country\":\"US\",\"user_tier\":1,\"received_at\":\"2026-11-20T10:00:00Z\",\"source\":\"web\"}\n\
                  \n\
                  {\"lead_id\":\"n2\",\"email\":\"b@x.com\",\"phone_raw\":\"+44 20 7183 8750\",\"user_tier\":\"2\",\"received_at\":\"2026-11-20\",\"source\":\"fair\"}\n\
                  {not json}\n\
                  {\"lead_id\":\"n3\"\r\n";
    let q = "select lead_id, email, phone_e164, country, user_tier, received_at, source from enriched_leads order by lead_id";

    let out_csv = dir.path().join("out-csv").display().to_string();
    run(config(
        &write(dir.path(), "l.csv", csv.as_bytes()),
        &out_csv,
    ))
    .await;
    let from_csv = rows(&query(&out_csv, q).await);
    assert_eq!(from_csv.len(), 2);

    let out_json = dir.path().join("out-json").display().to_string();
    let summary = run(config(
        &write(dir.path(), "l.ndjson", ndjson.as_bytes()),
        &out_json,
    ))
    .await;
    assert_eq!(summary.rejects, 2);
    assert_eq!(rows(&query(&out_json, q).await), from_csv);
    let reason = rows(
        &query(
            &out_json,
            "select line, reason like 'not a JSON object%' from rejects order by line",
        )
        .await,
    );
    assert_eq!(
        reason,
        vec![
            vec!["4".to_string(), "true".to_string()],
            vec!["5".to_string(), "true".to_string()]
        ]
    );
    // The place serde_json names is in the line, not past its end.
    let reason = rows(&query(&out_json, "select reason from rejects where line = 5").await);
    assert_eq!(
        reason,
        vec![vec![
            "not a JSON object: EOF while parsing an object at line 1 column 15".to_string()
        ]]
    );

    // The CSV run's own output, read back as a Parquet input.
    let parquet_in = dir.path().join("in-parquet");
    std::fs::create_dir_all(&parquet_in).unwrap();
    let (ctx, _) = leadflow_pipeline::sql::context(Some(&out_csv), &[])
        .await
        .unwrap();
    let df = ctx.sql("select lead_id, email, phone_raw, country, user_tier, received_at, source from enriched_leads").await.unwrap();
    df.write_parquet(
        &parquet_in.join("leads.parquet").display().to_string(),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let out_pq = dir.path().join("out-pq").display().to_string();
    run(config(&parquet_in.display().to_string(), &out_pq)).await;
    assert_eq!(rows(&query(&out_pq, q).await), from_csv);
}

/// NDJSON is read once: its first lines fix the columns. A later record still
/// gives every lead field and every column another file showed; a key nobody
/// showed in time is counted in the summary, and its lead is kept.
#[tokio::test]
async fn ndjson_is_read_once_and_says_what_it_did_not_keep() {
    use leadflow_pipeline::sources::files::NDJSON_SCHEMA_LINES as LINES;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let early = "{\"lead_id\":\"a1\",\"phone_raw\":\"+14155550132\",\"campaign\":\"spring\"}\n";
    write(&input, "a.ndjson", early.as_bytes());
    let mut late = String::new();
    for i in 0..LINES {
        late.push_str(&format!("{{\"lead_id\":\"b{i}\"}}\n"));
    }
    late.push_str("{\"lead_id\":\"last\",\"phone_raw\":\"+442071838750\",\"campaign\":\"fall\",\"surprise\":1}\n");
    write(&input, "b.ndjson", late.as_bytes());

    let out = dir.path().join("out").display().to_string();
    let summary = run(config(&input.display().to_string(), &out)).await;
    assert_eq!(summary.leads_written, LINES as u64 + 2);
    assert_eq!(summary.unkept_values, 1, "{summary}");
    assert!(summary.to_string().contains("1 NDJSON values"), "{summary}");
    let last = rows(
        &query(
            &out,
            "select lead_id, phone_e164, campaign from enriched_leads where lead_id in ('a1', 'last') order by lead_id",
        )
        .await,
    );
    assert_eq!(
        last,
        vec![
            vec!["a1".to_string(), "+14155550132".into(), "spring".into()],
            vec!["last".to_string(), "+442071838750".into(), "fall".into()],
        ]
    );
}

#[tokio::test]
async fn bad_sql_fails_before_reading_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&example(), &dir.path().join("out").display().to_string());
    cfg.query = "select phone_info(no_such_column, country) from leads".into();
    let err = run_err(cfg).await;
    assert!(err.contains("no_such_column"), "{err}");
}

#[tokio::test]
async fn the_sql_table_format_shows_the_first_rows_and_stops() {
    use leadflow_pipeline::sql::{
        OutputFormat, SQL_READS_ONLY, TABLE_ROWS, Writes, context, execute,
    };
    const READS: Writes = Writes::Refused(SQL_READS_ONLY);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    run(config(&example(), &out)).await;
    let (ctx, _) = context(Some(&out), &[]).await.unwrap();
    let cross = "select a.lead_id, b.lead_id from enriched_leads a, enriched_leads b";
    let mut printed = Vec::new();
    let shown = execute(&ctx, cross, READS, OutputFormat::Table, &mut printed)
        .await
        .unwrap();
    assert_eq!(shown, TABLE_ROWS);
    let printed = String::from_utf8(printed).unwrap();
    assert!(printed.ends_with("first 1000 rows shown; --format csv or json writes them all\n"));
    let mut csv = Vec::new();
    let all = execute(&ctx, cross, READS, OutputFormat::Csv, &mut csv)
        .await
        .unwrap();
    assert_eq!(all, 400 * 400);
}

#[tokio::test]
async fn a_query_reading_leads_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for query in [
        "select lead_id from leads union all select lead_id from leads",
        "select a.lead_id from leads a join leads b on a.lead_id = b.lead_id",
        "with l as (select * from leads) select lead_id from l union all select lead_id from l",
        "select 1 as one",
    ] {
        let mut cfg = config(&example(), &dir.path().join("out").display().to_string());
        cfg.query = query.into();
        let err = run_err(cfg).await;
        assert!(err.contains("`leads`"), "{query}: {err}");
    }
    assert!(!dir.path().join("out").join("enriched_leads").exists());
}

#[tokio::test]
async fn text_that_is_not_utf8_or_not_a_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            "lead_id,phone_raw\na1,+14155550132\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    let err = run_err(config(&write(dir.path(), "u16.csv", &utf16), &out)).await;
    assert!(err.contains("u16.csv") && err.contains("UTF-16"), "{err}");

    let err = run_err(config("/dev/zero", &out)).await;
    assert!(err.contains("not a regular file"), "{err}");

    // A UTF-8 byte-order mark before NDJSON's first line is not a reject.
    let ndjson = "\u{feff}{\"lead_id\":\"b1\",\"phone_raw\":\"+14155550132\"}\n";
    let summary = run(config(
        &write(dir.path(), "bom.ndjson", ndjson.as_bytes()),
        &out,
    ))
    .await;
    assert_eq!((summary.leads_written, summary.rejects), (1, 0));
}

#[tokio::test]
async fn missing_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "/no/such/leads.csv",
        &dir.path().join("out").display().to_string(),
    );
    let err = run_err(cfg).await;
    assert!(
        err.contains("/no/such/leads.csv") && err.contains("no such file"),
        "{err}"
    );
}

/// Parquet as others write it: a binary column holding a bad byte, a struct
/// column, and, in the same directory, a file that is not Parquet at all.
#[tokio::test]
async fn parquet_binary_nested_and_corrupt_inputs() {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, BinaryArray, Int32Array, RecordBatch, StringArray, StructArray,
    };
    use datafusion::arrow::datatypes::{Field, Fields};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let lead_id: ArrayRef = Arc::new(StringArray::from(vec!["p1", "p2"]));
    let phone: ArrayRef = Arc::new(BinaryArray::from(vec![
        b"+14155550132".as_slice(),
        b"+1415\xff5550133".as_slice(),
    ]));
    let meta: ArrayRef = Arc::new(StructArray::new(
        Fields::from(vec![Field::new("score", DataType::Int32, true)]),
        vec![Arc::new(Int32Array::from(vec![7, 8])) as ArrayRef],
        None,
    ));
    let batch =
        RecordBatch::try_from_iter([("lead_id", lead_id), ("phone_raw", phone), ("meta", meta)])
            .unwrap();
    write_parquet(&input.join("a.parquet"), &batch);

    let out = dir.path().join("out").display().to_string();
    let summary = run(config(&input.display().to_string(), &out)).await;
    assert_eq!((summary.leads_written, summary.rejects), (1, 1));
    let got = rows(&query(&out, "select lead_id, phone_e164, meta from enriched_leads").await);
    assert_eq!(got, vec![vec!["p1", "+14155550132", "{score: 7}"]]);
    let reason = rows(&query(&out, "select line, reason from rejects").await);
    assert_eq!(
        reason,
        vec![vec![
            "2".to_string(),
            "column `phone_raw` is not UTF-8 text".into()
        ]]
    );

    std::fs::write(input.join("b.parquet"), b"PAR1 this is not parquet").unwrap();
    let err = run_err(config(
        &input.display().to_string(),
        &dir.path().join("out2").display().to_string(),
    ))
    .await;
    assert!(
        err.contains("b.parquet") && err.contains("Parquet"),
        "{err}"
    );
}

#[tokio::test]
async fn sql_over_a_parquet_file_cut_short_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    let batch = datafusion::arrow::array::RecordBatch::try_from_iter([(
        "a",
        std::sync::Arc::new(datafusion::arrow::array::Int32Array::from(vec![1, 2, 3]))
            as datafusion::arrow::array::ArrayRef,
    )])
    .unwrap();
    write_parquet(&good, &batch);
    // The footer's length now claims more than the file holds.
    let mut bytes = std::fs::read(&good).unwrap();
    let n = bytes.len();
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) + 100_000;
    bytes[n - 8..n - 4].copy_from_slice(&len.to_le_bytes());
    let bad = write(dir.path(), "bad.parquet", &bytes);
    let err = leadflow_pipeline::sql::context(None, &[format!("t={bad}")])
        .await
        .err()
        .expect("a clear error, not a panic")
        .to_string();
    assert!(
        err.contains("bad.parquet") && err.contains("footer claims"),
        "{err}"
    );
}
