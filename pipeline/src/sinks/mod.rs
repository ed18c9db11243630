//! Where results go: Parquet tables (`enriched_leads`, `provider_usage`,
//! `rejects`) under an output directory or bucket.

pub mod parquet;
pub mod provider_usage;
pub mod rejects;
pub mod usage_log;
