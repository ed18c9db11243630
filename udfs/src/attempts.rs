//! Provider attempts as Arrow columns, in the shape of
//! [`leadflow_schemas::attempt_fields`].

use std::sync::{Arc, LazyLock};

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
///
/// The builders are made at the first attempt: a batch whose leads were all
/// cached, skipped or not run (most of serve's small batches) finishes as
/// one shared empty struct, not nine builders made, filled with nothing and
/// finished (about 14k instructions an execution, ~2% of a cached lookup
/// at 16 connections).
pub struct AttemptColumns {
    capacity: usize,
    builders: Option<Builders>,
}

struct Builders {
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

/// No attempts, as [`AttemptColumns::finish`] builds them (arrays are
/// immutable, so every empty batch can share it).
static NO_ATTEMPTS: LazyLock<StructArray> = LazyLock::new(|| {
    Builders::new(0)
        .finish()
        .expect("the attempt columns match attempt_fields")
});

impl AttemptColumns {
    /// Room for `n` attempts, made at the first.
    pub fn new(n: usize) -> Self {
        Self {
            capacity: n,
            builders: None,
        }
    }

    pub fn append(&mut self, a: &Attempt) {
        let b = self
            .builders
            .get_or_insert_with(|| Builders::new(self.capacity));
        b.provider.append_value(&a.provider);
        b.attempt.append_value(a.attempt);
        b.outcome.append_value(a.outcome.as_str());
        b.http_status.append_option(a.http_status);
        b.cost.append_value(i128::from(a.cost_micros));
        b.latency.append_value(a.latency_ms);
        b.started_at.append_value(a.started_at);
        b.error.append_option(a.error.as_deref());
        b.policy.append_option(a.policy.map(|p| p.as_str()));
    }

    /// The columns, as the struct of [`leadflow_schemas::attempt_fields`].
    pub fn finish(self) -> Result<StructArray> {
        match self.builders {
            Some(builders) => builders.finish(),
            None => Ok(NO_ATTEMPTS.clone()),
        }
    }
}

impl Builders {
    fn new(n: usize) -> Self {
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

    fn finish(mut self) -> Result<StructArray> {
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
