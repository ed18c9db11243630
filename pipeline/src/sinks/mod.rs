//! Where results go: Parquet tables (`enriched_leads`, `provider_usage`,
//! `rejects`) under an output directory or bucket.

pub mod parquet;
pub mod provider_usage;
pub mod rejects;
pub mod usage_log;

/// Writes a batch of work's provider calls (`provider_usage`, each call
/// counted in the metrics and passed to `on_call`) and its `rejects`
/// (stamped `rejected_at`) into `staging`, naming the files with `sink`:
/// what a stream cut and a `serve` epoch commit beside their leads.
pub(crate) async fn write_usage_and_rejects(
    staging: &crate::storage::Location,
    sink: impl Fn(&str, Option<&str>) -> parquet::ParquetSinkConfig,
    (run_id, rejected_at): (&str, i64),
    usage: &[leadflow_waterfall::ProviderUsage],
    rejects: &[rejects::Reject],
    mut on_call: impl FnMut(&leadflow_waterfall::Attempt),
) -> crate::error::Result<Vec<parquet::WrittenFile>> {
    use parquet::PartitionedWriter;
    let mut files = Vec::new();
    if !usage.is_empty() {
        let schema = leadflow_schemas::provider_usage_schema();
        let mut writer = PartitionedWriter::new(
            staging.clone(),
            sink("provider_usage", Some("started_at")),
            schema.clone(),
        );
        let mut batcher = provider_usage::UsageBatcher::new(schema, run_id);
        for row in usage {
            on_call(&row.attempt);
            crate::telemetry::attempt(&row.attempt);
            batcher.append(row, &mut writer).await?;
        }
        batcher.flush(&mut writer).await?;
        files.extend(writer.close().await?);
    }
    if !rejects.is_empty() {
        let mut batcher = rejects::RejectBatcher::new(run_id, rejected_at);
        for r in rejects {
            batcher.push(r);
        }
        let mut writer = PartitionedWriter::new(
            staging.clone(),
            sink("rejects", None),
            leadflow_schemas::reject_schema(),
        );
        writer.write(&batcher.finish()?).await?;
        files.extend(writer.close().await?);
    }
    Ok(files)
}
