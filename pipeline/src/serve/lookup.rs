//! `POST /v1/lookups`' leads on their way through the enrichment: as sent
//! ([`Sent`]), decoded into one lead batch with the other requests'
//! enriched beside them ([`Sent::decode`]), and answered one item per
//! lead, in input order ([`Answer`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use axum::body::Bytes;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Int32Type, Int64Type, SchemaRef};
use serde_json::{Value, json};

use super::problem::Problem;
use crate::config::ApiKeyConfig;
use crate::lead::{LeadBuilder, LeadOptions, Owner};
use crate::sinks::rejects::Reject;
use crate::sources::kafka::decode::LeadDecoder;

/// The columns a lookup's result carries, as (result field, output column),
/// each when the query returns it.
const RESULT_COLUMNS: &[(&str, &str)] = &[
    ("lead_id", "lead_id"),
    ("phone_e164", "phone_e164"),
    ("phone_valid", "phone_valid"),
    ("phone_error", "phone_error"),
    ("found_phone_e164", "found_phone_e164"),
    ("lookup_status", "lookup_status"),
    ("provider", "found_by"),
    ("cost_usd", "lookup_cost_usd"),
    ("line_type", "line_type"),
    ("carrier_name", "carrier_name"),
    ("line_type_status", "line_type_status"),
    ("policy", "policy"),
];

/// One request's leads as sent: its body and where each lead's JSON lies
/// in it, and the key that sent them. Nothing is decoded yet: the leads of
/// the requests enriched together are decoded into one batch.
pub(super) struct Sent {
    key: Arc<ApiKeyConfig>,
    body: Bytes,
    leads: Vec<Range<usize>>,
}

impl Sent {
    /// The body's `leads`, or the problem with it (naming line and column).
    pub(super) fn parse(key: Arc<ApiKeyConfig>, body: Bytes, max: usize) -> Result<Self, Problem> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Request<'a> {
            #[serde(borrow)]
            leads: Vec<&'a serde_json::value::RawValue>,
        }
        let request: Request<'_> = serde_json::from_slice(&body).map_err(Problem::bad_json)?;
        if request.leads.is_empty() {
            return Err(Problem::invalid(
                "leads",
                "`leads` is empty: send 1 or more leads".into(),
            ));
        }
        if request.leads.len() > max {
            return Err(Problem::invalid(
                "leads",
                format!(
                    "{} leads in one request; at most {max} ([api] max_lookup_leads): send more as a job",
                    request.leads.len()
                ),
            ));
        }
        // Each lead's JSON is a slice of the body, kept as its place in it.
        let start = body.as_ptr() as usize;
        let leads = request
            .leads
            .iter()
            .map(|lead| {
                let at = lead.get().as_ptr() as usize - start;
                at..at + lead.get().len()
            })
            .collect();
        Ok(Self { key, body, leads })
    }

    /// How many leads it sent (items that are not leads included).
    pub(super) fn len(&self) -> usize {
        self.leads.len()
    }

    /// Whether `other`'s leads may be enriched in one batch with these:
    /// one organization's (in a batch `find_phone` asks once for identical
    /// leads, and another organization's budget or tier must not answer
    /// for this one), under the same tier cap.
    pub(super) fn goes_with(&self, other: &Sent) -> bool {
        self.key.organization_id == other.key.organization_id
            && self.key.max_user_tier == other.key.max_user_tier
    }

    /// The lead builder for `requests` (which [`Self::goes_with`] one
    /// another), sized for their leads.
    pub(super) fn builder<'a>(
        mut requests: impl Iterator<Item = &'a Sent>,
        default_country: Option<&'static str>,
    ) -> LeadBuilder {
        let first = requests.next();
        let leads = first.map_or(0, Sent::len) + requests.map(Sent::len).sum::<usize>();
        LeadBuilder::new(
            LEAD_SCHEMA.clone(),
            LeadOptions {
                // Buffers for these leads, not for the most a request may hold.
                batch_size: leads,
                owner: first.map(|sent| {
                    Arc::new(Owner {
                        organization_id: sent.key.organization_id.clone(),
                        max_user_tier: sent.key.max_user_tier,
                    })
                }),
                default_country,
            },
        )
    }

    /// Decodes its leads into `builder` (each lead's JSON as sent, decoded
    /// as a Kafka message is): its answer so far, with an error in the
    /// place of each item that is not a lead, and the rejects for those.
    pub(super) fn decode(&self, builder: &mut LeadBuilder) -> (Answer, Vec<Reject>) {
        let mut answer = Answer {
            items: vec![Item::default(); self.leads.len()],
            accepted: Vec::with_capacity(self.leads.len()),
        };
        let mut rejects = Vec::new();
        DECODER.with_borrow_mut(|decoder| {
            for (i, range) in self.leads.iter().enumerate() {
                let raw = &self.body[range.clone()];
                match decoder.push(None, Some(raw), builder) {
                    Ok(()) => answer.accepted.push(i),
                    Err(reason) => {
                        answer.items[i] = Item::error(i, reason.clone());
                        rejects.push(Reject {
                            source: format!("POST /v1/lookups (key {})", self.key.name),
                            line: Some(i as i64 + 1),
                            raw: String::from_utf8_lossy(raw).into_owned(),
                            reason,
                        });
                    }
                }
            }
        });
        (answer, rejects)
    }
}

