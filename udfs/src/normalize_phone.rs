//! `normalize_phone(raw, region)`: the E.164 form of a valid number, else NULL.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::StringBuilder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use leadflow_phone::{PhoneInfo, PhoneParser};

use crate::strings::{Regions, coerce_text_args, phone_args};

/// `normalize_phone(raw, region) → utf8`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizePhone {
    signature: Signature,
}

impl Default for NormalizePhone {
    fn default() -> Self {
        Self::new()
    }
}

impl NormalizePhone {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

pub(crate) static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        crate::DOC_SECTION,
        "Returns the E.164 form of a phone number when it is valid, NULL otherwise.",
        "normalize_phone(raw, region)",
    )
    .with_sql_example(
        "```sql\n> select normalize_phone('020 7183 8750', 'GB');\n+---------------+\n| +442071838750 |\n+---------------+\n```",
    )
    .with_argument("raw", "The phone number as written: any format, NULL allowed.")
    .with_argument(
        "region",
        "ISO 3166-1 alpha-2 region used for numbers written without a country code; optional.",
    )
    .with_related_udf("phone_info")
    .build()
});

impl ScalarUDFImpl for NormalizePhone {
    fn name(&self) -> &str {
        "normalize_phone"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_text_args(self.name(), &["raw", "region"], 1, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (raw, region) = phone_args(self.name(), &arrays)?;

        let mut out = StringBuilder::with_capacity(n, n * 13);
        let mut parser = PhoneParser::without_national();
        let mut info = PhoneInfo::default();
        let mut regions = Regions::default();
        for i in 0..n {
            let Some(raw) = raw.get(i) else {
                out.append_null();
                continue;
            };
            let region = regions.get(region.as_ref().and_then(|r| r.get(i)));
            parser.parse_into(raw, region, &mut info);
            out.append_option(info.valid_e164());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
