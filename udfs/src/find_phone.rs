//! `find_phone(full_name, email, company_website, country, user_tier, phone_raw)`:
//! the provider waterfall for each row, as an async UDF.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Decimal128Builder, Int32Builder, Int64Builder, ListArray, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Fields};
use datafusion::common::utils::take_function_args;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use futures::StreamExt;
use leadflow_waterfall::{Attempt, LeadQuery, Lookup, Waterfall};

use crate::SharedWaterfall;
use crate::strings::{Ints, Strings, is_text};

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
            signature: Signature::any(6, Volatility::Volatile),
            fields: leadflow_schemas::find_phone_fields(),
            waterfall: SharedWaterfall(waterfall),
        }
    }
}

pub(crate) static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        crate::DOC_SECTION,
        "Finds a phone for each lead by asking the configured providers in priority order; \
         the first valid number wins and later providers are not called. Returns \
         `phone_e164`, `provider`, `status` (found, not_found, cached, skipped_has_phone, \
         skipped_tier, rate_limited, budget_exhausted, error, or not_run when no provider \
         is configured), `cost_usd`, `latency_ms` and `attempts` (one struct per provider \
         call or skip: provider, attempt, outcome, http_status, cost_usd, latency_ms, \
         started_at, error). Rows are looked up concurrently; identical leads in a batch \
         are looked up once; the cache is consulted first. A provider's failure is a \
         status, never a failed query.",
        "find_phone(full_name, email, company_website, country, user_tier, phone_raw)",
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
        "The lead's own phone; when it is valid the lead is not looked up (skipped_has_phone).",
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
        let names = [
            "full_name",
            "email",
            "company_website",
            "country",
            "user_tier",
            "phone_raw",
        ];
        for (i, (t, name)) in arg_types.iter().zip(names).enumerate() {
            let ok = if i == 4 {
                t.is_integer() || matches!(t, DataType::Null)
            } else {
                is_text(t)
            };
            if !ok {
                return plan_err!(
                    "find_phone: argument {} ({name}) must be {}, got {t}",
                    i + 1,
                    if i == 4 { "an integer" } else { "text" }
                );
            }
        }
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
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let name = self.name();
        let [full_name, email, website, country, tier, phone] = take_function_args(name, &arrays)?;
        let (full_name, email, website) = (
            Strings::new(name, full_name)?,
            Strings::new(name, email)?,
            Strings::new(name, website)?,
        );
        let (country, phone) = (Strings::new(name, country)?, Strings::new(name, phone)?);
        let tier = Ints::new(name, tier)?;

        // Identical leads in the batch are looked up once.
        let mut unique: Vec<LeadQuery> = Vec::new();
        let mut index: HashMap<LeadQuery, usize> = HashMap::new();
        let mut row_lookup = Vec::with_capacity(n);
        for i in 0..n {
            let lead = LeadQuery {
                full_name: full_name.get(i).unwrap_or("").to_string(),
                email: email.get(i).unwrap_or("").to_string(),
                company_website: website.get(i).unwrap_or("").to_string(),
                country: country.get(i).map(str::to_string),
                user_tier: tier.get(i),
                phone_raw: phone.get(i).map(str::to_string),
            };
            let at = match index.get(&lead) {
                Some(&at) => at,
                None => {
                    index.insert(lead.clone(), unique.len());
                    unique.push(lead);
                    unique.len() - 1
                }
            };
            row_lookup.push(at);
        }
        drop(index);

        let mut lookups: Vec<Option<Lookup>> = vec![None; unique.len()];
        let unique = Arc::new(unique);
        let mut done = futures::stream::iter(0..unique.len())
            .map(|i| {
                let (waterfall, unique) = (self.waterfall.clone(), unique.clone());
                async move { (i, waterfall.find(&unique[i]).await) }
            })
            .buffer_unordered(self.waterfall.concurrency());
        while let Some((i, lookup)) = done.next().await {
            lookups[i] = Some(lookup);
        }
        drop(done);

        let mut out = FindPhoneBuilder::new(n);
        let mut served = vec![false; unique.len()];
        for at in row_lookup {
            let lookup = lookups[at].as_ref().expect("every lead looked up");
            if std::mem::replace(&mut served[at], true) {
                out.append(&lookup.as_cached());
            } else {
                out.append(lookup);
            }
        }
        Ok(ColumnarValue::Array(out.finish(&self.fields)?))
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
        ];
        Ok(Arc::new(StructArray::try_new(
            fields.clone(),
            columns,
            None,
        )?))
    }
}

fn money(
    values: datafusion::arrow::array::Decimal128Array,
) -> Result<datafusion::arrow::array::Decimal128Array> {
    Ok(values.with_precision_and_scale(12, 6)?)
}

/// The columns of the attempt struct.
struct AttemptColumns {
    provider: StringBuilder,
    attempt: Int32Builder,
    outcome: StringBuilder,
    http_status: Int32Builder,
    cost: Decimal128Builder,
    latency: Int64Builder,
    started_at: TimestampMicrosecondBuilder,
    error: StringBuilder,
}

impl AttemptColumns {
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
        }
    }

    fn append(&mut self, a: &Attempt) {
        self.provider.append_value(&a.provider);
        self.attempt.append_value(a.attempt);
        self.outcome.append_value(a.outcome.as_str());
        self.http_status.append_option(a.http_status);
        self.cost.append_value(i128::from(a.cost_micros));
        self.latency.append_value(a.latency_ms);
        self.started_at.append_value(a.started_at);
        self.error.append_option(a.error.as_deref());
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
        ];
        let fields = leadflow_schemas::attempt_fields();
        debug_assert_eq!(fields.len(), columns.len());
        Ok(StructArray::try_new(fields, columns, None)?)
    }
}
