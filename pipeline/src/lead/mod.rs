//! Turning records of any source format into lead batches: column mapping
//! ([`header`]), value parsing ([`values`]) and record building
//! ([`LeadBuilder`]). A record that cannot become a lead yields the reason,
//! which the caller turns into a reject.

mod header;
mod values;

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::HashMap;
use leadflow_schemas::{LEAD_FIELDS, LeadFieldKind, UTC, lead_field_index};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::Result;
pub use header::{ColumnMap, FieldMapping, RESERVED_COLUMNS, column_names, normalize_header};
use values::parse_int;
pub use values::parse_timestamp_us;

// Positions of the lead fields the builder reads or fills itself, from the
// schema's one list of fields.
const LEAD_ID: usize = lead_field_index("lead_id");
const FIRST_NAME: usize = lead_field_index("first_name");
const LAST_NAME: usize = lead_field_index("last_name");
const FULL_NAME: usize = lead_field_index("full_name");
const EMAIL: usize = lead_field_index("email");
const COMPANY: usize = lead_field_index("company");
const PHONE_RAW: usize = lead_field_index("phone_raw");
const COUNTRY: usize = lead_field_index("country");
const ORGANIZATION_ID: usize = lead_field_index("organization_id");
const N_LEAD: usize = LEAD_FIELDS.len();

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
    /// Whose leads these are, when a caller answers for them (an API key
    /// of `leadflow serve`): every lead gets its organization.
    pub owner: Option<Arc<Owner>>,
}

/// The organization every lead belongs to, and the highest tier a lead may
/// claim: a lead naming another organization, or a higher tier, is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub organization_id: String,
    pub max_user_tier: Option<i32>,
}

impl Owner {
    /// Checks `values` against the owner and puts its organization in them.
    fn claim<'a>(
        &'a self,
        values: &mut [Option<&'a str>; N_LEAD],
        tier: Option<i32>,
    ) -> Result<(), String> {
        if let Some(org) = values[ORGANIZATION_ID]
            && org != self.organization_id
        {
            return Err(format!(
                "organization_id {} is not this key's organization ({:?})",
                shown(org),
                self.organization_id
            ));
        }
        if let (Some(tier), Some(max)) = (tier, self.max_user_tier)
            && tier > max
        {
            return Err(format!(
                "user_tier {tier} is above this key's max_user_tier ({max})"
            ));
        }
        values[ORGANIZATION_ID] = Some(&self.organization_id);
        Ok(())
    }
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
    /// The bytes a lead without an id is hashed from.
    id_key: Vec<u8>,
    /// Country names seen, resolved; hashed by foldhash (std's SipHash was
    /// 1% of a run whose leads name their countries in full).
    countries: HashMap<String, Option<&'static str>>,
    /// Bytes per row of each column (text builders, then extras) in the
    /// last batch that said what the next will hold.
    reserve_per_row: Option<Vec<usize>>,
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
            id_key: Vec::new(),
            countries: HashMap::default(),
            reserve_per_row: None,
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
        if let Some(per_row) = self.reserve_per_row.take() {
            self.reserve(&per_row);
        }
        let mut values: [Option<&str>; N_LEAD] = [None; N_LEAD];
        for (i, f) in LEAD_FIELDS.iter().enumerate() {
            if let Some(col) = map.lead[i] {
                values[i] = record
                    .field(col)
                    .map_err(|e| format!("{}: {e}", f.name))?
                    .map(trim)
                    .filter(|v| !v.is_empty());
            }
        }
        // Checked here, read again when appended: no vector per record.
        for (j, col) in map.extras.iter().enumerate() {
            if let Some(col) = col {
                record
                    .field(*col)
                    .map_err(|e| format!("{}: {e}", self.schema.field(N_LEAD + j).name()))?;
            }
        }

