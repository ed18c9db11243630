//! Mapping a source's columns onto the lead fields: header names as people
//! write them, the aliases they use, and `--map`.

use std::collections::{HashMap, HashSet};

use leadflow_schemas::LEAD_FIELDS;

use super::{N_LEAD, PHONE_RAW};
use crate::error::{Error, Result};

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
    ("mobile_phone", "phone_raw"),
    ("cell_phone", "phone_raw"),
    ("country_code", "country"),
    ("country_region", "country"),
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

/// Names leadflow's output gives its own columns (and the default query its
/// intermediate ones): an input column called so is kept as `input_<name>`,
/// so reading leadflow's own output back, or an export that already has a
/// `run_id`, neither aborts nor silently swaps values.
pub const RESERVED_COLUMNS: &[&str] = &[
    "p",
    "policy",
    "f",
    "dt",
    "provider_calls",
    "phone_e164",
    "phone_valid",
    "phone_country",
    "phone_type",
    "phone_error",
    "found_phone_e164",
    "found_by",
    "lookup_status",
    "lookup_cost_usd",
    "lookup_attempts",
    "lookup_latency_ms",
    "described",
    "line_type",
    "carrier_name",
    "line_type_status",
    "run_id",
    "enriched_at",
];

/// `base`, or when a name given already has it (without case), `base_2`,
/// `base_3`, …, from where `next_suffix` left off for `base`; taken.
fn take_name(
    base: String,
    taken: &mut HashSet<String>,
    next_suffix: &mut HashMap<String, usize>,
) -> String {
    let mut name = base.clone();
    if taken.contains(&name.to_ascii_lowercase()) {
        let k = next_suffix.entry(base.to_ascii_lowercase()).or_insert(2);
        loop {
            name = format!("{base}_{k}");
            *k += 1;
            if !taken.contains(&name.to_ascii_lowercase()) {
                break;
            }
        }
    }
    taken.insert(name.to_ascii_lowercase());
    name
}

/// The name each of a source's columns passes through under, by position:
/// trimmed (and without a byte-order mark); a blank one is `column_<n>`
/// (its 1-based position); one named like leadflow's own output columns, or
/// like a lead field it does not fill, is `input_<name>` (`input_input_<name>`
/// when the input has both, numbered past that); a repeated one gets `_2`, `_3`, … Names compare without
/// case, as DuckDB's and Polars' readers of the output do. Every column keeps
/// its values under a name of its own.
pub fn column_names(header: &[String]) -> Vec<String> {
    let reserved = |name: &str| {
        RESERVED_COLUMNS
            .iter()
            .chain(LEAD_FIELDS.iter().map(|f| &f.name))
            .any(|r| r.eq_ignore_ascii_case(name))
    };
    let trimmed: Vec<&str> = header
        .iter()
        .map(|raw| raw.trim().trim_start_matches('\u{feff}').trim())
        .collect();
    let mut names: Vec<Option<String>> = vec![None; header.len()];
    // Names given so far, without case; and for a repeated name, the suffix
    // to try next, so that n repeats cost n tries, not n².
    let mut taken: HashSet<String> = HashSet::with_capacity(header.len());
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    // Plain names first, so that a reserved name's `input_` form never takes
    // the name of a column the input already has under it.
    for (i, name) in trimmed.iter().enumerate() {
        if reserved(name) {
            continue;
        }
        let base = if name.is_empty() {
            format!("column_{}", i + 1)
        } else {
            name.to_string()
        };
        names[i] = Some(take_name(base, &mut taken, &mut next_suffix));
    }
    for (i, name) in trimmed.iter().enumerate() {
        if names[i].is_some() {
            continue;
        }
        let mut name = format!("input_{name}");
        if taken.contains(&name.to_ascii_lowercase()) {
            name = format!("input_{name}");
        }
        // More repeats are numbered like any name (a prefix per repeat would
        // make names, and the time to build them, grow with their count).
        names[i] = Some(take_name(name, &mut taken, &mut next_suffix));
    }
    names
        .into_iter()
        .map(|n| n.expect("every column named"))
        .collect()
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

    /// The `--map` pairs whose file column `header` lacks, as written.
    pub fn missing_in(&self, header: &[String]) -> Vec<String> {
        let normalized: Vec<String> = header.iter().map(|h| normalize_header(h)).collect();
        let mut missing: Vec<String> = self
            .map
            .iter()
            .filter(|(_, src)| !normalized.contains(src))
            .map(|(lead, src)| format!("{lead}={src}"))
            .collect();
        missing.sort();
        missing
    }
}

/// Where each column of the run's lead schema comes from in one source:
/// built from that source's header (or keys), the same for every record in it.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    pub(super) lead: [Option<usize>; N_LEAD],
    pub(super) extras: Vec<Option<usize>>,
}

