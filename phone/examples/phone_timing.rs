//! Rough timing of the parser of record, field by field (exploration aid).
use std::time::Instant;

use leadflow_phone::corpus;
use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat};

fn main() {
    let cases = corpus::build(7, 40);
    println!("{} cases", cases.len());
    leadflow_phone::warm_up();
    let t = Instant::now();
    let parsed: Vec<_> = cases
        .iter()
        .filter_map(|c| PHONE_NUMBER_UTIL.parse(&c.raw, c.region).ok())
        .collect();
    let e = t.elapsed();
    println!(
        "parse: {:.0}/s ({} ok)",
        cases.len() as f64 / e.as_secs_f64(),
        parsed.len()
    );
    let t = Instant::now();
    let mut n = 0;
    for p in &parsed {
        n += PHONE_NUMBER_UTIL.is_valid_number(p) as usize;
    }
    println!(
        "is_valid: {:.0}/s ({n} valid)",
        parsed.len() as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for p in &parsed {
        std::hint::black_box(PHONE_NUMBER_UTIL.get_number_type(p));
    }
    println!(
        "type: {:.0}/s",
        parsed.len() as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for p in &parsed {
        std::hint::black_box(PHONE_NUMBER_UTIL.get_region_for_number(p));
    }
    println!(
        "region: {:.0}/s",
        parsed.len() as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for p in &parsed {
        std::hint::black_box(PHONE_NUMBER_UTIL.is_possible_number(p));
    }
    println!(
        "possible: {:.0}/s",
        parsed.len() as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for p in &parsed {
        std::hint::black_box(PHONE_NUMBER_UTIL.format(p, PhoneNumberFormat::E164));
    }
    println!(
        "e164: {:.0}/s",
        parsed.len() as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    for p in &parsed {
        std::hint::black_box(PHONE_NUMBER_UTIL.format(p, PhoneNumberFormat::National));
    }
    println!(
        "national: {:.0}/s",
        parsed.len() as f64 / t.elapsed().as_secs_f64()
    );
    let mut parser = leadflow_phone::PhoneParser::default();
    let mut info = leadflow_phone::PhoneInfo::default();
    let t = Instant::now();
    for c in &cases {
        parser.parse_into(&c.raw, c.region, &mut info);
    }
    println!(
        "phone_info total: {:.0}/s",
        cases.len() as f64 / t.elapsed().as_secs_f64()
    );
}
