//! Integration tests of the pipeline, in one binary so the build links once.

mod csv_edge_cases;
mod publish;
mod run_end_to_end;
mod s3;
mod stream;
mod support;
mod waterfall_run;
