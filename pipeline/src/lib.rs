//! The leadflow pipeline: sources (files, object storage), the enrichment
//! query on DataFusion, Parquet sinks, and the commands of the `leadflow`
//! binary built on them (`run`, `stream`, `produce`, `sql`, `status`, …).

pub mod analytics;
pub mod batch;
pub mod config;
pub mod engine;
pub mod error;
pub mod lead;
pub mod learn;
pub mod privacy;
pub mod produce;
pub mod providers;
pub mod publish;
pub mod report;
pub mod run;
pub mod serve;
pub mod shell;
pub mod sinks;
pub mod sources;
pub mod sql;
pub mod storage;
pub mod stream;
pub mod telemetry;

pub use error::{Error, Result};
