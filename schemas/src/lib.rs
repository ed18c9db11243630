//! Arrow schemas of leadflow's data: the `lead` read from sources, the
//! `enriched_lead` and `reject` outputs (and, with the waterfall,
//! `provider_usage`), plus the JSON Schema of a Kafka lead message, all built
//! from the one list of lead fields below. Column names are a public
//! interface: snake_case, stable.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The time zone every timestamp column carries.
pub const UTC: &str = "UTC";

/// Money columns: `DECIMAL(12,6)` USD.
pub const MONEY: DataType = DataType::Decimal128(12, 6);

/// `TIMESTAMP(us, UTC)`, the type of every timestamp column.
pub fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// A field of the lead record: its name, type, and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct LeadField {
    pub name: &'static str,
    pub kind: LeadFieldKind,
    pub doc: &'static str,
}

/// How a lead field is typed and read from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadFieldKind {
    Text,
    /// ISO 3166-1 alpha-2, resolved from codes or English names.
    Country,
    /// A whole number; anything else rejects the row.
    Int,
    /// RFC 3339 or `YYYY-MM-DD[ HH:MM:SS]`, read as UTC when no offset.
    Timestamp,
}

impl LeadFieldKind {
    pub fn data_type(self) -> DataType {
        match self {
            LeadFieldKind::Text | LeadFieldKind::Country => DataType::Utf8,
            LeadFieldKind::Int => DataType::Int32,
            LeadFieldKind::Timestamp => timestamp(),
        }
    }
}

/// The lead's own fields, in output order.
pub const LEAD_FIELDS: &[LeadField] = &[
    LeadField {
        name: "lead_id",
        kind: LeadFieldKind::Text,
        doc: "Stable id of the lead; when absent, a hash of its identity fields (email, names, company, phone).",
    },
    LeadField {
        name: "first_name",
        kind: LeadFieldKind::Text,
        doc: "Given name.",
    },
    LeadField {
        name: "last_name",
        kind: LeadFieldKind::Text,
        doc: "Family name.",
    },
    LeadField {
        name: "full_name",
        kind: LeadFieldKind::Text,
        doc: "Full name; built from first and last name when absent.",
    },
    LeadField {
        name: "email",
        kind: LeadFieldKind::Text,
        doc: "Work email.",
    },
    LeadField {
        name: "company",
        kind: LeadFieldKind::Text,
        doc: "Company name.",
    },
    LeadField {
        name: "company_website",
        kind: LeadFieldKind::Text,
        doc: "Company website or domain.",
    },
    LeadField {
        name: "phone_raw",
        kind: LeadFieldKind::Text,
        doc: "The phone number as given, any format.",
    },
    LeadField {
        name: "country",
        kind: LeadFieldKind::Country,
        doc: "ISO 3166-1 alpha-2 (input may be alpha-2, alpha-3 or an English name); the default region for parsing phone_raw.",
    },
    LeadField {
        name: "user_tier",
        kind: LeadFieldKind::Int,
        doc: "Tier of the customer who owns the lead; gates which providers may be paid for it.",
    },
    LeadField {
        name: "organization_id",
        kind: LeadFieldKind::Text,
        doc: "Customer organization that owns the lead.",
    },
    LeadField {
        name: "received_at",
        kind: LeadFieldKind::Timestamp,
        doc: "When the lead arrived; its UTC date is the output partition.",
    },
];

/// The position of lead field `name` in [`LEAD_FIELDS`], for code that
/// keeps per-field arrays. In a `const` a name that is not a lead field
/// fails the build, so a renamed or reordered field cannot be misread.
pub const fn lead_field_index(name: &str) -> usize {
    let mut i = 0;
    while i < LEAD_FIELDS.len() {
        if str_eq(LEAD_FIELDS[i].name, name) {
            return i;
        }
        i += 1;
    }
    panic!("not a lead field")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Looks up a lead field by name.
pub fn lead_field(name: &str) -> Option<&'static LeadField> {
    LEAD_FIELDS.iter().find(|f| f.name == name)
}

