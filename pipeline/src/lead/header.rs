//! Mapping a source's columns onto the lead fields: header names as people
//! write them, the aliases they use, and `--map`.

use std::collections::HashMap;

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
    pub(super) lead: [Option<usize>; N_LEAD],
    pub(super) extras: Vec<Option<usize>>,
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
    fn mapping_names_a_bad_lead_column() {
        let err = FieldMapping::parse(&["phone=Mobile".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`phone` is not a lead column"), "{err}");
        assert!(FieldMapping::parse(&["phone_raw=Mobile".into()]).is_ok());
    }
}
