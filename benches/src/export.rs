//! Leads as sales teams export them, for benchmarks that should not flatter
//! us: the phones of [`leadflow_phone::corpus::export`] (20 countries
//! weighted towards the US, every way people write a number, blanks, junk,
//! repeated office lines) in whole leads, as CSV or JSON messages.

use std::io::Write;

pub use leadflow_phone::corpus::export::{ExportPhone, Exports, phones};

/// Writes `n` export-like leads as a CSV file at `path` (through a
/// temporary name, so a file there is always whole).
pub fn write_csv_file(path: &std::path::Path, n: usize, seed: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    write_csv(&mut w, n, seed)?;
    w.flush()?;
    drop(w);
    std::fs::rename(tmp, path)
}

/// Writes `n` export-like leads as CSV (the columns of `e2e`'s own corpus).
pub fn write_csv(w: &mut impl Write, n: usize, seed: u64) -> std::io::Result<()> {
    writeln!(
        w,
        "lead_id,first_name,last_name,email,company,company_website,phone_raw,country,user_tier,organization_id,received_at,utm_source"
    )?;
    let mut exports = Exports::new(seed, (n / 50).max(1));
    for i in 0..n {
        let p = exports.next_phone();
        let phone = if p.raw.contains([',', '"']) {
            format!("\"{}\"", p.raw.replace('"', "\"\""))
        } else {
            p.raw
        };
        writeln!(
            w,
            "L{i},First{},Last{},user{i}@company{}.com,Company {},company{}.com,{phone},{},{},org_{},2026-11-{:02}T{:02}:00:00Z,src{}",
            i % 997,
            i % 991,
            i % 5000,
            i % 5000,
            i % 5000,
            p.country,
            1 + i % 3,
            i % 17,
            20 + i % 3,
            i % 24,
            i % 7
        )?;
    }
    Ok(())
}

/// The `i`-th lead of `write_csv`'s mix as the JSON message `leadflow
/// produce` would send for it (nulls left out, `user_tier` a number).
pub fn lead_json(i: usize, phone: &ExportPhone) -> String {
    let mut lead = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        lead.insert(k.to_string(), v);
    };
    put("lead_id", format!("L{i}").into());
    put("first_name", format!("First{}", i % 997).into());
    put("last_name", format!("Last{}", i % 991).into());
    put("email", format!("user{i}@company{}.com", i % 5000).into());
    put("company", format!("Company {}", i % 5000).into());
    put("company_website", format!("company{}.com", i % 5000).into());
    if !phone.raw.trim().is_empty() {
        put("phone_raw", phone.raw.as_str().into());
    }
    if !phone.country.is_empty() {
        put("country", phone.country.as_str().into());
    }
    put("user_tier", (1 + i % 3).into());
    put("organization_id", format!("org_{}", i % 17).into());
    put(
        "received_at",
        format!("2026-11-{:02}T{:02}:00:00Z", 20 + i % 3, i % 24).into(),
    );
    serde_json::Value::Object(lead).to_string()
}
