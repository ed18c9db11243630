//! Turning records of any source format into lead batches: column mapping,
//! country resolution, tier and timestamp parsing, lead ids. A record that
//! cannot become a lead yields the reason, which the caller turns into a reject.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    ArrayRef, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use leadflow_schemas::{LEAD_FIELDS, LeadFieldKind, UTC};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};

/// Indices of the lead fields the builder reads or fills itself.
mod idx {
    pub const LEAD_ID: usize = 0;
    pub const FIRST_NAME: usize = 1;
    pub const LAST_NAME: usize = 2;
    pub const FULL_NAME: usize = 3;
    pub const EMAIL: usize = 4;
    pub const COMPANY: usize = 5;
    pub const PHONE_RAW: usize = 7;
    pub const COUNTRY: usize = 8;
}
const N_LEAD: usize = 12;
const _: () = assert!(N_LEAD == LEAD_FIELDS.len());

/// Other names people give our columns, tried when the header lacks ours.
const HEADER_ALIASES: &[(&str, &str)] = &[
    ("id", "lead_id"),
    ("firstname", "first_name"),
    ("given_name", "first_name"),
    ("lastname", "last_name"),
    ("surname", "last_name"),
    ("family_name", "last_name"),
    ("name", "full_name"),
    ("fullname", "full_name"),
    ("contact_name", "full_name"),
    ("e_mail", "email"),
    ("email_address", "email"),
    ("work_email", "email"),
    ("company_name", "company"),
    ("account_name", "company"),
    ("website", "company_website"),
    ("domain", "company_website"),
    ("company_domain", "company_website"),
    ("phone", "phone_raw"),
    ("phone_number", "phone_raw"),
    ("telephone", "phone_raw"),
    ("tel", "phone_raw"),
    ("mobile", "phone_raw"),
    ("country_code", "country"),
    ("tier", "user_tier"),
    ("org_id", "organization_id"),
    ("created_at", "received_at"),
];

/// `First Name`, `first-name` and `FIRST_NAME` all become `first_name`.
pub fn normalize_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().trim_start_matches('\u{feff}').chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// `--map lead_col=file_col` pairs, validated against the lead fields.
#[derive(Debug, Clone, Default)]
pub struct FieldMapping {
    /// lead field → normalized source column name.
    map: HashMap<&'static str, String>,
}

impl FieldMapping {
    pub fn parse(pairs: &[String]) -> Result<Self> {
        let mut map = HashMap::new();
        for pair in pairs {
            let Some((lead, file)) = pair.split_once('=') else {
                return Err(Error::Usage(format!(
                    "--map `{pair}`: expected LEAD_COLUMN=FILE_COLUMN, e.g. phone_raw=Mobile"
                )));
            };
            let Some(field) = leadflow_schemas::lead_field(lead.trim()) else {
                let known: Vec<&str> = LEAD_FIELDS.iter().map(|f| f.name).collect();
                return Err(Error::Usage(format!(
                    "--map `{pair}`: `{}` is not a lead column; lead columns are {}",
                    lead.trim(),
                    known.join(", ")
                )));
            };
            map.insert(field.name, normalize_header(file));
        }
        Ok(Self { map })
    }
}

/// Where each column of the run's lead schema comes from in one source:
/// built from that source's header (or keys), the same for every record in it.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    lead: [Option<usize>; N_LEAD],
    extras: Vec<Option<usize>>,
}

impl ColumnMap {
    /// Maps `header` (a source's column names, in order) onto the lead fields
    /// and the run's `extras`.
    pub fn new(header: &[String], mapping: &FieldMapping, extras: &[String]) -> Self {
        let normalized: Vec<String> = header.iter().map(|h| normalize_header(h)).collect();
        let find = |name: &str| normalized.iter().position(|h| h == name);
        let mut lead = [None; N_LEAD];
        for (i, f) in LEAD_FIELDS.iter().enumerate() {
            lead[i] = match mapping.map.get(f.name) {
                Some(src) => find(src),
                None => find(f.name).or_else(|| {
                    HEADER_ALIASES
                        .iter()
                        .filter(|(_, canonical)| *canonical == f.name)
                        .find_map(|(alias, _)| find(alias))
                }),
            };
        }
        let extras = extras
            .iter()
            .map(|e| header.iter().position(|h| h == e))
            .collect();
        Self { lead, extras }
    }

