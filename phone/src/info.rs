//! The answer `phone_info` gives for one raw phone number, and the parser that fills it.

use std::fmt::Write;

use rlibphonenumber::{
    PHONE_NUMBER_UTIL, ParseError, PhoneNumber, PhoneNumberFormat, PhoneNumberType, Region,
};

use crate::meta;

/// What kind of line a number is, as libphonenumber classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneType {
    FixedLine,
    Mobile,
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    Voip,
    PersonalNumber,
    Pager,
    Uan,
    Voicemail,
    Unknown,
}

impl PhoneType {
    /// The stable snake_case name written to output columns.
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneType::FixedLine => "fixed_line",
            PhoneType::Mobile => "mobile",
            PhoneType::FixedLineOrMobile => "fixed_line_or_mobile",
            PhoneType::TollFree => "toll_free",
            PhoneType::PremiumRate => "premium_rate",
            PhoneType::SharedCost => "shared_cost",
            PhoneType::Voip => "voip",
            PhoneType::PersonalNumber => "personal_number",
            PhoneType::Pager => "pager",
            PhoneType::Uan => "uan",
            PhoneType::Voicemail => "voicemail",
            PhoneType::Unknown => "unknown",
        }
    }
}

impl From<PhoneNumberType> for PhoneType {
    fn from(t: PhoneNumberType) -> Self {
        match t {
            PhoneNumberType::FixedLine => PhoneType::FixedLine,
            PhoneNumberType::Mobile => PhoneType::Mobile,
            PhoneNumberType::FixedLineOrMobile => PhoneType::FixedLineOrMobile,
            PhoneNumberType::TollFree => PhoneType::TollFree,
            PhoneNumberType::PremiumRate => PhoneType::PremiumRate,
            PhoneNumberType::SharedCost => PhoneType::SharedCost,
            PhoneNumberType::VoIP => PhoneType::Voip,
            PhoneNumberType::PersonalNumber => PhoneType::PersonalNumber,
            PhoneNumberType::Pager => PhoneType::Pager,
            PhoneNumberType::UAN => PhoneType::Uan,
            PhoneNumberType::VoiceMail => PhoneType::Voicemail,
            PhoneNumberType::Unknown => PhoneType::Unknown,
        }
    }
}

/// Why a raw phone did not yield a valid number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneError {
    /// NULL or blank input.
    Missing,
    /// Not shaped like a phone number at all.
    NotANumber,
    /// A `+` number whose calling code does not exist, or a national number
    /// without a usable default region.
    InvalidCountryCode,
    /// Nothing usable after an international dialing prefix.
    TooShortAfterIdd,
    /// Fewer digits than any number of the region.
    TooShort,
    /// More digits than any number of the region.
    TooLong,
    /// Parsed, but no number range of the region contains it.
    InvalidNumber,
}

impl PhoneError {
    /// The stable snake_case name written to `phone_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneError::Missing => "missing",
            PhoneError::NotANumber => "not_a_number",
            PhoneError::InvalidCountryCode => "invalid_country_code",
            PhoneError::TooShortAfterIdd => "too_short_after_idd",
            PhoneError::TooShort => "too_short",
            PhoneError::TooLong => "too_long",
            PhoneError::InvalidNumber => "invalid_number",
        }
    }
}

impl From<&ParseError> for PhoneError {
    fn from(e: &ParseError) -> Self {
        match e {
            ParseError::InvalidCountryCode => PhoneError::InvalidCountryCode,
            ParseError::NotANumber(_) => PhoneError::NotANumber,
            ParseError::TooShortAfterIdd => PhoneError::TooShortAfterIdd,
            ParseError::TooShortNsn => PhoneError::TooShort,
            ParseError::TooLongNsn => PhoneError::TooLong,
        }
    }
}

/// The fields of `phone_info` for one input. Reused across rows: the string
/// buffers keep their capacity, so filling it does not allocate once warm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneInfo {
    /// E.164 (`+14155550123`); empty when the input did not parse.
    pub e164: String,
    /// National format (`(415) 555-0123`); empty when the input did not parse.
    pub national: String,
    /// Whether the input parsed into a number at all.
    pub parsed: bool,
    pub valid: bool,
    pub possible: bool,
    /// The region the number belongs to, when libphonenumber can tell.
    pub country: Option<Region>,
    /// `None` when the input did not parse.
    pub phone_type: Option<PhoneType>,
    /// `None` exactly when `valid`.
    pub error: Option<PhoneError>,
}

impl PhoneInfo {
    pub(crate) fn clear(&mut self) {
        self.e164.clear();
        self.national.clear();
        self.parsed = false;
        self.valid = false;
        self.possible = false;
        self.country = None;
        self.phone_type = None;
        self.error = None;
    }

    fn fail(&mut self, error: PhoneError) {
        self.clear();
        self.error = Some(error);
    }

    /// The E.164 form when the number is valid: what `normalize_phone` returns.
    pub fn valid_e164(&self) -> Option<&str> {
        self.valid.then_some(self.e164.as_str())
    }
}

