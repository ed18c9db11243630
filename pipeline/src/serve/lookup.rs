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
        // Each lead's JSON is a slice of the body, kept as its place in it:
        // found by a scan when the body is plain, else by serde_json.
        let leads = match crate::sources::json::plain_leads(&body) {
            Some(leads) => leads,
            None => {
                let request: Request<'_> =
                    serde_json::from_slice(&body).map_err(Problem::bad_json)?;
                let start = body.as_ptr() as usize;
                request
                    .leads
                    .iter()
                    .map(|lead| {
                        let at = lead.get().as_ptr() as usize - start;
                        at..at + lead.get().len()
                    })
                    .collect()
            }
        };
        if leads.is_empty() {
            return Err(Problem::invalid(
                "leads",
                "`leads` is empty: send 1 or more leads".into(),
            ));
        }
        if leads.len() > max {
            return Err(Problem::invalid(
                "leads",
                format!(
                    "{} leads in one request; at most {max} ([api] max_lookup_leads): send more as a job",
                    leads.len()
                ),
            ));
        }
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
            errors: vec![None; self.leads.len()],
            rows: 0,
        };
        let mut rejects = Vec::new();
        DECODER.with_borrow_mut(|decoder| {
            for (i, range) in self.leads.iter().enumerate() {
                let raw = &self.body[range.clone()];
                match decoder.push(None, Some(raw), builder) {
                    Ok(()) => answer.rows += 1,
                    Err(reason) => {
                        answer.errors[i] = Some(reason.clone());
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

/// One request's answer so far: for each item sent, `None` for a lead
/// decoded into the batch, or why it is not a lead.
pub(super) struct Answer {
    errors: Vec<Option<String>>,
    rows: usize,
}

impl Answer {
    /// How many lead rows it has in the batch it was decoded into.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Its body once the output `columns` hold one row per lead row, in
    /// order, from row `offset` on (a plan that keeps its rows).
    pub(super) fn in_order(self, columns: &ResultColumns<'_>, offset: usize) -> Vec<u8> {
        self.write(|k| Some((columns, offset + k)))
    }

    /// Its body from `out`, the output for `leads` (its lead rows): row by
    /// row when the query returned one row per lead with the leads' ids in
    /// order, else the first row of each lead's `lead_id` (a query that
    /// drops, adds or reorders rows).
    pub(super) fn fill(self, leads: &RecordBatch, out: &[RecordBatch]) -> Vec<u8> {
        let columns: Vec<ResultColumns<'_>> = out.iter().map(ResultColumns::of).collect();
        let rows: Vec<(usize, usize)> = out
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |row| (b, row)))
            .collect();
        let id = |(b, row): (usize, usize)| columns[b].lead_id.and_then(|ids| str_at(ids, row));
        let lead_ids: Vec<Option<&str>> = match leads.schema_ref().column_with_name("lead_id") {
            Some((i, _)) => (0..leads.num_rows())
                .map(|row| str_at(leads.column(i).as_ref(), row))
                .collect(),
            None => vec![None; leads.num_rows()],
        };
        let in_order = rows.len() == self.rows
            && rows.len() == lead_ids.len()
            && rows
                .iter()
                .zip(&lead_ids)
                .all(|(&at, lead)| id(at) == *lead);
        let places: Vec<Option<(usize, usize)>> = if in_order {
            rows.into_iter().map(Some).collect()
        } else {
            let mut first: HashMap<&str, (usize, usize)> = HashMap::new();
            for at in rows {
                if let Some(id) = id(at) {
                    first.entry(id).or_insert(at);
                }
            }
            lead_ids
                .iter()
                .map(|lead| lead.and_then(|id| first.get(id).copied()))
                .collect()
        };
        self.write(|k| {
            places
                .get(k)
                .copied()
                .flatten()
                .map(|(b, row)| (&columns[b], row))
        })
    }

    /// `{"results":[…]}`: an item per lead sent, in order, each its error
    /// or the result `place` gives for its lead row (the k-th).
    fn write<'c, 'a: 'c>(
        self,
        place: impl Fn(usize) -> Option<(&'c ResultColumns<'a>, usize)>,
    ) -> Vec<u8> {
        let mut body = Vec::with_capacity(16 + 384 * self.errors.len());
        body.extend_from_slice(b"{\"results\":[");
        let mut k = 0;
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            if let Some(reason) = error {
                write_error(&mut body, i, reason);
                continue;
            }
            match place(k) {
                Some((columns, row)) => columns.write(&mut body, i, row),
                None => write_error(
                    &mut body,
                    i,
                    "the enrichment query returned no row for this lead",
                ),
            }
            k += 1;
        }
        body.extend_from_slice(b"]}");
        body
    }
}

/// The output columns a result is made of, found once per batch.
pub(super) struct ResultColumns<'a> {
    columns: Vec<(&'static str, &'a dyn Array)>,
    lead_id: Option<&'a dyn Array>,
}

