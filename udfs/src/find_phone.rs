//! `find_phone(full_name, email, company_website, country, user_tier, phone_raw
//! [, lead_id [, organization_id]])`: the provider waterfall for each row, as
//! an async UDF.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Builder, Int64Builder, ListArray,
    StringBuilder, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Fields};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use leadflow_waterfall::{LeadQuery, LeadRef, Lookup, OwnPhone, Waterfall};

use crate::SharedWaterfall;
use crate::attempts::{AttemptColumns, money};
use crate::fan_out::ask_distinct;
use crate::strings::{Ints, Strings, is_text};

/// The arguments, in order; the last two may be left out.
const ARGS: [&str; 8] = [
    "full_name",
    "email",
    "company_website",
    "country",
    "user_tier",
    "phone_raw",
    "lead_id",
    "organization_id",
];
const USER_TIER: usize = 4;
const OWN_PHONE: usize = 5;

/// `find_phone(...) → struct{phone_e164, provider, status, cost_usd, latency_ms, attempts}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FindPhone {
    signature: Signature,
    fields: Fields,
    waterfall: SharedWaterfall,
}

impl FindPhone {
    pub fn new(waterfall: Arc<Waterfall>) -> Self {
        Self {
            // Volatile: it calls paid services and must never be folded away.
            // Any arguments, checked in `return_type` with messages that name
            // them (an async UDF's wrapper does not consult `coerce_types`).
            signature: Signature::variadic_any(Volatility::Volatile),
            fields: leadflow_schemas::find_phone_fields(),
            waterfall: SharedWaterfall(waterfall),
        }
    }
}

impl FindPhone {
    /// Refuses, at planning and naming the argument, what the lookup cannot read.
    fn check_args(&self, arg_types: &[DataType]) -> Result<()> {
        if !(6..=ARGS.len()).contains(&arg_types.len()) {
            return plan_err!(
                "find_phone takes 6 to 8 arguments ({}), got {}",
                ARGS.join(", "),
                arg_types.len()
            );
        }
        for (i, (t, name)) in arg_types.iter().zip(ARGS).enumerate() {
            let (ok, want) = match i {
                USER_TIER => (t.is_integer() || matches!(t, DataType::Null), "an integer"),
                OWN_PHONE => (
                    is_text(t) || OwnPhones::is_phone_info(t),
                    "text or phone_info(...)",
                ),
                _ => (is_text(t), "text"),
            };
            if !ok {
                return plan_err!(
                    "find_phone: argument {} ({name}) must be {want}, got {t}",
                    i + 1
                );
            }
        }
        Ok(())
    }
}

pub(crate) static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        crate::DOC_SECTION,
        "Finds a phone for each lead by asking the configured providers in order (by priority, \
         or by expected cost to a hit under `[waterfall] order = \"adaptive\"`); \
         the first valid number wins and later providers are not called. Returns \
         `phone_e164`, `provider`, `status` (found, not_found, cached, skipped_has_phone, \
         skipped_tier, skipped_value, rate_limited, budget_exhausted, error, or not_run when \
         no provider is configured), `cost_usd`, `latency_ms`, `attempts` (one struct per \
         provider call or skip: provider, attempt, outcome, http_status, cost_usd, \
         latency_ms, started_at, error, policy) and `policy` (the order the providers \
         were asked in: priority, or adaptive under `[waterfall] order = \"adaptive\"`). Every call and skip is also written to `provider_usage` \
         by the run, whatever the query selects, under the lead's `lead_id` and \
         `organization_id` when they are passed. Rows are looked up concurrently; \
         identical leads in a batch are looked up once; the cache is consulted first. \
         A provider's failure is a status, never a failed query. Paid calls cannot be \
         made conditional in SQL (CASE, COALESCE, AND/OR evaluate it for every row): \
         find_phone skips leads with a valid phone itself, and WHERE picks rows.",
        "find_phone(full_name, email, company_website, country, user_tier, phone_raw[, lead_id[, organization_id]])",
    )
    .with_sql_example(
        "```sql\n> select f['phone_e164'], f['provider'], f['status']\n  from (select find_phone(full_name, email, company_website, country, user_tier, phone_raw) as f from leads);\n```",
    )
    .with_argument("full_name", "The lead's full name.")
    .with_argument("email", "The lead's work email.")
    .with_argument("company_website", "The company's website or domain.")
    .with_argument(
        "country",
        "ISO 3166-1 alpha-2; the region providers' national numbers are read in.",
    )
    .with_argument(
        "user_tier",
        "Tier of the lead's owner; providers with a higher min_user_tier are skipped.",
    )
    .with_argument(
        "phone_raw",
        "The lead's own phone, as written or as `phone_info(phone_raw, country)` already \
         parsed it (then it is not parsed again); when it is valid the lead is not looked \
         up (skipped_has_phone).",
    )
    .with_argument(
        "lead_id",
        "Optional: the lead's id, written on its provider_usage rows.",
    )
    .with_argument(
        "organization_id",
        "Optional: the organization billed, written on its provider_usage rows.",
    )
    .with_related_udf("phone_line_type")
    .build()
});