/// The `leads` table's schema, which every lookup's leads are built with.
static LEAD_SCHEMA: std::sync::LazyLock<SchemaRef> =
    std::sync::LazyLock::new(|| leadflow_schemas::lead_schema([]));

thread_local! {
    /// A lead decoder, kept from one batch to the next on its thread:
    /// making one maps every lead column's name.
    static DECODER: std::cell::RefCell<LeadDecoder> =
        std::cell::RefCell::new(LeadDecoder::new(usize::MAX));
}

/// One request's answer: an item per lead sent, and which of them were
/// decoded into lead rows, in order.
pub(super) struct Answer {
    items: Vec<Item>,
    accepted: Vec<usize>,
}

impl Answer {
    /// How many lead rows it has in the batch it was decoded into.
    pub(super) fn rows(&self) -> usize {
        self.accepted.len()
    }

    /// Its items once the output `columns` hold one row per lead row, in
    /// order, from row `offset` on (a plan that keeps its rows).
    pub(super) fn in_order(mut self, columns: &ResultColumns<'_>, offset: usize) -> Vec<Item> {
        self.put(columns, offset, 0..self.accepted.len());
        self.items
    }

    /// The results of its `accepted` lead rows, from the output's rows
    /// from `offset` on.
    fn put(&mut self, columns: &ResultColumns<'_>, offset: usize, accepted: Range<usize>) {
        for (row, &i) in (offset..).zip(&self.accepted[accepted]) {
            self.items[i] = Item::result(i, columns.row(row));
        }
    }

    /// Its items from `out`, the output for `leads` (its lead rows): row by
    /// row when the query kept every lead, else the first row of each
    /// lead's `lead_id`.
    pub(super) fn fill(mut self, leads: &RecordBatch, out: &[RecordBatch]) -> Vec<Item> {
        let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
        if rows == self.accepted.len() {
            let mut done = 0;
            for batch in out {
                let n = batch.num_rows();
                self.put(&ResultColumns::of(batch), 0, done..done + n);
                done += n;
            }
            return self.items;
        }
        // The query dropped or added rows: the first row of each lead_id.
        let mut by_id: HashMap<String, Vec<(&'static str, Value)>> = HashMap::new();
        for batch in out {
            let columns = ResultColumns::of(batch);
            for row in 0..batch.num_rows() {
                let fields = columns.row(row);
                if let Some((_, Value::String(id))) = fields.iter().find(|(f, _)| *f == "lead_id") {
                    let id = id.clone();
                    by_id.entry(id).or_insert(fields);
                }
            }
        }
        for (&i, id) in self.accepted.iter().zip(lead_ids(leads)) {
            self.items[i] = match by_id.get(&id) {
                Some(fields) => Item::result(i, fields.clone()),
                None => Item::error(
                    i,
                    "the enrichment query returned no row for this lead".into(),
                ),
            };
        }
        self.items
    }
}

/// The output columns a result is made of, found once per batch.
pub(super) struct ResultColumns<'a> {
    columns: Vec<(&'static str, &'a dyn Array)>,
}