impl<'a> ResultColumns<'a> {
    pub(super) fn of(batch: &'a RecordBatch) -> Self {
        let schema = batch.schema_ref();
        // Not `index_of`, whose miss formats every column's name.
        let column = |name| Some(batch.column(schema.column_with_name(name)?.0).as_ref());
        Self {
            columns: RESULT_COLUMNS
                .iter()
                .filter_map(|(field, name)| Some((*field, column(name)?)))
                .collect(),
            lead_id: column("lead_id"),
        }
    }

    /// Output row `row` as the result of item `index`: `{"index":…}`, then
    /// each [`RESULT_COLUMNS`] field the query returns, in that order.
    fn write(&self, body: &mut Vec<u8>, index: usize, row: usize) {
        open_item(body, index);
        for (field, array) in &self.columns {
            body.extend_from_slice(b",\"");
            body.extend_from_slice(field.as_bytes());
            body.extend_from_slice(b"\":");
            write_value(body, *array, row);
        }
        body.push(b'}');
    }
}

/// `{"index":…,"error":…}`: item `index` is not a lead, or has no result.
fn write_error(body: &mut Vec<u8>, index: usize, reason: &str) {
    open_item(body, index);
    body.extend_from_slice(b",\"error\":");
    write_json(body, reason);
    body.push(b'}');
}

/// An item's `{"index":…`, its fields to follow.
fn open_item(body: &mut Vec<u8>, index: usize) {
    body.extend_from_slice(b"{\"index\":");
    write_json(body, &index);
}

/// `value` as JSON, at the end of `body`.
fn write_json(body: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    serde_json::to_writer(body, value).expect("JSON is written to memory");
}