impl ScalarUDFImpl for FindPhone {
    fn name(&self) -> &str {
        "find_phone"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.check_args(arg_types)?;
        Ok(DataType::Struct(self.fields.clone()))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("find_phone is async and runs through DataFusion's async function support")
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for FindPhone {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        if !self.waterfall.calls_providers() {
            // Nobody to ask: the batch's answer without a query per row.
            let not_run = Lookup::not_run();
            let mut out = FindPhoneBuilder::new(n);
            for _ in 0..n {
                out.append(&not_run);
            }
            return Ok(ColumnarValue::Array(out.finish(&self.fields)?));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let name = self.name();
        let text = |i: usize| match arrays.get(i) {
            Some(array) => Strings::new(name, array),
            None => Ok(Strings::Null),
        };
        let (full_name, email, website) = (text(0)?, text(1)?, text(2)?);
        let country = text(3)?;
        let phone = OwnPhones::new(&arrays[OWN_PHONE])?;
        let (lead_id, organization_id) = (text(6)?, text(7)?);
        let tier = Ints::new(name, &arrays[USER_TIER])?;

        // Identical leads in the batch are asked about once, on behalf of the
        // first of them; the others get its answer as `cached`.
        let leads = (0..n).map(|i| {
            Some((
                full_name.get(i),
                email.get(i),
                website.get(i),
                country.get(i),
                tier.get(i),
                phone.get(i),
            ))
        });
        let waterfall = &self.waterfall;
        let looked_up = ask_distinct(leads, waterfall.concurrency(), |row, lead| {
            let (full_name, email, website, country, user_tier, phone) = lead;
            let query = LeadQuery {
                full_name: full_name.unwrap_or("").to_string(),
                email: email.unwrap_or("").to_string(),
                company_website: website.unwrap_or("").to_string(),
                country: country.map(str::to_string),
                user_tier,
                own_phone: phone,
            };
            let owner = LeadRef {
                lead_id: lead_id.get(row).map(Arc::from),
                organization_id: organization_id.get(row).map(Arc::from),
            };
            async move { waterfall.find(&query, &owner).await }
        })
        .await;

        let mut out = FindPhoneBuilder::new(n);
        for (lookup, asked) in looked_up.rows().flatten() {
            if asked {
                out.append(lookup);
            } else {
                out.append(&lookup.as_cached());
            }
        }
        Ok(ColumnarValue::Array(out.finish(&self.fields)?))
    }
}

/// The lead's own phone column: text to parse, or `phone_info`'s answers.
enum OwnPhones<'a> {
    Raw(Strings<'a>),
    /// The struct column and its `valid` child.
    Parsed(&'a ArrayRef, &'a BooleanArray),
}

impl<'a> OwnPhones<'a> {
    /// Whether `t` is `phone_info`'s struct (what find_phone reads of it: `valid`).
    fn is_phone_info(t: &DataType) -> bool {
        matches!(t, DataType::Struct(fields)
            if fields.find("valid").is_some_and(|(_, f)| f.data_type() == &DataType::Boolean))
    }

    fn new(array: &'a ArrayRef) -> Result<Self> {
        if !Self::is_phone_info(array.data_type()) {
            return Ok(OwnPhones::Raw(Strings::new("find_phone", array)?));
        }
        let valid = array
            .as_struct()
            .column_by_name("valid")
            .and_then(|v| v.as_boolean_opt());
        match valid {
            Some(valid) => Ok(OwnPhones::Parsed(array, valid)),
            None => exec_err!("find_phone: phone_info's struct without `valid`"),
        }
    }

    /// Row `i`'s phone; a NULL struct or `valid` is no phone.
    fn get(&self, i: usize) -> OwnPhone {
        match self {
            OwnPhones::Raw(raw) => raw
                .get(i)
                .map_or(OwnPhone::None, |r| OwnPhone::Raw(r.into())),
            OwnPhones::Parsed(row, valid) if row.is_valid(i) && valid.is_valid(i) => {
                OwnPhone::Parsed {
                    valid: valid.value(i),
                }
            }
            OwnPhones::Parsed(..) => OwnPhone::None,
        }
    }
}

/// Builds the `find_phone` struct column, attempts and all.
struct FindPhoneBuilder {
    phone: StringBuilder,
    provider: StringBuilder,
    status: StringBuilder,
    cost: Decimal128Builder,
    latency: Int64Builder,
    offsets: Vec<i32>,
    attempts: AttemptColumns,
    policy: StringBuilder,
}

impl FindPhoneBuilder {
    fn new(n: usize) -> Self {
        Self {
            phone: StringBuilder::with_capacity(n, n * 13),
            provider: StringBuilder::with_capacity(n, n * 6),
            status: StringBuilder::with_capacity(n, n * 9),
            cost: Decimal128Builder::with_capacity(n),
            latency: Int64Builder::with_capacity(n),
            offsets: {
                let mut o = Vec::with_capacity(n + 1);
                o.push(0);
                o
            },
            attempts: AttemptColumns::new(n),
            policy: StringBuilder::with_capacity(n, n * 8),
        }
    }

    fn append(&mut self, lookup: &Lookup) {
        self.phone.append_option(lookup.phone_e164.as_deref());
        self.provider.append_option(lookup.provider.as_deref());
        self.status.append_value(lookup.status.as_str());
        self.cost.append_value(i128::from(lookup.cost_micros));
        self.latency.append_value(lookup.latency_ms);
        for a in &lookup.attempts {
            self.attempts.append(a);
        }
        let last = *self.offsets.last().expect("starts with 0");
        self.offsets.push(last + lookup.attempts.len() as i32);
        self.policy.append_option(lookup.policy.map(|p| p.as_str()));
    }

    fn finish(mut self, fields: &Fields) -> Result<ArrayRef> {
        let DataType::List(item) = fields[5].data_type() else {
            return exec_err!("find_phone: attempts must be a list");
        };
        let attempts = ListArray::try_new(
            item.clone(),
            OffsetBuffer::new(self.offsets.into()),
            Arc::new(self.attempts.finish()?),
            None,
        )?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.phone.finish()),
            Arc::new(self.provider.finish()),
            Arc::new(self.status.finish()),
            Arc::new(money(self.cost.finish())?),
            Arc::new(self.latency.finish()),
            Arc::new(attempts),
            Arc::new(self.policy.finish()),
        ];
        Ok(Arc::new(StructArray::try_new(
            fields.clone(),
            columns,
            None,
        )?))
    }
}
