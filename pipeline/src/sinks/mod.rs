//! Where results go: Parquet tables under an output directory or bucket.

pub mod parquet;
pub mod rejects;
