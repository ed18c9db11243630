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
pub const DOC_SECTION: datafusion::logical_expr::DocSection = datafusion::logical_expr::DocSection {
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

/// Registers every leadflow UDF in `ctx`.
pub fn register_all(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
}