/// The value at `row` of `array` as JSON: strings escaped, decimals as
/// numbers, what has no JSON type as its text.
fn write_value(body: &mut Vec<u8>, array: &dyn Array, row: usize) {
    if array.is_null(row) {
        return body.extend_from_slice(b"null");
    }
    match array.data_type() {
        DataType::Boolean => {
            let value = array.as_boolean().value(row);
            body.extend_from_slice(if value { b"true" } else { b"false" });
        }
        DataType::Int32 => write_json(body, &array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write_json(body, &array.as_primitive::<Int64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            let units = array.as_primitive::<Decimal128Type>().value(row);
            // Not finite (it cannot be): `null`, as serde_json writes it.
            write_json(body, &(units as f64 / 10f64.powi(i32::from(*scale))));
        }
        _ => match str_at(array, row) {
            Some(text) => write_json(body, text),
            None => write_json(
                body,
                &datafusion::arrow::util::display::array_value_to_string(array, row)
                    .unwrap_or_default(),
            ),
        },
    }
}

/// The string at `row` of a string `array`; `None` when null or when
/// the array does not hold strings.
fn str_at(array: &dyn Array, row: usize) -> Option<&str> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(row)),
        DataType::Utf8View => Some(array.as_string_view().value(row)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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

    /// Output rows of two leads, with every kind of value a result holds.
    fn output() -> RecordBatch {
        use datafusion::arrow::array::{
            ArrayRef, BooleanArray, Decimal128Array, Int64Array, StringArray, StringViewArray,
        };
        RecordBatch::try_from_iter([
            (
                "lead_id",
                Arc::new(StringArray::from(vec!["a\"1", "b\\2"])) as ArrayRef,
            ),
            (
                "phone_e164",
                Arc::new(StringViewArray::from(vec![Some("+442079460000"), None])),
            ),
            (
                "phone_valid",
                Arc::new(BooleanArray::from(vec![true, false])),
            ),
            (
                "lookup_cost_usd",
                Arc::new(
                    Decimal128Array::from(vec![Some(42_000), None])
                        .with_precision_and_scale(18, 6)
                        .unwrap(),
                ),
            ),
            ("not_a_result", Arc::new(Int64Array::from(vec![7, 8]))),
            (
                "carrier_name",
                Arc::new(StringArray::from(vec!["Zoë\n李\u{1}", ""])),
            ),
        ])
        .unwrap()
    }

    fn results(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn an_answer_is_its_rows_and_errors_in_input_order_as_json() {
        let output = output();
        let answer = Answer {
            errors: vec![None, Some("not a lead: \"x\"".into()), None],
            rows: 2,
        };
        let body = answer.in_order(&ResultColumns::of(&output), 0);
        assert_eq!(
            results(&body),
            json!({"results": [
                {"index": 0, "lead_id": "a\"1", "phone_e164": "+442079460000", "phone_valid": true,
                 "cost_usd": 0.042, "carrier_name": "Zoë\n李\u{1}"},
                {"index": 1, "error": "not a lead: \"x\""},
                {"index": 2, "lead_id": "b\\2", "phone_e164": null, "phone_valid": false,
                 "cost_usd": null, "carrier_name": ""},
            ]})
        );
        // The fields in RESULT_COLUMNS' order, `index` first.
        let text = String::from_utf8(body).unwrap();
        let at = |field: &str| text.find(&format!("\"{field}\"")).unwrap();
        assert!(at("index") < at("lead_id") && at("lead_id") < at("phone_e164"));
        assert!(at("phone_valid") < at("cost_usd") && at("cost_usd") < at("carrier_name"));
        // A request's rows start at its offset in the group's output.
        let one = Answer {
            errors: vec![None],
            rows: 1,
        };
        let body = one.in_order(&ResultColumns::of(&output), 1);
        assert_eq!(results(&body)["results"][0]["lead_id"], "b\\2");
        assert_eq!(results(&body)["results"][0]["index"], 0);
    }

    #[test]
    fn a_lead_the_query_dropped_is_an_error_and_reordered_rows_are_found_by_id() {
        let output = output();
        let leads = output.project(&[0]).unwrap();
        let answer = || Answer {
            errors: vec![None, None],
            rows: 2,
        };
        // Only the second lead's row came back.
        let body = answer().fill(&leads, &[output.slice(1, 1)]);
        assert_eq!(
            results(&body)["results"],
            json!([
                {"index": 0, "error": "the enrichment query returned no row for this lead"},
                {"index": 1, "lead_id": "b\\2", "phone_e164": null, "phone_valid": false,
                 "cost_usd": null, "carrier_name": ""},
            ])
        );
        // Every row, in two batches, in order or not: each lead its own.
        for out in [
            [output.slice(0, 1), output.slice(1, 1)],
            [output.slice(1, 1), output.slice(0, 1)],
        ] {
            let body = answer().fill(&leads, &out);
            assert_eq!(results(&body)["results"][0]["lead_id"], "a\"1");
            assert_eq!(results(&body)["results"][1]["lead_id"], "b\\2");
            assert_eq!(results(&body)["results"][1]["index"], 1);
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
