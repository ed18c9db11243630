//! One Kafka message into one lead, or the reason it cannot be one. The
//! message is a JSON object (the JSON Schema `leadflow schema lead-json`
//! prints); its key, when it has one, is the lead's id.

use std::borrow::Cow;
use std::collections::HashSet;

use leadflow_schemas::{LEAD_FIELDS, LeadFieldKind, lead_field_index};
use serde_json::{Map, Value};

use crate::lead::{ColumnMap, FieldMapping, LeadBuilder, RecordFields};

const LEAD_ID: usize = lead_field_index("lead_id");

/// The fields a lead id is hashed from when it has none (and no key).
const IDENTITY: [&str; 6] = [
    "email",
    "full_name",
    "first_name",
    "last_name",
    "company",
    "phone_raw",
];

/// Decodes messages into a partition's [`LeadBuilder`].
pub(crate) struct LeadDecoder {
    map: ColumnMap,
    max_bytes: usize,
    /// Keys that are not lead fields, warned about once each.
    unknown: HashSet<String>,
    /// Values under such keys, not kept.
    pub(crate) unkept_values: u64,
}

impl LeadDecoder {
    pub(crate) fn new(max_bytes: usize) -> Self {
        let header: Vec<String> = LEAD_FIELDS.iter().map(|f| f.name.to_string()).collect();
        Self {
            map: ColumnMap::new(&header, &FieldMapping::default(), &[]),
            max_bytes,
            unknown: HashSet::new(),
            unkept_values: 0,
        }
    }

    /// Appends the lead in `payload` (keyed by `key`) to `builder`, or says
    /// why it is not a lead; nothing is appended then.
    pub(crate) fn push(
        &mut self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        builder: &mut LeadBuilder,
    ) -> Result<(), String> {
        let payload = payload.ok_or("empty message (no payload)")?;
        if payload.len() > self.max_bytes {
            return Err(format!(
                "message of {} bytes is over the limit of {} (--max-message-bytes)",
                payload.len(),
                self.max_bytes
            ));
        }
        let object: Map<String, Value> =
            serde_json::from_slice(payload).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut values: [Option<Cow<'_, str>>; LEAD_FIELDS.len()] = std::array::from_fn(|_| None);
        for (name, value) in &object {
            let Some(i) = LEAD_FIELDS.iter().position(|f| f.name == name) else {
                if !value.is_null() {
                    self.unkept_values += 1;
                    if self.unknown.len() < 1024 && self.unknown.insert(name.clone()) {
                        tracing::warn!(
                            key = %name,
                            "lead messages carry `{name}`, which is not a lead field; its values are not kept"
                        );
                    }
                }
                continue;
            };
            values[i] = typed(LEAD_FIELDS[i].kind, name, value)?;
        }
        if values[LEAD_ID].is_none() {
            let key = key
                .map(std::str::from_utf8)
                .transpose()
                .map_err(|_| "the message key (the lead id) is not UTF-8 text".to_string())?
                .map(str::trim)
                .filter(|k| !k.is_empty());
            match key {
                Some(key) => values[LEAD_ID] = Some(Cow::Borrowed(key)),
                None if IDENTITY.iter().all(|f| {
                    values[lead_field_index(f)]
                        .as_deref()
                        .is_none_or(|v| v.trim().is_empty())
                }) =>
                {
                    return Err(format!(
                        "no lead identity: no lead_id, no message key, and none of {}",
                        IDENTITY.join(", ")
                    ));
                }
                None => {}
            }
        }
        builder.push(&Fields(&values), &self.map)
    }
}

/// A JSON value as the text of a lead field of `kind`, checked against the
/// message schema: text fields take strings, `user_tier` also integers.
fn typed<'a>(
    kind: LeadFieldKind,
    name: &str,
    value: &'a Value,
) -> Result<Option<Cow<'a, str>>, String> {
    match (kind, value) {
        (_, Value::Null) => Ok(None),
        (_, Value::String(s)) => Ok(Some(Cow::Borrowed(s))),
        (LeadFieldKind::Int, Value::Number(n)) if n.is_i64() => Ok(Some(Cow::Owned(n.to_string()))),
        (LeadFieldKind::Int, other) => Err(format!(
            "{name}: expected a whole number, a string or null, got {}",
            json_type(other)
        )),
        (_, other) => Err(format!(
            "{name}: expected a string or null, got {}",
            json_type(other)
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct Fields<'a, 'b>(&'a [Option<Cow<'b, str>>]);

impl RecordFields for Fields<'_, '_> {
    fn field(&self, col: usize) -> Result<Option<&str>, String> {
        Ok(self.0.get(col).and_then(|v| v.as_deref()))
    }
}