impl ColumnMap {
    /// Maps `header` (a source's column names, in order) onto the lead fields
    /// and the run's `extras`.
    pub fn new(header: &[String], mapping: &FieldMapping, extras: &[String]) -> Self {
        let normalized: Vec<String> = header.iter().map(|h| normalize_header(h)).collect();
        let squashed: Vec<String> = normalized.iter().map(|h| h.replace('_', "")).collect();
        let find = |name: &str| normalized.iter().position(|h| h == name);
        // `E-mail Address`, `FirstName`, `Phone-Number`: the name or an
        // alias without its separators, where none is written as ours.
        let find_squashed = |name: &str| {
            let name = name.replace('_', "");
            squashed.iter().position(|h| *h == name)
        };
        let mut lead = [None; N_LEAD];
        for (i, f) in LEAD_FIELDS.iter().enumerate() {
            lead[i] = match mapping.map.get(f.name) {
                Some(src) => find(src),
                None => {
                    let names = || {
                        std::iter::once(f.name).chain(
                            HEADER_ALIASES
                                .iter()
                                .filter(|(_, canonical)| *canonical == f.name)
                                .map(|(alias, _)| *alias),
                        )
                    };
                    names()
                        .find_map(find)
                        .or_else(|| names().find_map(find_squashed))
                }
            };
        }
        // The first column of each name, without case: one pass, not one per extra.
        let mut position: HashMap<String, usize> = HashMap::with_capacity(header.len());
        for (i, name) in column_names(header).into_iter().enumerate() {
            position.entry(name.to_ascii_lowercase()).or_insert(i);
        }
        let extras = extras
            .iter()
            .map(|e| position.get(&e.to_ascii_lowercase()).copied())
            .collect();
        Self { lead, extras }
    }

    /// Source columns that are not lead fields: the extras this source adds,
    /// under the names [`column_names`] gives them.
    pub fn extra_columns(header: &[String], mapping: &FieldMapping) -> Vec<String> {
        let map = Self::new(header, mapping, &[]);
        let used: Vec<usize> = map.lead.iter().flatten().copied().collect();
        column_names(header)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !used.contains(i))
            .map(|(_, name)| name)
            .collect()
    }

    /// Names to look for in a source whose columns were read from a sample
    /// (NDJSON's first lines): the lead fields the sample did not show, as
    /// `--map` or our schema names them, so a later record that has them is
    /// still read.
    pub fn missing_lead_columns(header: &[String], mapping: &FieldMapping) -> Vec<String> {
        let map = Self::new(header, mapping, &[]);
        LEAD_FIELDS
            .iter()
            .zip(map.lead)
            .filter(|(_, found)| found.is_none())
            .map(|(f, _)| {
                mapping
                    .map
                    .get(f.name)
                    .cloned()
                    .unwrap_or(f.name.to_string())
            })
            .collect()
    }

    /// Whether a source provides a phone at all (a run without one is almost
    /// always a mapping mistake worth a warning).
    pub fn has_phone(&self) -> bool {
        self.lead[PHONE_RAW].is_some()
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
    fn every_column_keeps_a_name_of_its_own() {
        let header: Vec<String> = [
            "email",
            "",
            "Notes",
            "notes",
            " ",
            "run_id",
            "phone_e164",
            "input_run_id",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            column_names(&header),
            [
                "input_email",
                "column_2",
                "Notes",
                "notes_2",
                "column_5",
                "input_input_run_id",
                "input_phone_e164",
                "input_run_id"
            ]
        );
        let extras = ColumnMap::extra_columns(&header, &FieldMapping::default());
        assert_eq!(
            extras.len(),
            header.len() - 1,
            "only email is a lead field: {extras:?}"
        );
        let map = ColumnMap::new(&header, &FieldMapping::default(), &extras);
        assert_eq!(map.extras, (1..header.len()).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn many_repeats_of_a_name_are_numbered_in_one_pass() {
        let mut header: Vec<String> = vec!["x".into(); 20_000];
        header.push("X_3".into());
        header.push("x_20001".into());
        let names = column_names(&header);
        let mut expected = vec!["x".to_string()];
        expected.extend((2..=20_000).map(|k| format!("x_{k}")));
        // Taken by a repeat before it: numbered in turn, without case.
        expected.push("X_3_2".into());
        expected.push("x_20001".into());
        assert_eq!(names, expected);
        let extras = ColumnMap::extra_columns(&header, &FieldMapping::default());
        assert_eq!(extras, names);
        let map = ColumnMap::new(&header, &FieldMapping::default(), &extras);
        assert_eq!(map.extras, (0..header.len()).map(Some).collect::<Vec<_>>());

        let reserved = column_names(&vec!["run_id".to_string(); 5]);
        assert_eq!(
            reserved,
            [
                "input_run_id",
                "input_input_run_id",
                "input_input_run_id_2",
                "input_input_run_id_3",
                "input_input_run_id_4"
            ]
        );
    }

    #[test]
    fn headers_as_exports_write_them_find_their_fields() {
        let header: Vec<String> = [
            "E-mail Address",
            "FirstName",
            "Last-Name",
            "Mobile Phone",
            "Country/Region",
            "E-mail 2 Address",
            "Created",
        ]
        .map(String::from)
        .to_vec();
        let map = ColumnMap::new(&header, &FieldMapping::default(), &[]);
        let at = |name: &str| map.lead[leadflow_schemas::lead_field_index(name)];
        assert_eq!(at("email"), Some(0));
        assert_eq!(at("first_name"), Some(1));
        assert_eq!(at("last_name"), Some(2));
        assert_eq!(at("phone_raw"), Some(3));
        assert_eq!(at("country"), Some(4));
        assert_eq!(at("received_at"), None, "`Created` is not read as a time");
        assert_eq!(
            ColumnMap::extra_columns(&header, &FieldMapping::default()),
            ["E-mail 2 Address", "Created"]
        );

        // A column written as ours wins over one that only squashes to it.
        let header: Vec<String> = ["E-Mail", "email"].map(String::from).to_vec();
        let map = ColumnMap::new(&header, &FieldMapping::default(), &[]);
        assert_eq!(
            map.lead[leadflow_schemas::lead_field_index("email")],
            Some(1)
        );
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
