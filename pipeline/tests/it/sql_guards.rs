//! What `leadflow sql` and a run's `--query` refuse: statements that write,
//! define or drop (unless `--allow-writes`), and queries nested deeper than
//! the planner's stack allows. The real binary, so the exit codes are real.

use std::path::Path;
use std::process::{Command, Output};

use super::sql_shell::shell_output;
use super::support::{analytics_fixture, example};

/// `leadflow run` of the example into `out_dir` with the query in `query`.
fn run_with_query(out_dir: &Path, query: &Path) -> Output {
    leadflow(&[
        "run",
        "--no-progress",
        "--input",
        &example(),
        "--out",
        out_dir.to_str().unwrap(),
        "--query",
        query.to_str().unwrap(),
    ])
}

/// The real `leadflow` with `args`, nothing from the test's environment.
fn leadflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(args)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("REDIS_URL")
        .output()
        .expect("leadflow runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sql_refuses_copy_create_drop_insert_and_set_unless_allowed_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("out");
    analytics_fixture(&data);
    let data = data.to_str().unwrap();
    let targets = dir.path().join("targets.csv");
    std::fs::write(&targets, "domain\nacme.com\n").unwrap();
    let table = format!("targets={}", targets.display());
    let copied = dir.path().join("copied.parquet");
    let into_table = format!("{data}/enriched_leads/dt=2026-11-25/copied.parquet");
    let copy = format!("COPY (select 1 as x) TO '{}'", copied.display());
    let statements = [
        (copy.clone(), "COPY … TO"),
        (
            format!("COPY enriched_leads TO '{into_table}' STORED AS PARQUET"),
            "COPY … TO",
        ),
        (
            "CREATE EXTERNAL TABLE pw (line varchar) STORED AS CSV LOCATION '/etc/passwd'".into(),
            "CREATE EXTERNAL TABLE",
        ),
        ("DROP TABLE rejects".into(), "DROP TABLE"),
        (
            "INSERT INTO targets VALUES ('evil.example')".into(),
            "INSERT INTO",
        ),
        ("CREATE VIEW v AS select 1".into(), "CREATE VIEW"),
        ("SET datafusion.execution.batch_size = 1".into(), "SET"),
    ];
    for (statement, what) in &statements {
        let out = leadflow(&["sql", statement, "--data", data, "--table", &table]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{statement}: {err}");
        assert!(
            err.contains(&format!("{what} is refused")) && err.contains("--allow-writes"),
            "{statement}: {err}"
        );
    }
    assert!(!copied.exists(), "COPY wrote");
    assert!(!Path::new(&into_table).exists(), "COPY wrote into a table");
    assert_eq!(
        std::fs::read_to_string(&targets).unwrap(),
        "domain\nacme.com\n"
    );

    // Reading statements still run.
    for statement in [
        "EXPLAIN select count(*) from rejects",
        "SHOW TABLES",
        "DESCRIBE rejects",
        "select count(*) from targets",
    ] {
        let out = leadflow(&["sql", statement, "--data", data, "--table", &table]);
        assert!(out.status.success(), "{statement}: {}", stderr(&out));
    }

    // --file and the shell are refused alike.
    let file = dir.path().join("copy.sql");
    std::fs::write(&file, &copy).unwrap();
    let out = leadflow(&["sql", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("COPY … TO is refused"));
    let out = shell_output(
        Path::new(data),
        dir.path(),
        format!("{copy};\nselect 'still here' as s;\n").as_bytes(),
    );
    let text = stdout(&out);
    assert!(text.contains("error: COPY … TO is refused"), "{text}");
    assert!(text.contains("still here"), "{text}");
    assert!(!copied.exists(), "the shell's COPY wrote");

    // --allow-writes lets COPY write.
    let out = leadflow(&["sql", &copy, "--allow-writes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(copied.exists(), "COPY with --allow-writes wrote nothing");
}

#[test]
fn a_run_whose_query_copies_is_refused_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let copied = dir.path().join("copied");
    let query = dir.path().join("copy.sql");
    std::fs::write(
        &query,
        format!(
            "COPY (select * from leads) TO '{}' STORED AS PARQUET",
            copied.display()
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = run_with_query(&out_dir, &query);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("COPY … TO is refused"), "{err}");
    assert!(!copied.exists(), "the run's query wrote");
    assert!(!out_dir.join("_leadflow/log").exists(), "the run committed");
}

/// `select 1 + 1 + … + 1` with `terms` terms.
fn sum_of_ones(terms: usize) -> String {
    format!("select {} as n", vec!["1"; terms].join(" + "))
}

#[test]
fn deeply_nested_sql_is_a_usage_error_and_a_deep_one_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("out");
    analytics_fixture(&data);
    let data = data.to_str().unwrap();

    // 1,000 levels run.
    let out = leadflow(&["sql", &sum_of_ones(1000), "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "n\n1000\n");
    let ors: Vec<String> = (0..1000).map(|i| format!("lead_id = 'L{i}'")).collect();
    let or_chain = |ors: &[String]| {
        format!(
            "select count(*) as n from enriched_leads where {}",
            ors.join(" OR ")
        )
    };
    let out = leadflow(&["sql", &or_chain(&ors), "--data", data, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "n\n10\n");

    // 5,000 levels: refused with exit 2, not a stack overflow.
    let ors: Vec<String> = (0..5000).map(|i| format!("lead_id = 'L{i}'")).collect();
    let parens = format!("select {}1{} as n", "(".repeat(5000), ")".repeat(5000));
    for query in [sum_of_ones(5000), or_chain(&ors), parens] {
        let out = leadflow(&["sql", &query, "--data", data]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}…: {err}", &query[..40]);
        assert!(err.contains("query nested too deeply (limit "), "{err}");
    }

    // And in a run's --query.
    for (terms, code) in [(1000, 0), (5000, 2)] {
        let query = dir.path().join(format!("deep-{terms}.sql"));
        std::fs::write(
            &query,
            format!("select *, {} as n from leads", vec!["1"; terms].join(" + ")),
        )
        .unwrap();
        let out_dir = dir.path().join(format!("run-{terms}"));
        let out = run_with_query(&out_dir, &query);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{terms} terms: {err}");
        if code == 2 {
            assert!(err.contains("query nested too deeply (limit "), "{err}");
        }
    }
}