/// Parses a region code such as `US` or `gb` (any case). `None` for anything
/// that is not a region libphonenumber has metadata for.
pub fn parse_region(code: &str) -> Option<Region> {
    let region = Region::from_code(code.trim()).ok()?;
    PHONE_NUMBER_UTIL
        .get_country_code_for_region(region)
        .is_some()
        .then_some(region)
}

/// Fills [`PhoneInfo`] for raw phone strings. Cheap to create; keeps only
/// scratch space between rows; the fast path's tables are shared and loaded
/// once per process.
#[derive(Debug, Default)]
pub struct PhoneParser {
    scratch: meta::Scratch,
    /// Leaves [`PhoneInfo::national`] empty: formatting it is about a
    /// fifth of a parse, and most callers read only the E.164 form.
    skip_national: bool,
}

impl PhoneParser {
    /// A parser that leaves [`PhoneInfo::national`] empty; every other
    /// field is as [`PhoneParser::default`] fills it.
    pub fn without_national() -> Self {
        Self {
            skip_national: true,
            ..Self::default()
        }
    }

    /// Parses `raw` with `region` as the default region for national numbers.
    pub fn parse_into(&mut self, raw: &str, region: Option<Region>, out: &mut PhoneInfo) {
        let blank = if raw.is_ascii() {
            raw.trim_ascii().is_empty()
        } else {
            raw.trim().is_empty()
        };
        if blank {
            out.fail(PhoneError::Missing);
            return;
        }
        if let Some(parsed) = meta::parse(raw, region, &mut self.scratch) {
            fill_from_parsed(&parsed, out, !self.skip_national);
            return;
        }
        // Without a digit nothing can start a number (libphonenumber looks
        // for a digit in any script, so only for ASCII input).
        if raw.is_ascii() && !raw.bytes().any(|b| b.is_ascii_digit()) {
            out.fail(PhoneError::NotANumber);
            return;
        }
        match PHONE_NUMBER_UTIL.parse(raw, region) {
            Ok(number) => fill_from_number(&number, out, !self.skip_national),
            Err(e) => out.fail(PhoneError::from(&e)),
        }
    }
}

/// The fields of a number the fast path parsed: region and type are already
/// known; validity follows from them as in `fill_from_number`.
fn fill_from_parsed(parsed: &meta::Parsed<'_>, out: &mut PhoneInfo, national: bool) {
    out.clear();
    out.parsed = true;
    out.country = parsed.region;
    out.valid = parsed.region.is_some() && parsed.number_type != PhoneType::Unknown;
    out.phone_type = Some(parsed.number_type);
    out.error = (!out.valid).then_some(PhoneError::InvalidNumber);
    out.possible = parsed.possible;
    parsed.write_e164(&mut out.e164);
    if national && !parsed.write_national(&mut out.national) {
        out.national.clear();
        let mut number = phone_number(parsed.country_code, parsed.nsn);
        number.extension = parsed.extension.map(str::to_string);
        out.national
            .push_str(&PHONE_NUMBER_UTIL.format(&number, PhoneNumberFormat::National));
    }
}

/// The `PhoneNumber` libphonenumber's `parse` builds for a calling code and a
/// national significant number.
fn phone_number(country_code: i32, nsn: &str) -> PhoneNumber {
    let mut number = PhoneNumber {
        country_code,
        national_number: nsn.parse().unwrap_or_default(),
        ..Default::default()
    };
    // libphonenumber keeps leading zeros of the national number (Italy and others).
    let zeros = nsn.bytes().take_while(|&b| b == b'0').count();
    if zeros > 0 {
        number.italian_leading_zero = Some(true);
        let zeros = if zeros == nsn.len() { zeros - 1 } else { zeros };
        if zeros > 1 {
            number.number_of_leading_zeros = Some(zeros as i32);
        }
    }
    number
}

/// The answer of the parser of record with no shortcut: every field from its
/// own libphonenumber call. What the fast path is checked against.
pub fn reference_info(raw: &str, region: Option<Region>) -> PhoneInfo {
    let mut out = PhoneInfo::default();
    if raw.trim().is_empty() {
        out.fail(PhoneError::Missing);
        return out;
    }
    match PHONE_NUMBER_UTIL.parse(raw, region) {
        Ok(number) => {
            out.parsed = true;
            out.country = PHONE_NUMBER_UTIL.get_region_for_number(&number);
            out.valid = PHONE_NUMBER_UTIL.is_valid_number(&number);
            out.possible = PHONE_NUMBER_UTIL.is_possible_number(&number);
            out.phone_type = Some(PHONE_NUMBER_UTIL.get_number_type(&number).into());
            out.error = (!out.valid).then_some(PhoneError::InvalidNumber);
            out.e164 = PHONE_NUMBER_UTIL
                .format(&number, PhoneNumberFormat::E164)
                .into_owned();
            out.national = PHONE_NUMBER_UTIL
                .format(&number, PhoneNumberFormat::National)
                .into_owned();
        }
        Err(e) => out.fail(PhoneError::from(&e)),
    }
    out
}