        let mut tier = None;
        let mut received_at = None;
        for (i, f) in LEAD_FIELDS.iter().enumerate() {
            let Some(v) = values[i] else { continue };
            match f.kind {
                LeadFieldKind::Int => {
                    tier = Some(parse_int(v).ok_or_else(|| {
                        format!("{}: {} is not a whole number", f.name, shown(v))
                    })?);
                }
                LeadFieldKind::Timestamp => {
                    received_at = Some(parse_timestamp_us(v).ok_or_else(|| {
                        format!(
                            "{}: {} is not a timestamp (RFC 3339, or YYYY-MM-DD with an optional HH:MM:SS)",
                            f.name,
                            shown(v)
                        )
                    })?);
                }
                LeadFieldKind::Text | LeadFieldKind::Country => {}
            }
        }

        let owner = self.options.owner.clone();
        if let Some(owner) = &owner {
            owner.claim(&mut values, tier)?;
        }

        // Every check passed: append.
        let country = match values[COUNTRY] {
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
                LEAD_ID if values[i].is_none() => {
                    let id = lead_id(&values, &mut self.id_key);
                    self.text[i].append_value(id);
                }
                FULL_NAME if values[i].is_none() => {
                    self.scratch.clear();
                    for part in [values[FIRST_NAME], values[LAST_NAME]]
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
                COUNTRY => {
                    self.text[i].append_option(country.or(values[i]));
                }
                _ if matches!(
                    LEAD_FIELDS[i].kind,
                    LeadFieldKind::Int | LeadFieldKind::Timestamp
                ) => {}
                _ => self.text[i].append_option(values[i]),
            }
        }
        self.tier.append_option(tier);
        self.received_at.append_option(received_at);
        for (b, col) in self.extras.iter_mut().zip(&map.extras) {
            b.append_option(col.and_then(|col| record.field(col).ok().flatten()));
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
        let (rows, n) = (self.rows, self.options.batch_size);
        // A batch of at least an eighth of the size says what the next
        // one will hold; one lead cut off by time does not.
        let representative = rows > 0 && rows >= n / 8;
        // Bytes per row of each text builder (the typed fields' stay
        // empty), then each extra's: what the next batch reserves.
        let mut per_row = Vec::with_capacity(self.text.len() + self.extras.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        // Text builders are indexed by lead field; the typed fields' stay empty.
        for (f, text) in LEAD_FIELDS.iter().zip(&mut self.text) {
            per_row.push(text.values_slice().len().div_ceil(rows.max(1)));
            let col: ArrayRef = match f.kind {
                LeadFieldKind::Int => Arc::new(self.tier.finish()),
                LeadFieldKind::Timestamp => Arc::new(self.received_at.finish()),
                LeadFieldKind::Text | LeadFieldKind::Country => Arc::new(text.finish()),
            };
            columns.push(col);
        }
        for b in &mut self.extras {
            per_row.push(b.values_slice().len().div_ceil(rows.max(1)));
            columns.push(Arc::new(b.finish()));
        }
        self.reserve_per_row = representative.then_some(per_row);
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Sizes the emptied builders for a full batch of what the last
    /// representative batch held per row, at the first push after it (a
    /// builder finished once and dropped, as serve's, reserves nothing).
    /// Arrow's `finish` leaves a builder without capacity: every batch grew
    /// each column again by doubling, each step a copy and fresh pages.
    fn reserve(&mut self, per_row: &[usize]) {
        let n = self.options.batch_size;
        let bytes = |column: usize| {
            let per_row = per_row.get(column).copied().unwrap_or(0);
            (per_row.saturating_mul(n) / 8 * 9).min(MAX_RESERVE_BYTES)
        };
        for (i, f) in LEAD_FIELDS.iter().enumerate() {
            match f.kind {
                LeadFieldKind::Int => self.tier = Int32Builder::with_capacity(n),
                LeadFieldKind::Timestamp => {
                    self.received_at =
                        TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC);
                }
                LeadFieldKind::Text | LeadFieldKind::Country => {
                    self.text[i] = StringBuilder::with_capacity(n, bytes(i));
                }
            }
        }
        for (j, b) in self.extras.iter_mut().enumerate() {
            *b = StringBuilder::with_capacity(n, bytes(N_LEAD + j));
        }
    }
}

/// The most bytes a column's builder reserves ahead for a batch (64 MiB).
const MAX_RESERVE_BYTES: usize = 64 << 20;

/// The most of a field a reject's reason quotes: the reason says what is
/// wrong in a line, the `raw` column keeps the record whole.
const SHOWN_CHARS: usize = 200;

/// `v` in backticks for a reject's reason, its first [`SHOWN_CHARS`]
/// characters and its length when it is longer.
fn shown(v: &str) -> String {
    match v.char_indices().nth(SHOWN_CHARS) {
        None => format!("`{v}`"),
        Some((cut, _)) => format!("`{}…` ({} characters)", &v[..cut], v.chars().count()),
    }
}

/// The lead fields (by position) a lead's id is hashed from when it has
/// none, in hash order: a lead with none of them has no identity.
pub const IDENTITY_FIELDS: [usize; 6] =
    [EMAIL, FULL_NAME, FIRST_NAME, LAST_NAME, COMPANY, PHONE_RAW];

/// A stable id from the lead's identity: email (case-folded), names, company
/// and phone. Stable across runs and versions: xxh3-64 with seed 0, hex.
///
/// The key is put together in `key` (a buffer kept between leads) and
/// hashed at once: hashing a lowercased email a byte at a time through
/// the streaming hasher was 4% of a run on leads without ids. Same digest.
fn lead_id(values: &[Option<&str>; N_LEAD], key: &mut Vec<u8>) -> LeadId {
    key.clear();
    for i in IDENTITY_FIELDS {
        match values[i] {
            Some(v) if i == EMAIL => {
                let start = key.len();
                key.extend_from_slice(v.as_bytes());
                key[start..].make_ascii_lowercase();
            }
            Some(v) => key.extend_from_slice(v.as_bytes()),
            None => {}
        }
        key.push(0x1f);
    }
    LeadId::new(xxh3_64(key))
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

/// `str::trim`, answered without decoding when the value starts and ends
/// with a printable ASCII character (most do): 3% of a run's instructions
/// went to trimming every field char by char.
#[inline]
fn trim(v: &str) -> &str {
    match v.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => v,
        [only] if only.is_ascii_graphic() => v,
        _ => v.trim(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trim_is_str_trim() {
        for v in [
            "",
            " ",
            "a",
            "ab",
            " a",
            "a ",
            "\ta\n",
            "\u{a0}a",
            "a\u{3000}",
            "\u{e9}",
            "\u{e9}a",
            "a\u{e9}",
            "~",
            "a b",
            "\u{2003}",
            "x\u{85}",
        ] {
            assert_eq!(super::trim(v), v.trim(), "{v:?}");
        }
    }

    /// Ids are stable across versions: the key hashed at once gives the
    /// digest the streaming hasher gave, fed a byte at a time.
    #[test]
    fn a_lead_id_is_the_digest_it_always_was() {
        use super::*;
        let streamed = |values: &[Option<&str>; N_LEAD]| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for i in IDENTITY_FIELDS {
                match values[i] {
                    Some(v) if i == EMAIL => {
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
        };
        let mut key = Vec::new();
        for (email, name, phone) in [
            (
                Some("Ana.Lopez@Example.COM"),
                Some("Ana L\u{f3}pez"),
                Some("+34 600 000 000"),
            ),
            (None, Some("\u{738b}\u{4f1f}"), None),
            (Some("\u{c9}lodie@X.fr"), None, Some("06 12 34 56 78")),
            (None, None, None),
        ] {
            let mut values = [None; N_LEAD];
            values[EMAIL] = email;
            values[FULL_NAME] = name;
            values[PHONE_RAW] = phone;
            assert_eq!(
                lead_id(&values, &mut key).as_ref(),
                streamed(&values).as_ref()
            );
        }
        // One value pinned (what earlier versions wrote), so the two cannot
        // drift together.
        let mut values = [None; N_LEAD];
        values[EMAIL] = Some("Ada@Example.com");
        assert_eq!(lead_id(&values, &mut key).as_ref(), "lf-1254ad1e6cf8c062");
    }
}
