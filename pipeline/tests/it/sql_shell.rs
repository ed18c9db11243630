//! `leadflow sql --data DIR` without a query: the shell, fed on stdin.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::analytics_fixture;

fn shell(data: &std::path::Path, home: &std::path::Path, input: &str) -> String {
    let out = shell_output(data, home, input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The shell over `data` (history under `home`) fed `input` on stdin, to
/// its end.
pub(crate) fn shell_output(
    data: &std::path::Path,
    home: &std::path::Path,
    input: &[u8],
) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(["sql", "--data"])
        .arg(data)
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_shell_runs_multi_line_statements_dot_commands_and_survives_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("out");
    analytics_fixture(&data);
    let out = shell(
        &data,
        dir.path(),
        ".tables\n\
         .schema rejects\n\
         select count(*) as n\n  from enriched_leads\n  where phone_valid;\n\
         .mode csv\n\
         select lead_id, found_by from enriched_leads where lookup_status = 'found' order by lead_id;\n\
         select no_such_column from rejects;\n\
         .mode json\n\
         .run summary\n\
         .timing off\n\
         .mode nonsense\n\
         .frobnicate\n\
         select 'after the errors' as still;\n\
         .quit\n\
         select 'never run';\n",
    );
    assert!(
        out.contains("tables: enriched_leads, provider_usage, rejects"),
        "{out}"
    );
    // .tables, one per line.
    assert!(
        out.contains("enriched_leads\nprovider_usage\nrejects\n"),
        "{out}"
    );
    // .schema: the column, its type and nullability.
    assert!(
        out.contains("  reason                   Utf8View NOT NULL\n"),
        "{out}"
    );
    // A statement over three lines, as a table, with its timing.
    assert!(out.contains("| n |"), "{out}");
    assert!(out.contains("| 2 |"), "{out}");
    assert!(out.contains("1 row\n("), "{out}");
    // .mode csv
    assert!(
        out.contains("lead_id,found_by\nL2,orion\nL4,nimbus\nL8,astra\n"),
        "{out}"
    );
    assert!(out.contains("-- 3 rows in "), "{out}");
    // An error is shown and the session goes on.
    assert!(
        out.contains("error: ") && out.contains("no_such_column"),
        "{out}"
    );
    // .run a shipped query, as JSON.
    assert!(
        out.contains(r#"{"leads":10,"valid_own_phones":2,"looked_up":7,"found":3"#),
        "{out}"
    );
    assert!(out.contains("error: .mode table|csv|json"), "{out}");
    assert!(
        out.contains("error: unknown command `.frobnicate`"),
        "{out}"
    );
    // .timing off: no timing after the last statement; .quit stops reading.
    assert!(out.contains(r#"{"still":"after the errors"}"#), "{out}");
    assert!(!out.contains("never run"), "{out}");
    let tail = &out[out.find("after the errors").unwrap()..];
    assert!(!tail.contains(" rows in "), "{out}");
    // History is kept for the next session.
    let history = std::fs::read_to_string(dir.path().join(".leadflow_history")).unwrap();
    assert!(history.contains("select count(*) as n"), "{history}");
}

#[test]
fn sql_on_stdin_that_is_not_utf8_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("out");
    analytics_fixture(&data);
    let out = shell_output(
        &data,
        dir.path(),
        b"select 1;\nselect '\xff\xfe' as latin1;\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("stdin: not UTF-8 text after line 1"),
        "{stderr}"
    );
}