/// The lead schema: the lead fields, all nullable, then `extras` (columns a
/// source carried that are not lead fields, passed through as text).
pub fn lead_schema<'a>(extras: impl IntoIterator<Item = &'a str>) -> SchemaRef {
    let mut fields: Vec<Field> = LEAD_FIELDS
        .iter()
        .map(|f| Field::new(f.name, f.kind.data_type(), true))
        .collect();
    fields.extend(
        extras
            .into_iter()
            .map(|name| Field::new(name, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(fields))
}

/// The struct `phone_info` returns.
pub fn phone_info_fields() -> Fields {
    Fields::from(vec![
        Field::new("e164", DataType::Utf8, true),
        Field::new("valid", DataType::Boolean, false),
        Field::new("possible", DataType::Boolean, false),
        Field::new("country", DataType::Utf8, true),
        Field::new("type", DataType::Utf8, true),
        Field::new("national", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ])
}

/// The columns `enriched_lead` adds after the lead's own, in order.
pub fn enrichment_fields() -> Vec<Field> {
    vec![
        Field::new("phone_e164", DataType::Utf8, true),
        Field::new("phone_valid", DataType::Boolean, true),
        Field::new("phone_country", DataType::Utf8, true),
        Field::new("phone_type", DataType::Utf8, true),
        Field::new("phone_error", DataType::Utf8, true),
        Field::new("found_phone_e164", DataType::Utf8, true),
        Field::new("found_by", DataType::Utf8, true),
        Field::new("lookup_status", DataType::Utf8, true),
        Field::new("lookup_cost_usd", MONEY, true),
        Field::new("lookup_attempts", DataType::Int32, true),
        Field::new("lookup_latency_ms", DataType::Int64, true),
        Field::new("policy", DataType::Utf8, true),
        Field::new("run_id", DataType::Utf8, true),
        Field::new("enriched_at", timestamp(), true),
    ]
}

/// One provider call or skip, as `find_phone` lists them in `attempts`.
/// Made once: `find_phone` asks for them at every batch.
pub fn attempt_fields() -> Fields {
    static FIELDS: std::sync::LazyLock<Fields> = std::sync::LazyLock::new(|| {
        Fields::from(vec![
            Field::new("provider", DataType::Utf8, false),
            Field::new("attempt", DataType::Int32, false),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("http_status", DataType::Int32, true),
            Field::new("cost_usd", MONEY, false),
            Field::new("latency_ms", DataType::Int64, false),
            Field::new("started_at", timestamp(), false),
            Field::new("error", DataType::Utf8, true),
            Field::new("policy", DataType::Utf8, true),
        ])
    });
    FIELDS.clone()
}

/// The struct `find_phone` returns.
pub fn find_phone_fields() -> Fields {
    Fields::from(vec![
        Field::new("phone_e164", DataType::Utf8, true),
        Field::new("provider", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("cost_usd", MONEY, false),
        Field::new("latency_ms", DataType::Int64, false),
        Field::new(
            "attempts",
            DataType::List(Arc::new(Field::new_list_field(
                DataType::Struct(attempt_fields()),
                true,
            ))),
            false,
        ),
        Field::new("policy", DataType::Utf8, true),
    ])
}

/// The struct `phone_line_type` returns (Twilio Lookup v2's shape).
pub fn line_type_fields() -> Fields {
    Fields::from(vec![
        Field::new("line_type", DataType::Utf8, true),
        Field::new("carrier_name", DataType::Utf8, true),
        Field::new("mcc", DataType::Utf8, true),
        Field::new("mnc", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
    ])
}

/// The column of the enrichment query whose `find_phone(...)['attempts']`
/// lists become `provider_usage` rows; it is not written to `enriched_leads`.
pub const PROVIDER_CALLS_COLUMN: &str = "provider_calls";

/// Columns whose values are nearly all distinct row to row: a lead's
/// identity and phones, a reject's raw text. Parquet writers store them
/// without a dictionary: one would only be built to be thrown away once it
/// outgrew its page, and held in memory meanwhile.
pub const DISTINCT_PER_LEAD: &[&str] = &[
    "lead_id",
    "email",
    "full_name",
    "phone_raw",
    "phone_e164",
    "found_phone_e164",
    "raw",
];

/// `provider_usage`: one row per provider call or skip.
pub fn provider_usage_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("lead_id", DataType::Utf8, true),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("organization_id", DataType::Utf8, true),
    ];
    fields.extend(attempt_fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}

/// `enriched_lead` for a lead schema with the given extras.
pub fn enriched_lead_schema<'a>(extras: impl IntoIterator<Item = &'a str>) -> SchemaRef {
    let lead = lead_schema(extras);
    let fields: Vec<Field> = lead
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .chain(enrichment_fields())
        .collect();
    Arc::new(Schema::new(fields))
}

/// One row per input record that could not become a lead.
pub fn reject_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::Int64, true),
        Field::new("raw", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("rejected_at", timestamp(), false),
    ]))
}

/// JSON Schema (draft 2020-12) of one lead message on the Kafka topic,
/// generated from [`LEAD_FIELDS`] so the two cannot drift.
pub fn lead_json_schema() -> serde_json::Value {
    let properties: serde_json::Map<String, serde_json::Value> = LEAD_FIELDS
        .iter()
        .map(|f| {
            let ty = match f.kind {
                LeadFieldKind::Text | LeadFieldKind::Country => {
                    serde_json::json!(["string", "null"])
                }
                LeadFieldKind::Int => serde_json::json!(["integer", "string", "null"]),
                LeadFieldKind::Timestamp => serde_json::json!(["string", "null"]),
            };
            let mut prop = serde_json::json!({ "type": ty, "description": f.doc });
            if f.kind == LeadFieldKind::Timestamp {
                prop["format"] = "date-time".into();
            }
            (f.name.to_string(), prop)
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "lead",
        "description": "One lead per Kafka message, keyed by lead_id (the key is the id when lead_id is absent). Other properties are accepted and not kept.",
        "type": "object",
        "properties": properties,
        "additionalProperties": true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enriched_schema_keeps_lead_columns_first_then_extras() {
        let s = enriched_lead_schema(["utm_source"]);
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            &names[..LEAD_FIELDS.len()],
            LEAD_FIELDS
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .as_slice()
        );
        assert_eq!(names[LEAD_FIELDS.len()], "utm_source");
        assert_eq!(names.last(), Some(&"enriched_at"));
    }

    #[test]
    fn json_schema_lists_every_lead_field() {
        let js = lead_json_schema();
        for f in LEAD_FIELDS {
            assert!(js["properties"].get(f.name).is_some(), "{}", f.name);
        }
    }

    #[test]
    fn committed_json_schema_is_current() {
        let committed = include_str!("../lead.schema.json");
        let generated = serde_json::to_string_pretty(&lead_json_schema()).unwrap() + "\n";
        assert_eq!(
            committed, generated,
            "run `cargo run -p leadflow-pipeline -- schema lead-json > schemas/lead.schema.json`"
        );
    }
}
