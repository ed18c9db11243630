//! The interactive `leadflow sql` shell: statements end at `;` and may span
//! lines, dot commands inspect the session, history persists between runs.

use std::io::Write;
use std::time::Instant;

use datafusion::prelude::SessionContext;
use rustyline::error::ReadlineError;

use crate::analytics;
use crate::sql::{self, OutputFormat};

const HELP: &str = "\
Statements end with `;` and may span lines. Tables: the run's outputs
(enriched_leads, provider_usage, rejects) and any --table; functions: all of
DataFusion's and leadflow's (.functions).

  .tables             the tables
  .schema NAME        a table's columns and types
  .mode table|csv|json
                      how results print (now: {mode})
  .timing on|off      print each statement's time (now: {timing})
  .queries            the shipped analytics queries
  .run NAME           run one of them (e.g. .run provider_scorecard)
  .functions          leadflow's SQL functions
  .help               this text
  .quit               leave (or Ctrl-D)
";

struct Session {
    ctx: SessionContext,
    writes: sql::Writes,
    mode: OutputFormat,
    timing: bool,
}

/// Reads statements from the terminal (or piped stdin) until `.quit` or EOF.
pub async fn run(
    ctx: SessionContext,
    tables: &[String],
    writes: sql::Writes,
    mode: OutputFormat,
) -> crate::Result<()> {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| crate::Error::Internal(format!("the shell's line editor: {e}")))?;
    let history =
        std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".leadflow_history"));
    if let Some(path) = &history {
        // No history yet is the usual first run.
        let _ = editor.load_history(path);
    }
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "leadflow {} SQL shell; tables: {}. `.help` for commands, `;` ends a statement.",
        env!("CARGO_PKG_VERSION"),
        if tables.is_empty() {
            "none (--data DIR)".to_string()
        } else {
            tables.join(", ")
        }
    );
    let mut session = Session {
        ctx,
        writes,
        mode,
        timing: true,
    };
    let mut statement = String::new();
    let mut lines = 0u64;
    loop {
        let prompt = if statement.is_empty() {
            "leadflow> "
        } else {
            "      ..> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                lines += 1;
                let trimmed = line.trim();
                if statement.is_empty() && trimmed.starts_with('.') {
                    let _ = editor.add_history_entry(trimmed);
                    if !session.command(trimmed, &mut out).await {
                        break;
                    }
                    continue;
                }
                if trimmed.is_empty() && statement.is_empty() {
                    continue;
                }
                statement.push_str(&line);
                statement.push('\n');
                if trimmed.ends_with(';') {
                    let text = std::mem::take(&mut statement);
                    let _ = editor.add_history_entry(text.trim());
                    session
                        .execute(text.trim().trim_end_matches(';'), &mut out)
                        .await;
                }
            }
            // Ctrl-C drops the statement being typed, as psql does.
            Err(ReadlineError::Interrupted) => statement.clear(),
            Err(ReadlineError::Eof) => break,
            // Stopping quietly would look like a script that ran to its end.
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(crate::Error::BadInput {
                    source_name: "stdin".into(),
                    reason: format!("not UTF-8 text after line {lines}: SQL is read as UTF-8"),
                });
            }
            Err(ReadlineError::Io(source)) => {
                return Err(crate::Error::Io {
                    path: "stdin".into(),
                    source,
                });
            }
            Err(e) => {
                return Err(crate::Error::Internal(format!("reading input: {e}")));
            }
        }
    }
    if !statement.trim().is_empty() {
        // Input ended mid-statement (a piped file without its last `;`).
        session.execute(statement.trim(), &mut out).await;
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

impl Session {
    async fn execute(&self, statement: &str, out: &mut impl Write) {
        let started = Instant::now();
        match sql::execute(&self.ctx, statement, self.writes, self.mode, out).await {
            Ok(rows) if self.timing => {
                let secs = started.elapsed().as_secs_f64();
                let _ = if self.mode == OutputFormat::Table {
                    writeln!(out, "({secs:.3} s)")
                } else {
                    writeln!(out, "-- {rows} rows in {secs:.3} s")
                };
            }
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
            }
        }
    }

    /// Runs a dot command; false when it asks to leave.
    async fn command(&mut self, line: &str, out: &mut impl Write) -> bool {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        let arg = words.next();
        let said = match (name, arg) {
            (".quit" | ".exit", _) => return false,
            (".help", _) => writeln!(
                out,
                "{}",
                HELP.replace("{mode}", self.mode_name())
                    .replace("{timing}", if self.timing { "on" } else { "off" })
            ),
            (".tables", _) => {
                let state = self.ctx.state();
                let defaults = &state.config().options().catalog;
                let tables = self
                    .ctx
                    .catalog(&defaults.default_catalog)
                    .and_then(|c| c.schema(&defaults.default_schema))
                    .map(|s| {
                        let mut t = s.table_names();
                        t.sort();
                        t
                    })
                    .unwrap_or_default();
                writeln!(out, "{}", tables.join("\n"))
            }
            (".schema", Some(table)) => match self.ctx.table(table).await {
                Ok(df) => {
                    let schema = df.schema();
                    let mut text = String::new();
                    for field in schema.fields() {
                        text.push_str(&format!(
                            "  {:<24} {}{}\n",
                            field.name(),
                            field.data_type(),
                            if field.is_nullable() { "" } else { " NOT NULL" }
                        ));
                    }
                    write!(out, "{text}")
                }
                Err(e) => writeln!(out, "error: {e}"),
            },
            (".schema", None) => writeln!(out, "error: .schema NAME (.tables lists them)"),
            (".mode", Some(mode)) => match mode {
                "table" => self.set_mode(OutputFormat::Table),
                "csv" => self.set_mode(OutputFormat::Csv),
                "json" => self.set_mode(OutputFormat::Json),
                _ => writeln!(out, "error: .mode table|csv|json"),
            },
            (".mode", None) => writeln!(out, "{}", self.mode_name()),
            (".timing", Some(on)) if on == "on" || on == "off" => {
                self.timing = on == "on";
                Ok(())
            }
            (".timing", _) => writeln!(out, "error: .timing on|off"),
            (".queries", _) => write!(out, "{}", analytics::list()),
            (".run", Some(query)) => match analytics::find(query) {
                Some(q) => {
                    self.execute(q.sql, out).await;
                    Ok(())
                }
                None => writeln!(
                    out,
                    "error: no shipped query `{query}` (.queries lists them)"
                ),
            },
            (".run", None) => writeln!(out, "error: .run NAME (.queries lists them)"),
            (".functions", _) => write!(out, "{}", sql::functions_help()),
            _ => writeln!(out, "error: unknown command `{name}` (.help lists them)"),
        };
        // A closed stdout ends the session as Ctrl-D would.
        said.is_ok()
    }

    fn set_mode(&mut self, mode: OutputFormat) -> std::io::Result<()> {
        self.mode = mode;
        Ok(())
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }
}
