//! Where `phone_info`'s time goes, by input shape (exploration aid):
//! `cargo run --release -p leadflow-phone --example phone_timing`.
use std::time::Instant;

use leadflow_phone::{PhoneInfo, PhoneParser, corpus};

fn main() {
    let mut cases = corpus::build(1, 60);
    cases.truncate(100_000);
    let (intl, other): (Vec<_>, Vec<_>) = cases.iter().partition(|c| c.raw.starts_with('+'));
    let mut parser = PhoneParser::default();
    let mut info = PhoneInfo::default();
    for round in 0..3 {
        for (name, set) in [
            ("all", cases.iter().collect::<Vec<_>>()),
            ("+", intl.clone()),
            ("other", other.clone()),
        ] {
            let t = Instant::now();
            for c in &set {
                parser.parse_into(&c.raw, c.region, &mut info);
            }
            let e = t.elapsed();
            if round == 2 {
                println!(
                    "{name:>6}: {:>6} cases, {:.0} ns each, {:.0}/s",
                    set.len(),
                    e.as_nanos() as f64 / set.len() as f64,
                    set.len() as f64 / e.as_secs_f64()
                );
            }
        }
    }
}