    /// Source columns that are not lead fields: the extras this source adds.
    pub fn extra_columns(header: &[String], mapping: &FieldMapping) -> Vec<String> {
        let map = Self::new(header, mapping, &[]);
        let used: Vec<usize> = map.lead.iter().flatten().copied().collect();
        header
            .iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .map(|(_, h)| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect()
    }

    /// Whether a source provides a phone at all (a run without one is almost
    /// always a mapping mistake worth a warning).
    pub fn has_phone(&self) -> bool {
        self.lead[idx::PHONE_RAW].is_some()
    }
}

/// One record's fields, by source column index.
pub trait RecordFields {
    /// Field `col` as text; `Ok(None)` when absent or null; `Err(reason)` when
    /// the bytes are not text.
    fn field(&self, col: usize) -> Result<Option<&str>, String>;
}

/// Options every source shares.
#[derive(Debug, Clone)]
pub struct LeadOptions {
    pub batch_size: usize,
    /// Fills a blank `country`.
    pub default_country: Option<&'static str>,
}

/// Builds lead batches of a fixed schema, one validated record at a time.
pub struct LeadBuilder {
    schema: SchemaRef,
    options: LeadOptions,
    text: Vec<StringBuilder>,
    tier: Int32Builder,
    received_at: TimestampMicrosecondBuilder,
    extras: Vec<StringBuilder>,
    rows: usize,
    scratch: String,
    countries: HashMap<String, Option<&'static str>>,
    /// Leads whose `country` named no country we know (kept as written).
    pub unknown_countries: u64,
}

impl LeadBuilder {
    pub fn new(schema: SchemaRef, options: LeadOptions) -> Self {
        let n = options.batch_size;
        let extras = schema.fields().len() - N_LEAD;
        Self {
            text: (0..N_LEAD)
                .map(|_| StringBuilder::with_capacity(n, n * 16))
                .collect(),
            tier: Int32Builder::with_capacity(n),
            received_at: TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC),
            extras: (0..extras)
                .map(|_| StringBuilder::with_capacity(n, n * 8))
                .collect(),
            schema,
            options,
            rows: 0,
            scratch: String::new(),
            countries: HashMap::new(),
            unknown_countries: 0,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn is_full(&self) -> bool {
        self.rows >= self.options.batch_size
    }

    /// Validates `record` and appends it, or returns why it is rejected
    /// (nothing is appended then).
    pub fn push(&mut self, record: &impl RecordFields, map: &ColumnMap) -> Result<(), String> {
        let mut values: [Option<&str>; N_LEAD] = [None; N_LEAD];
        for (i, f) in LEAD_FIELDS.iter().enumerate() {
            if let Some(col) = map.lead[i] {
                values[i] = record
                    .field(col)
                    .map_err(|e| format!("{}: {e}", f.name))?
                    .map(str::trim)
                    .filter(|v| !v.is_empty());
            }
        }
        let mut extras: Vec<Option<&str>> = Vec::with_capacity(map.extras.len());
        for (j, col) in map.extras.iter().enumerate() {
            let v = match col {
                Some(col) => record
                    .field(*col)
                    .map_err(|e| format!("{}: {e}", self.schema.field(N_LEAD + j).name()))?,
                None => None,
            };
            extras.push(v);
        }

        let mut tier = None;
        let mut received_at = None;
        for (i, f) in LEAD_FIELDS.iter().enumerate() {
            let Some(v) = values[i] else { continue };
            match f.kind {
                LeadFieldKind::Int => {
                    tier = Some(
                        parse_int(v)
                            .ok_or_else(|| format!("{}: `{v}` is not a whole number", f.name))?,
                    );
                }
                LeadFieldKind::Timestamp => {
                    received_at = Some(parse_timestamp_us(v).ok_or_else(|| {
                        format!(
                            "{}: `{v}` is not a timestamp (RFC 3339, or YYYY-MM-DD with an optional HH:MM:SS)",
                            f.name
                        )
                    })?);
                }
                LeadFieldKind::Text | LeadFieldKind::Country => {}
            }
        }

        // Every check passed: append.
        let country = match values[idx::COUNTRY] {
            Some(v) => match self.resolve_country(v) {
                Some(code) => Some(code),
                None => {
                    self.unknown_countries += 1;
                    None
                }
            },
            None => self.options.default_country,
        };
        for i in 0..N_LEAD {
            match i {
                idx::LEAD_ID if values[i].is_none() => {
                    let id = lead_id(&values);
                    self.text[i].append_value(id);
                }
                idx::FULL_NAME if values[i].is_none() => {
                    self.scratch.clear();
                    for part in [values[idx::FIRST_NAME], values[idx::LAST_NAME]]
                        .into_iter()
                        .flatten()
                    {
                        if !self.scratch.is_empty() {
                            self.scratch.push(' ');
                        }
                        self.scratch.push_str(part);
                    }
                    let full = (!self.scratch.is_empty()).then_some(self.scratch.as_str());
                    self.text[i].append_option(full);
                }
                idx::COUNTRY => {
                    self.text[i].append_option(country.or(values[i]));
                }
                _ if LEAD_FIELDS[i].kind.data_type() != DataType::Utf8 => {}
                _ => self.text[i].append_option(values[i]),
            }
        }
        self.tier.append_option(tier);
        self.received_at.append_option(received_at);
        for (b, v) in self.extras.iter_mut().zip(extras) {
            b.append_option(v);
        }
        self.rows += 1;
        Ok(())
    }

    fn resolve_country(&mut self, v: &str) -> Option<&'static str> {
        if v.len() == 2 {
            return leadflow_phone::resolve_country(v);
        }
        if let Some(hit) = self.countries.get(v) {
            return *hit;
        }
        let code = leadflow_phone::resolve_country(v);
        if self.countries.len() < 4096 {
            self.countries.insert(v.to_string(), code);
        }
        code
    }

