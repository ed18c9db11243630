//! DataFusion UDFs of leadflow, one per file: `phone_info` and
//! `normalize_phone` (more with the waterfall). [`register_all`] puts them in a
//! `SessionContext`; [`all`] lists them with their documentation.

mod normalize_phone;
mod phone_info;
mod strings;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub use normalize_phone::NormalizePhone;
pub use phone_info::PhoneInfoUdf;

/// The doc section every leadflow UDF is listed under.
pub const DOC_SECTION: datafusion::logical_expr::DocSection =
    datafusion::logical_expr::DocSection {
        include: true,
        label: "Phone functions",
        description: Some("Parse, validate and normalize phone numbers to E.164."),
    };

/// Every leadflow scalar UDF.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(PhoneInfoUdf::new()),
        ScalarUDF::from(NormalizePhone::new()),
    ]
}

/// Optimizer passes that undo "parse once": DataFusion 55 pushes struct field
/// access (`p['e164']`) below the projection that defines
/// `p = phone_info(...)`, substituting the UDF call into every field access,
/// so `enrich.sql` would parse each phone five times. Pinned by
/// `tests/sql.rs::the_enrichment_shape_parses_each_phone_once`.
pub const DUPLICATING_RULES: [&str; 2] = ["extract_leaf_expressions", "push_down_leaf_projections"];

/// Registers every leadflow UDF in `ctx` and removes the optimizer passes
/// that would evaluate them once per struct field ([`DUPLICATING_RULES`]).
pub fn register_all(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
    for rule in DUPLICATING_RULES {
        ctx.remove_optimizer_rule(rule);
    }
}