pub(crate) fn fill_from_number(number: &PhoneNumber, out: &mut PhoneInfo, national: bool) {
    out.clear();
    out.parsed = true;
    let number_type = PhoneType::from(PHONE_NUMBER_UTIL.get_number_type(number));
    out.country = PHONE_NUMBER_UTIL.get_region_for_number(number);
    // libphonenumber's is_valid_number is "region known and type not unknown",
    // computed over the same patterns a second time.
    out.valid = out.country.is_some() && number_type != PhoneType::Unknown;
    out.possible = PHONE_NUMBER_UTIL.is_possible_number(number);
    out.phone_type = Some(number_type);
    out.error = (!out.valid).then_some(PhoneError::InvalidNumber);
    let _ = write!(
        out.e164,
        "{}",
        PHONE_NUMBER_UTIL.format(number, PhoneNumberFormat::E164)
    );
    // The E.164 form is `+`, the calling code, then the national significant number.
    if national {
        let nsn_start = out.e164.len() - national_len(number, &out.e164);
        let nsn = &out.e164[nsn_start..];
        write_national(number, nsn, &mut out.national);
    }
}

/// The national format from the metadata's formats; rlibphonenumber for
/// numbers with an extension or formats the fast path does not model.
fn write_national(number: &PhoneNumber, nsn: &str, out: &mut String) {
    if number.extension.is_none() && meta::format_national(number.country_code, nsn, out) {
        return;
    }
    out.push_str(&PHONE_NUMBER_UTIL.format(number, PhoneNumberFormat::National));
}

/// Length of the national significant number inside an E.164 string.
fn national_len(number: &PhoneNumber, e164: &str) -> usize {
    let cc_digits = number.country_code.max(1).ilog10() as usize + 1;
    e164.len().saturating_sub(1 + cc_digits)
}

/// libphonenumber's example mobile number for `region` in E.164 (falling back
/// to its general example when the region lists no mobile one). The provider
/// sandbox builds its answers from these.
pub fn example_number_e164(region: Region) -> Option<String> {
    let number = PHONE_NUMBER_UTIL
        .get_example_number_for_type_and_region(region, PhoneNumberType::Mobile)
        .or_else(|_| PHONE_NUMBER_UTIL.get_example_number(region))
        .ok()?;
    Some(
        PHONE_NUMBER_UTIL
            .format(&number, PhoneNumberFormat::E164)
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(raw: &str, region: &str) -> PhoneInfo {
        let mut out = PhoneInfo::default();
        PhoneParser::default().parse_into(raw, parse_region(region), &mut out);
        out
    }

    #[test]
    fn us_national_number() {
        let i = info("(201) 555-0123", "US");
        assert!(i.parsed && i.possible);
        assert_eq!(i.e164, "+12015550123");
        assert_eq!(
            i.country.map(|r| r.as_region_str().to_string()),
            Some("US".into())
        );
    }

    #[test]
    fn without_national_fills_every_other_field_alike() {
        // The fast path, libphonenumber's own (an extension, a letter), junk.
        let inputs = [
            ("(201) 555-0123", "US"),
            ("+44 20 7946 0958", ""),
            ("020 7946 0958 ext. 12", "GB"),
            ("1-800-FLOWERS", "US"),
            ("06 12 34 56 78", "FR"),
            ("+81 3-1234-5678", ""),
            ("0039 06 6988 1234", "IT"),
            ("12", "DE"),
            ("not a phone", "US"),
            ("", ""),
        ];
        let (mut with, mut without) = (PhoneParser::default(), PhoneParser::without_national());
        let mut formatted = 0;
        for (raw, region) in inputs {
            let (mut a, mut b) = (PhoneInfo::default(), PhoneInfo::default());
            with.parse_into(raw, parse_region(region), &mut a);
            without.parse_into(raw, parse_region(region), &mut b);
            assert!(b.national.is_empty(), "{raw}: {}", b.national);
            formatted += usize::from(!a.national.is_empty());
            a.national.clear();
            assert_eq!(a, b, "{raw} in {region}");
        }
        assert!(
            formatted >= 6,
            "only {formatted} inputs had a national format"
        );
    }

    #[test]
    fn blank_is_missing() {
        assert_eq!(info("  ", "US").error, Some(PhoneError::Missing));
    }

    #[test]
    fn junk_is_not_a_number() {
        let i = info("call me maybe", "US");
        assert!(!i.parsed && !i.valid);
        assert_eq!(i.error, Some(PhoneError::NotANumber));
        assert!(i.e164.is_empty());
    }

    #[test]
    fn national_number_without_region() {
        assert_eq!(
            info("020 7183 8750", "").error,
            Some(PhoneError::InvalidCountryCode)
        );
    }

    #[test]
    fn unknown_region_code_is_none() {
        assert!(parse_region("ZZ").is_none());
        assert!(parse_region("gb").is_some());
    }
}
