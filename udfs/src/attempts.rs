//! Provider attempts as Arrow columns, in the shape of
//! [`leadflow_schemas::attempt_fields`].

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Decimal128Array, Decimal128Builder, Int32Builder, Int64Builder, StringBuilder,
    StructArray, TimestampMicrosecondBuilder,
};
use datafusion::common::Result;
use leadflow_waterfall::Attempt;

/// Money as `DECIMAL(12,6)` µUSD.
pub(crate) fn money(values: Decimal128Array) -> Result<Decimal128Array> {
    Ok(values.with_precision_and_scale(12, 6)?)
}

/// Builds provider attempts into Arrow columns: the `attempts` of
/// `find_phone`, and the attempt columns of `provider_usage`.
pub struct AttemptColumns {
    provider: StringBuilder,
    attempt: Int32Builder,
    outcome: StringBuilder,
    http_status: Int32Builder,
    cost: Decimal128Builder,
    latency: Int64Builder,
    started_at: TimestampMicrosecondBuilder,
    error: StringBuilder,
    policy: StringBuilder,
}

impl AttemptColumns {
    /// Room for `n` attempts.
    pub fn new(n: usize) -> Self {
        Self {
            provider: StringBuilder::with_capacity(n, n * 6),
            attempt: Int32Builder::with_capacity(n),
            outcome: StringBuilder::with_capacity(n, n * 4),
            http_status: Int32Builder::with_capacity(n),
            cost: Decimal128Builder::with_capacity(n),
            latency: Int64Builder::with_capacity(n),
            started_at: TimestampMicrosecondBuilder::with_capacity(n),
            error: StringBuilder::new(),
            policy: StringBuilder::with_capacity(n, n * 8),
        }
    }

    pub fn append(&mut self, a: &Attempt) {
        self.provider.append_value(&a.provider);
        self.attempt.append_value(a.attempt);
        self.outcome.append_value(a.outcome.as_str());
        self.http_status.append_option(a.http_status);
        self.cost.append_value(i128::from(a.cost_micros));
        self.latency.append_value(a.latency_ms);
        self.started_at.append_value(a.started_at);
        self.error.append_option(a.error.as_deref());
        self.policy.append_option(a.policy.map(|p| p.as_str()));
    }

    /// The columns, as the struct of [`leadflow_schemas::attempt_fields`].
    pub fn finish(mut self) -> Result<StructArray> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.provider.finish()),
            Arc::new(self.attempt.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(money(self.cost.finish())?),
            Arc::new(self.latency.finish()),
            Arc::new(
                self.started_at
                    .finish()
                    .with_timezone(leadflow_schemas::UTC),
            ),
            Arc::new(self.error.finish()),
            Arc::new(self.policy.finish()),
        ];
        let fields = leadflow_schemas::attempt_fields();
        debug_assert_eq!(fields.len(), columns.len());
        Ok(StructArray::try_new(fields, columns, None)?)
    }
}
