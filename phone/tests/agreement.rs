//! The fast paths agree with the parser of record, field by field, on the
//! synthetic corpus and on export-like phones.

use leadflow_phone::corpus::{self, Case};
use leadflow_phone::{PhoneInfo, PhoneParser, reference_info};

/// The cases where the parser and `reference_info` give different answers,
/// over two passes (the second runs on warm caches, where shortcuts apply).
fn disagreements(cases: &[Case]) -> Vec<(Case, PhoneInfo, PhoneInfo)> {
    let mut parser = PhoneParser::default();
    let mut info = PhoneInfo::default();
    let mut differ = Vec::new();
    for _pass in 0..2 {
        for case in cases {
            parser.parse_into(&case.raw, case.region, &mut info);
            let want = reference_info(&case.raw, case.region);
            if info != want {
                differ.push((case.clone(), info.clone(), want));
            }
        }
    }
    for (case, got, want) in differ.iter().take(10) {
        eprintln!("{case:?}\n  got  {got:?}\n  want {want:?}");
    }
    differ
}

/// Not one case of `cases` may differ (`what` names them in the message).
fn assert_agrees(cases: &[Case], what: &str) {
    let differ = disagreements(cases);
    assert!(
        differ.is_empty(),
        "{what}: {} of {} differ",
        differ.len(),
        2 * cases.len()
    );
}

#[test]
fn phone_info_agrees_with_libphonenumber_on_the_corpus() {
    let cases = corpus::build(42, 20);
    assert!(cases.len() > 40_000, "corpus too small: {}", cases.len());
    assert_agrees(&cases, "synthetic corpus");
    let valid = cases
        .iter()
        .filter(|c| reference_info(&c.raw, c.region).valid)
        .count();
    assert!(
        valid * 3 > cases.len(),
        "the corpus should be mostly valid numbers: {valid}"
    );
}

#[test]
fn phone_info_agrees_with_libphonenumber_on_export_like_phones() {
    for seed in [1, 2] {
        let cases: Vec<Case> = corpus::export::phones(50_000, seed)
            .into_iter()
            .map(|p| Case {
                region: p.region(),
                raw: p.raw,
            })
            .collect();
        let extensions = cases.iter().filter(|c| c.raw.contains(" x")).count();
        assert!(extensions > 1_000, "the mix has extensions: {extensions}");
        assert_agrees(&cases, &format!("export-like phones, seed {seed}"));
    }
}

#[test]
fn phone_info_agrees_on_hand_written_extensions_and_junk() {
    let numbers = [
        ("(415) 555-0132", "US"),
        ("+1 415 555 0132", "US"),
        ("020 7183 8750", "GB"),
        ("+44 20 7183 8750", "GB"),
        ("030 901820", "DE"),
        ("+49 30 901820", "DE"),
        ("06 12 34 56 78", "FR"),
        ("+61 2 9876 5432", "AU"),
        ("98765 43210", "IN"),
        ("03-1234-5678", "JP"),
    ];
    let extensions = [
        " x290",
        "x290",
        " X 290",
        " x.290",
        " x: 290",
        " ext 290",
        " ext. 290",
        " Ext.290",
        " EXT: 290",
        " extn 290",
        " extension 290",
        " Extension: 290",
        ", ext 290",
        " x 1234567",
        " x1234567890",
        " ext 12345678901234567890",
        " ext 123456789012345678901",
        " #290",
        " x290#",
        " ext-290",
        " / x290",
        " next 290",
        " xt 290",
        " ext,290",
        " ;ext=290",
        " extensión 290",
    ];
    let junk = [
        "n/a",
        "N/A",
        "TBD",
        "000",
        "0",
        "-",
        "+",
        "++",
        "call reception",
        "ask front desk",
        "N/A - email only",
        "unknown",
        "1-800-FLOWERS",
        "tel: 415 555 0132",
        "x290",
        "ext 12",
        "(",
        "()",
        "+ 1",
        "00",
        "+0 123 456",
        "٠١٢٣٤٥٦٧٨٩",
        "４１５５５５０１３２",
    ];
    let mut cases = Vec::new();
    for (number, region) in numbers {
        let region = leadflow_phone::parse_region(region);
        for ext in extensions {
            cases.push(Case {
                raw: format!("{number}{ext}"),
                region,
            });
        }
    }
    for raw in junk {
        for region in [None, leadflow_phone::parse_region("US")] {
            cases.push(Case {
                raw: raw.to_string(),
                region,
            });
        }
    }
    assert_agrees(&cases, "hand-written extensions and junk");
}
