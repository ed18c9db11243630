//! DataFusion UDFs of leadflow, one per file: `phone_info` and
//! `normalize_phone` (scalar), `find_phone` and `phone_line_type` (async,
//! over a [`Waterfall`]). [`register_all`] and [`register_waterfall`] put them
//! in a `SessionContext`; [`documentation`] lists them all.

mod array_length;
mod attempts;
mod conditional;
mod fan_out;
mod find_phone;
mod normalize_phone;
mod phone_info;
mod phone_line_type;
mod strings;

use std::sync::Arc;

use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::{Documentation, ScalarUDF};
use datafusion::prelude::SessionContext;
use leadflow_waterfall::Waterfall;

pub use array_length::ArrayLength;
pub use attempts::AttemptColumns;
pub use conditional::RefuseConditionalAsync;
pub use find_phone::FindPhone;
pub use normalize_phone::NormalizePhone;
pub use phone_info::{NationalUnread, PhoneInfoUdf};
pub use phone_line_type::PhoneLineType;

/// The doc section every leadflow UDF is listed under.
pub const DOC_SECTION: datafusion::logical_expr::DocSection =
    datafusion::logical_expr::DocSection {
        include: true,
        label: "Phone functions",
        description: Some("Parse, validate and normalize phone numbers to E.164."),
    };

/// The waterfall an async UDF asks: two UDFs are the same function exactly
/// when they share one waterfall (providers, limits, cache), so equality and
/// hashing go by the `Arc`'s address.
#[derive(Debug, Clone)]
pub(crate) struct SharedWaterfall(Arc<Waterfall>);

impl PartialEq for SharedWaterfall {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedWaterfall {}

impl std::hash::Hash for SharedWaterfall {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

impl std::ops::Deref for SharedWaterfall {
    type Target = Arc<Waterfall>;

    fn deref(&self) -> &Arc<Waterfall> {
        &self.0
    }
}

/// Registers `find_phone` and `phone_line_type` over `waterfall`.
pub fn register_waterfall(ctx: &SessionContext, waterfall: Arc<Waterfall>) {
    ctx.register_udf(
        AsyncScalarUDF::new(Arc::new(FindPhone::new(waterfall.clone()))).into_scalar_udf(),
    );
    ctx.register_udf(
        AsyncScalarUDF::new(Arc::new(PhoneLineType::new(waterfall))).into_scalar_udf(),
    );
}

/// Every leadflow UDF's name and documentation, as `leadflow functions` lists them.
pub fn documentation() -> [(&'static str, &'static Documentation); 4] {
    [
        ("phone_info", &phone_info::DOC),
        ("normalize_phone", &normalize_phone::DOC),
        ("find_phone", &find_phone::DOC),
        ("phone_line_type", &phone_line_type::DOC),
    ]
}

/// Every leadflow scalar (synchronous) UDF, and DataFusion's
/// `array_length` with a faster one-argument form ([`ArrayLength`]).
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(PhoneInfoUdf::new()),
        ScalarUDF::from(NormalizePhone::new()),
        ScalarUDF::from(ArrayLength::new()),
    ]
}

/// Optimizer passes that undo "parse once": DataFusion 55 pushes struct field
/// access (`p['e164']`) below the projection that defines
/// `p = phone_info(...)`, substituting the UDF call into every field access,
/// so `enrich.sql` would parse each phone five times. Pinned by
/// `tests/sql.rs::the_enrichment_shape_parses_each_phone_once`.
pub const DUPLICATING_RULES: [&str; 2] = ["extract_leaf_expressions", "push_down_leaf_projections"];

/// Registers every leadflow UDF in `ctx`, refuses paid calls under a
/// condition ([`RefuseConditionalAsync`]), skips formatting national
/// numbers no part of a plan reads ([`NationalUnread`]), and removes the optimizer passes
/// that would evaluate the UDFs once per struct field ([`DUPLICATING_RULES`]).
pub fn register_all(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
    ctx.add_analyzer_rule(Arc::new(RefuseConditionalAsync));
    ctx.add_optimizer_rule(Arc::new(NationalUnread));
    for rule in DUPLICATING_RULES {
        ctx.remove_optimizer_rule(rule);
    }
}
