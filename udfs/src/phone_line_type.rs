//! `phone_line_type(e164[, lead_id[, organization_id]])`: line type and
//! carrier of a number, from the configured line-type providers (Twilio
//! Lookup v2), as an async UDF; its calls are billed to the lead passed.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringBuilder, StructArray};
use datafusion::arrow::datatypes::{DataType, Fields};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use leadflow_waterfall::{LeadRef, LineTypeStatus, Waterfall};

use crate::SharedWaterfall;
use crate::fan_out::ask_distinct;
use crate::strings::{Strings, is_text};

/// `phone_line_type(e164) → struct{line_type, carrier_name, mcc, mnc, status}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PhoneLineType {
    signature: Signature,
    fields: Fields,
    waterfall: SharedWaterfall,
}

impl PhoneLineType {
    pub fn new(waterfall: Arc<Waterfall>) -> Self {
        Self {
            // Volatile: it calls a paid service. One to three text arguments,
            // checked in `return_type` with a message naming them.
            signature: Signature::variadic_any(Volatility::Volatile),
            fields: leadflow_schemas::line_type_fields(),
            waterfall: SharedWaterfall(waterfall),
        }
    }
}

pub(crate) static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        crate::DOC_SECTION,
        "Asks the configured line-type providers (Twilio Lookup v2) for a number's \
         `line_type` (mobile, landline, fixedVoip, nonFixedVoip, tollFree, …), \
         `carrier_name`, `mcc` and `mnc`, and its `status`: why the others are NULL when \
         they are: found, unknown_number (the provider does not know it), cached, \
         budget_exhausted, rate_limited, circuit_open, error, not_run (no line-type \
         provider is configured) or no_phone (a NULL or empty number). Each distinct \
         number in a batch is asked once, and answers are cached per number like \
         lookups. Every call is written to `provider_usage` under the `lead_id` and \
         `organization_id` passed.",
        "phone_line_type(e164[, lead_id[, organization_id]])",
    )
    .with_sql_example(
        "```sql\n> select phone_line_type(phone_e164)['line_type'] from enriched;\n```",
    )
    .with_argument(
        "e164",
        "A phone number in E.164, e.g. `phone_e164` or `found_phone_e164`.",
    )
    .with_argument(
        "lead_id",
        "Optional: the lead the call is for, in `provider_usage`.",
    )
    .with_argument(
        "organization_id",
        "Optional: the organization billed for the call, in `provider_usage`.",
    )
    .with_related_udf("find_phone")
    .build()
});

impl ScalarUDFImpl for PhoneLineType {
    fn name(&self) -> &str {
        "phone_line_type"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !(1..=3).contains(&arg_types.len()) {
            return plan_err!(
                "phone_line_type takes 1 to 3 arguments (e164, lead_id, organization_id), got {}",
                arg_types.len()
            );
        }
        let names = ["e164", "lead_id", "organization_id"];
        if let Some((t, name)) = arg_types.iter().zip(names).find(|(t, _)| !is_text(t)) {
            return plan_err!("phone_line_type's {name} must be text, got {t}");
        }
        Ok(DataType::Struct(self.fields.clone()))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("phone_line_type is async and runs through DataFusion's async function support")
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for PhoneLineType {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let name = self.name();
        let text = |i: usize| match arrays.get(i) {
            Some(array) => Strings::new(name, array),
            None => Ok(Strings::Null),
        };
        let (numbers, lead_id, organization_id) = (text(0)?, text(1)?, text(2)?);

        // Each distinct number is asked about once; with no line-type
        // provider, nothing is.
        let ask = self.waterfall.has_line_type_providers();
        let numbers = (0..n).map(|i| {
            numbers
                .get(i)
                .filter(|number| ask && !number.trim().is_empty())
        });
        let waterfall = &self.waterfall;
        // A number in the batch twice is paid for once, for its first lead.
        let described = ask_distinct(numbers, waterfall.concurrency(), |row, number| {
            let owner = LeadRef {
                lead_id: lead_id.get(row).map(Arc::from),
                organization_id: organization_id.get(row).map(Arc::from),
            };
            async move { waterfall.line_type(number, &owner).await }
        })
        .await;

        // Every row says why it has no line type: no number, no provider,
        // or how the lookup of its number ended.
        let unasked = if ask {
            LineTypeStatus::NoPhone
        } else {
            LineTypeStatus::NotRun
        };
        let mut line_type = StringBuilder::with_capacity(n, n * 6);
        let mut carrier = StringBuilder::with_capacity(n, n * 12);
        let mut mcc = StringBuilder::with_capacity(n, n * 3);
        let mut mnc = StringBuilder::with_capacity(n, n * 3);
        let mut status = StringBuilder::with_capacity(n, n * 8);
        for row in described.rows() {
            let (described, why) = match row {
                Some((lookup, true)) => (lookup.line_type.as_ref(), lookup.status),
                Some((lookup, false)) => (lookup.line_type.as_ref(), lookup.status.as_cached()),
                None => (None, unasked),
            };
            line_type.append_option(described.and_then(|d| d.line_type.as_deref()));
            carrier.append_option(described.and_then(|d| d.carrier_name.as_deref()));
            mcc.append_option(described.and_then(|d| d.mcc.as_deref()));
            mnc.append_option(described.and_then(|d| d.mnc.as_deref()));
            status.append_value(why.as_str());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(line_type.finish()),
            Arc::new(carrier.finish()),
            Arc::new(mcc.finish()),
            Arc::new(mnc.finish()),
            Arc::new(status.finish()),
        ];
        let out = StructArray::try_new(self.fields.clone(), columns, None)?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