impl<'a> ResultColumns<'a> {
    pub(super) fn of(batch: &'a RecordBatch) -> Self {
        let schema = batch.schema_ref();
        let columns = RESULT_COLUMNS
            .iter()
            .filter_map(|(field, column)| {
                // Not `index_of`, whose miss formats every column's name.
                let (i, _) = schema.column_with_name(column)?;
                Some((*field, batch.column(i).as_ref()))
            })
            .collect();
        Self { columns }
    }

    /// One output row as a lookup result ([`RESULT_COLUMNS`]).
    fn row(&self, row: usize) -> Vec<(&'static str, Value)> {
        self.columns
            .iter()
            .map(|(field, array)| (*field, json_value(*array, row)))
            .collect()
    }
}

/// The `lead_id` of each of `leads`' rows.
fn lead_ids(leads: &RecordBatch) -> Vec<String> {
    let Some((i, _)) = leads.schema().column_with_name("lead_id") else {
        return Vec::new();
    };
    let column = leads.column(i);
    (0..leads.num_rows())
        .map(|row| match json_value(column, row) {
            Value::String(id) => id,
            _ => String::new(),
        })
        .collect()
}

/// One lead's answer: its `index` in the request, then its result's
/// fields in [`RESULT_COLUMNS`] order, or its `error`.
#[derive(Debug, Clone, Default)]
pub(super) struct Item {
    index: usize,
    fields: Vec<(&'static str, Value)>,
}

impl Item {
    fn result(index: usize, fields: Vec<(&'static str, Value)>) -> Self {
        Self { index, fields }
    }

    fn error(index: usize, reason: String) -> Self {
        Self {
            index,
            fields: vec![("error", Value::String(reason))],
        }
    }
}

impl serde::Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        map.serialize_entry("index", &self.index)?;
        for (field, value) in &self.fields {
            map.serialize_entry(field, value)?;
        }
        map.end()
    }
}

fn json_value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => json!(array.as_string::<i32>().value(row)),
        DataType::Utf8View => json!(array.as_string_view().value(row)),
        DataType::LargeUtf8 => json!(array.as_string::<i64>().value(row)),
        DataType::Boolean => json!(array.as_boolean().value(row)),
        DataType::Int32 => json!(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            let units = array.as_primitive::<Decimal128Type>().value(row);
            json!(units as f64 / 10f64.powi(i32::from(*scale)))
        }
        _ => Value::String(
            datafusion::arrow::util::display::array_value_to_string(array, row).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(organization_id: &str, max_user_tier: Option<i32>) -> Arc<ApiKeyConfig> {
        Arc::new(ApiKeyConfig {
            name: "crm".into(),
            sha256: String::new(),
            organization_id: organization_id.into(),
            max_user_tier,
            requests_per_minute: None,
            webhook_secret_env: None,
            admin: false,
        })
    }

    #[test]
    fn each_lead_is_its_json_as_sent() {
        let leads = [
            r#"{"email":"a@b.c"}"#,
            r#"{ "full_name" : "Zo\u00eb \"Q\" 李", "extra": {"n": [1, {"x": "}"}]} }"#,
            "7",
            r#""text""#,
        ];
        let body = format!(
            "\n {{ \"leads\" :\t[ {} ,\n{},{} ,  {}\r\n] }} ",
            leads[0], leads[1], leads[2], leads[3]
        );
        let sent = Sent::parse(key("acme", None), Bytes::from(body), 100).unwrap();
        assert_eq!(sent.len(), leads.len());
        for (range, lead) in sent.leads.iter().zip(leads) {
            assert_eq!(&sent.body[range.clone()], lead.as_bytes());
        }
    }

    #[test]
    fn only_one_organization_under_one_tier_cap_goes_together() {
        let sent = |key| Sent::parse(key, Bytes::from_static(b"{\"leads\":[{}]}"), 1).unwrap();
        let acme = sent(key("acme", Some(2)));
        assert!(acme.goes_with(&sent(key("acme", Some(2)))));
        assert!(!acme.goes_with(&sent(key("acme", None))));
        assert!(!acme.goes_with(&sent(key("globex", Some(2)))));
    }
}
