//! `phone_info(raw, region)`: one parse of a phone number, every field of it.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, BooleanBuilder, StringBuilder, StructArray};
use datafusion::arrow::datatypes::{DataType, Fields};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use leadflow_phone::{PhoneInfo, PhoneParser};

use crate::strings::{Regions, coerce_text_args, phone_args};

/// `phone_info(raw, region) → struct{e164, valid, possible, country, type, national, error}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PhoneInfoUdf {
    signature: Signature,
    fields: Fields,
}

impl Default for PhoneInfoUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl PhoneInfoUdf {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            fields: leadflow_schemas::phone_info_fields(),
        }
    }
}

pub(crate) static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        crate::DOC_SECTION,
        "Parses a phone number once and returns every fact about it: `e164` (E.164 form, \
         NULL when it does not parse), `valid`, `possible`, `country` (ISO alpha-2 of the \
         number), `type` (mobile, fixed_line, fixed_line_or_mobile, toll_free, voip, …), \
         `national` (national format) and `error` (NULL when valid; else missing, \
         not_a_number, invalid_country_code, too_short, too_long, too_short_after_idd or \
         invalid_number). Agrees with Google's libphonenumber.",
        "phone_info(raw, region)",
    )
    .with_sql_example(
        "```sql\n> select phone_info('(415) 555-0132', 'US')['e164'];\n+--------------+\n| +14155550132 |\n+--------------+\n```",
    )
    .with_argument("raw", "The phone number as written: any format, NULL allowed.")
    .with_argument(
        "region",
        "ISO 3166-1 alpha-2 region used for numbers written without a country code; optional.",
    )
    .with_related_udf("normalize_phone")
    .build()
});

impl ScalarUDFImpl for PhoneInfoUdf {
    fn name(&self) -> &str {
        "phone_info"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_text_args(self.name(), &["raw", "region"], 1, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(self.fields.clone()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (raw, region) = phone_args(self.name(), &arrays)?;

        let mut e164 = StringBuilder::with_capacity(n, n * 13);
        let mut valid = BooleanBuilder::with_capacity(n);
        let mut possible = BooleanBuilder::with_capacity(n);
        let mut country = StringBuilder::with_capacity(n, n * 2);
        let mut kind = StringBuilder::with_capacity(n, n * 10);
        let mut national = StringBuilder::with_capacity(n, n * 14);
        let mut error = StringBuilder::with_capacity(n, n * 4);

        let mut parser = PhoneParser::default();
        let mut info = PhoneInfo::default();
        let mut regions = Regions::default();
        for i in 0..n {
            let region = regions.get(region.as_ref().and_then(|r| r.get(i)));
            parser.parse_into(raw.get(i).unwrap_or(""), region, &mut info);
            let parsed = info.parsed;
            e164.append_option(parsed.then_some(info.e164.as_str()));
            valid.append_value(info.valid);
            possible.append_value(info.possible);
            country.append_option(info.country.map(|c| c.as_region_str()).as_deref());
            kind.append_option(info.phone_type.map(|t| t.as_str()));
            national.append_option(parsed.then_some(info.national.as_str()));
            error.append_option(info.error.map(|e| e.as_str()));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(e164.finish()),
            Arc::new(valid.finish()),
            Arc::new(possible.finish()),
            Arc::new(country.finish()),
            Arc::new(kind.finish()),
            Arc::new(national.finish()),
            Arc::new(error.finish()),
        ];
        let out = StructArray::try_new(self.fields.clone(), columns, None)?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
