//! One Kafka message into one lead, or the reason it cannot be one. The
//! message is a JSON object (the JSON Schema `leadflow schema lead-json`
//! prints); its key, when it has one, is the lead's id.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use leadflow_schemas::{LEAD_FIELDS, LeadFieldKind, lead_field_index};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::lead::{ColumnMap, FieldMapping, IDENTITY_FIELDS, LeadBuilder, RecordFields};
use crate::sources::json::{Flat, KeyIndex, read_object};

const LEAD_ID: usize = lead_field_index("lead_id");

/// Decodes messages into a partition's [`LeadBuilder`].
pub(crate) struct LeadDecoder {
    map: ColumnMap,
    /// Each key's lead field.
    keys: KeyIndex,
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
            keys: KeyIndex::new(&header),
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
        let object =
            read_object::<Scalar<'_>>(payload).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut values: [Option<Cow<'_, str>>; LEAD_FIELDS.len()] = std::array::from_fn(|_| None);
        for (position, (name, value)) in object.0.into_iter().enumerate() {
            let Some(i) = self.keys.column(position, &name) else {
                if !matches!(value, Scalar::Null) {
                    self.unkept_values += 1;
                    // At most 1,024 names of at most 64 characters: a
                    // decoder lives as long as its stream or server thread,
                    // and the names are the sender's.
                    let cut = name.char_indices().nth(64).map_or(name.len(), |(i, _)| i);
                    let name = &name[..cut];
                    if self.unknown.len() < 1024 && !self.unknown.contains(name) {
                        tracing::warn!(
                            key = %name,
                            "lead messages carry `{name}`, which is not a lead field; its values are not kept"
                        );
                        self.unknown.insert(name.to_string());
                    }
                }
                continue;
            };
            values[i] = typed(LEAD_FIELDS[i].kind, &name, value)?;
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
                None if IDENTITY_FIELDS
                    .iter()
                    .all(|&i| values[i].as_deref().is_none_or(|v| v.trim().is_empty())) =>
                {
                    let names: Vec<&str> = IDENTITY_FIELDS
                        .iter()
                        .map(|&i| LEAD_FIELDS[i].name)
                        .collect();
                    return Err(format!(
                        "no lead identity: no lead_id, no message key, and none of {}",
                        names.join(", ")
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
    value: Scalar<'a>,
) -> Result<Option<Cow<'a, str>>, String> {
    match (kind, value) {
        (_, Scalar::Null) => Ok(None),
        (_, Scalar::Str(s)) => Ok(Some(s)),
        (LeadFieldKind::Int, Scalar::Int(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        (LeadFieldKind::Int, other) => Err(format!(
            "{name}: expected a whole number, a string or null, got {}",
            other.what()
        )),
        (_, other) => Err(format!(
            "{name}: expected a string or null, got {}",
            other.what()
        )),
    }
}

/// A top-level value, as far as a lead needs to know it.
enum Scalar<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    /// Anything else, by what it is ("a number", "an object", …).
    Other(&'static str),
}

impl Scalar<'_> {
    fn what(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Str(_) => "a string",
            Scalar::Int(_) => "a number",
            Scalar::Other(what) => what,
        }
    }
}

impl<'a> From<Flat<'a>> for Scalar<'a> {
    fn from(v: Flat<'a>) -> Self {
        match v {
            Flat::Null => Scalar::Null,
            Flat::Str(s) => Scalar::Str(Cow::Borrowed(s)),
            Flat::Int(n) => Scalar::Int(n),
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(i64::try_from(v).map_or(Scalar::Other("a number"), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other("a number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other("a boolean"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an object"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct Fields<'a, 'b>(&'a [Option<Cow<'b, str>>]);

impl RecordFields for Fields<'_, '_> {
    fn field(&self, col: usize) -> Result<Option<&str>, String> {
        Ok(self.0.get(col).and_then(|v| v.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::LeadOptions;

    #[test]
    fn the_unknown_names_a_decoder_remembers_are_few_and_short() {
        let mut decoder = LeadDecoder::new(usize::MAX);
        let options = LeadOptions {
            batch_size: 4096,
            default_country: None,
            owner: None,
        };
        let mut builder = LeadBuilder::new(leadflow_schemas::lead_schema([]), options);
        for i in 0..2000 {
            let name = format!("{i}{}", "é".repeat(10_000));
            let lead = format!(r#"{{"lead_id":"L{i}","email":"a{i}@example.com","{name}":"v"}}"#);
            decoder
                .push(None, Some(lead.as_bytes()), &mut builder)
                .expect("a lead");
        }
        assert_eq!(builder.len(), 2000);
        assert_eq!(decoder.unkept_values, 2000);
        assert_eq!(decoder.unknown.len(), 1024);
        assert!(decoder.unknown.iter().all(|n| n.chars().count() == 64));
    }
}
