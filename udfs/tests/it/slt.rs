//! The UDFs' SQL behaviour, pinned in `tests/slt/*.slt` files in
//! sqllogictest's format (as DataFusion pins its functions) and run by
//! `cargo test`. A file `NAME.toml` beside `NAME.slt` configures providers for
//! it, answered by a sandbox started for the file.
//!
//! The runner is the few lines below rather than the `sqllogictest` crate:
//! that crate turns on `std` in `md-5`, which object_store also uses, so the
//! test build would compile DataFusion a second time (46 CPU-minutes here).
//! It reads the records these files use: `statement ok`, `statement error
//! [substring]`, `query <types> [rowsort]` with `----` and its rows.
//!
//! `LEADFLOW_SLT_COMPLETE=1` rewrites every query's expected rows from what
//! the engine answers: read the diff.

use std::path::{Path, PathBuf};

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use leadflow_sandbox::Sandbox;

/// A session with leadflow's UDFs (and, with a config, its providers).
struct Leadflow {
    ctx: SessionContext,
    _sandbox: Sandbox,
}

impl Leadflow {
    async fn new(config: Option<&str>) -> Self {
        let ctx = SessionContext::new();
        leadflow_udfs::register_all(&ctx);
        let (waterfall, sandbox) = super::sandboxed_waterfall(config.unwrap_or("")).await;
        leadflow_udfs::register_waterfall(&ctx, waterfall);
        Self {
            ctx,
            _sandbox: sandbox,
        }
    }
}

impl Leadflow {
    /// Runs `sql`; its rows as text, one string per row (values joined by
    /// spaces, NULL as `NULL`, an empty string as `(empty)`).
    async fn rows(&self, sql: &str) -> Result<Vec<String>> {
        let batches = self.ctx.sql(sql).await?.collect().await?;
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c, &options))
                .collect::<Result<Vec<_>, _>>()?;
            for r in 0..batch.num_rows() {
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| match c.value(r).to_string() {
                        s if s.is_empty() => "(empty)".to_string(),
                        s => s,
                    })
                    .collect();
                rows.push(values.join(" "));
            }
        }
        Ok(rows)
    }
}

/// Runs one `.slt` file's records in order; returns the file with every
/// query's rows as the engine answered them (for completion mode).
async fn run_file(db: &Leadflow, path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut out = String::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((at, line)) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_record = matches!(words.first(), Some(&"statement") | Some(&"query"));
        out.push_str(line);
        out.push('\n');
        if !is_record {
            continue;
        }
        let mut sql = String::new();
        while let Some((_, l)) = lines.peek() {
            if l.trim().is_empty() || *l == "----" {
                break;
            }
            sql.push_str(l);
            sql.push('\n');
            out.push_str(l);
            out.push('\n');
            lines.next();
        }
        let at = format!("{name}:{}", at + 1);
        let result = db.rows(&sql).await;
        match words[..] {
            ["statement", "ok"] => {
                result.unwrap_or_else(|e| panic!("{at}: {e}\n{sql}"));
            }
            ["statement", "error", ..] => {
                let expected = line.splitn(3, ' ').nth(2).unwrap_or("").trim();
                match result {
                    Ok(_) => panic!("{at}: expected an error\n{sql}"),
                    Err(e) => assert!(
                        e.to_string().contains(expected),
                        "{at}: the error does not say `{expected}`: {e}"
                    ),
                }
            }
            ["query", _types, ref sort @ ..] => {
                let mut got = result.unwrap_or_else(|e| panic!("{at}: {e}\n{sql}"));
                if sort == ["rowsort"] {
                    got.sort();
                }
                assert_eq!(lines.next().map(|(_, l)| l), Some("----"), "{at}: no ----");
                let mut expected = Vec::new();
                while let Some((_, l)) = lines.peek() {
                    if l.trim().is_empty() {
                        break;
                    }
                    expected.push(l.to_string());
                    lines.next();
                }
                out.push_str("----\n");
                for row in &got {
                    out.push_str(row);
                    out.push('\n');
                }
                if std::env::var_os("LEADFLOW_SLT_COMPLETE").is_none() {
                    assert_eq!(got, expected, "{at}\n{sql}");
                }
            }
            _ => panic!("{at}: unknown record `{line}`"),
        }
    }
    out
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[tokio::test]
async fn sql_behaviour_matches_the_slt_files() {
    for file in slt_files() {
        let config = std::fs::read_to_string(file.with_extension("toml")).ok();
        let db = Leadflow::new(config.as_deref()).await;
        let answered = run_file(&db, &file).await;
        if std::env::var_os("LEADFLOW_SLT_COMPLETE").is_some() {
            std::fs::write(&file, answered).unwrap();
        }
    }
}
