//! The analytics queries shipped in `queries/analytics/`, built into the
//! binary: `leadflow sql --file NAME` runs one, `--list` lists them, and
//! `leadflow report` draws its page from them.

/// One shipped query over `enriched_leads`, `provider_usage` and `rejects`.
#[derive(Debug, Clone, Copy)]
pub struct AnalyticsQuery {
    /// The file's name without `.sql`, as `--file` and `--list` know it.
    pub name: &'static str,
    /// The file's text, its documenting comment first.
    pub sql: &'static str,
}

macro_rules! shipped {
    ($($name:literal),* $(,)?) => {
        &[$(AnalyticsQuery {
            name: $name,
            sql: include_str!(concat!("../../queries/analytics/", $name, ".sql")),
        }),*]
    };
}

/// Every file of `queries/analytics/` (a test holds the two to each other).
pub const QUERIES: &[AnalyticsQuery] = shipped![
    "summary",
    "funnel",
    "provider_scorecard",
    "coverage",
    "spend",
    "policy_compare",
    "line_types",
    "carriers",
    "rejects",
];

impl AnalyticsQuery {
    /// The first line of the file's comment: what the query answers.
    pub fn title(&self) -> &'static str {
        self.sql
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("--"))
            .map_or("", str::trim)
    }
}

/// The shipped query called `name` (`.sql` optional).
pub fn find(name: &str) -> Option<&'static AnalyticsQuery> {
    let name = name.strip_suffix(".sql").unwrap_or(name);
    QUERIES.iter().find(|q| q.name == name)
}

/// The `--list` text: each query's name and title, and how to run one.
pub fn list() -> String {
    let width = QUERIES.iter().map(|q| q.name.len()).max().unwrap_or(0);
    let mut s = String::from("Shipped analytics queries (queries/analytics/NAME.sql):\n\n");
    for q in QUERIES {
        s.push_str(&format!("  {:width$}  {}\n", q.name, q.title()));
    }
    s.push_str("\nRun one: leadflow sql --data DIR --file NAME (or a path to any .sql file)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_queries_analytics_is_shipped_and_titled() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../queries/analytics");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|f| f.strip_suffix(".sql").map(str::to_string))
            .collect();
        files.sort();
        let mut shipped: Vec<String> = QUERIES.iter().map(|q| q.name.to_string()).collect();
        shipped.sort();
        assert_eq!(
            files, shipped,
            "queries/analytics/ and analytics::QUERIES differ"
        );
        for q in QUERIES {
            assert!(!q.title().is_empty(), "{} has no title comment", q.name);
        }
        assert_eq!(find("funnel.sql").unwrap().name, "funnel");
        assert!(find("nope").is_none());
    }
}
