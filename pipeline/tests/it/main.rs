//! Integration tests of the pipeline, in one binary so the build links once.

mod adaptive;
mod analytics;
mod batch;
mod closed_streams;
mod commit_log;
mod csv_edge_cases;
mod disk_full;
mod forget;
mod privacy;
mod publish;
mod redis_tls;
mod report;
mod run_end_to_end;
mod s3;
mod serve;
mod sql_committed;
mod sql_guards;
mod sql_shell;
mod stream;
mod support;
mod usage_audit;
mod waterfall_run;