    /// The rows appended so far as a batch; the builder starts over.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        // Text builders are indexed by lead field; the typed fields' stay empty.
        for (f, text) in LEAD_FIELDS.iter().zip(&mut self.text) {
            let col: ArrayRef = match f.kind {
                LeadFieldKind::Int => Arc::new(self.tier.finish()),
                LeadFieldKind::Timestamp => Arc::new(self.received_at.finish()),
                LeadFieldKind::Text | LeadFieldKind::Country => Arc::new(text.finish()),
            };
            columns.push(col);
        }
        for b in &mut self.extras {
            columns.push(Arc::new(b.finish()));
        }
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// `3`, ` 3 `, `+3` and `3.0` are tier 3; `3.5` and `gold` are not tiers.
fn parse_int(v: &str) -> Option<i32> {
    if let Ok(n) = v.parse::<i32>() {
        return Some(n);
    }
    let f: f64 = v.parse().ok()?;
    (f.fract() == 0.0 && f.abs() <= i32::MAX as f64).then_some(f as i32)
}

/// Microseconds since the epoch, UTC. Accepts RFC 3339 (with offset), and
/// `YYYY-MM-DD[ T]HH:MM:SS[.f]` or `YYYY-MM-DD` read as UTC.
pub fn parse_timestamp_us(v: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// A stable id from the lead's identity: email (case-folded), names, company
/// and phone. Stable across runs and versions: xxh3-64 with seed 0, hex.
fn lead_id(values: &[Option<&str>; N_LEAD]) -> LeadId {
    let mut h = Xxh3::new();
    for i in [
        idx::EMAIL,
        idx::FULL_NAME,
        idx::FIRST_NAME,
        idx::LAST_NAME,
        idx::COMPANY,
        idx::PHONE_RAW,
    ] {
        match values[i] {
            Some(v) if i == idx::EMAIL => {
                for b in v.bytes() {
                    h.update(&[b.to_ascii_lowercase()]);
                }
            }
            Some(v) => h.update(v.as_bytes()),
            None => {}
        }
        h.update(&[0x1f]);
    }
    LeadId::new(h.digest())
}

/// `lf-` and 16 hex digits, formatted without allocating.
struct LeadId([u8; 19]);

impl LeadId {
    fn new(hash: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = *b"lf-0000000000000000";
        for i in 0..16 {
            buf[3 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        }
        Self(buf)
    }
}

impl AsRef<str> for LeadId {
    fn as_ref(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_normalize() {
        assert_eq!(normalize_header("\u{feff}First Name "), "first_name");
        assert_eq!(normalize_header("E-Mail"), "e_mail");
        assert_eq!(normalize_header("PHONE_RAW"), "phone_raw");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_us("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_timestamp_us("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp_us("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_timestamp_us("1970-01-01 00:00:00.5"), Some(500_000));
        assert_eq!(parse_timestamp_us("yesterday"), None);
    }

    #[test]
    fn tiers() {
        assert_eq!(parse_int(" 3"), None, "callers trim");
        assert_eq!(parse_int("3"), Some(3));
        assert_eq!(parse_int("3.0"), Some(3));
        assert_eq!(parse_int("3.5"), None);
        assert_eq!(parse_int("gold"), None);
    }

    #[test]
    fn mapping_names_a_bad_lead_column() {
        let err = FieldMapping::parse(&["phone=Mobile".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`phone` is not a lead column"), "{err}");
        assert!(FieldMapping::parse(&["phone_raw=Mobile".into()]).is_ok());
    }
}
