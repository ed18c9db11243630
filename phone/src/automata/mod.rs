//! libphonenumber's number patterns as precompiled digit automata.
//!
//! Every pattern the fast path matches a national number against (the eight
//! special types, fixed line, mobile, the general description, a region's
//! leading digits, each national format's leading digits and pattern) is a
//! regular language over the ten digits. [`compile`] turns each region's
//! patterns into two minimal DFAs, one for the number types and one for the
//! formats, whose states carry a mask of the patterns matching there. They are
//! generated from `data/metadata.bin` into `data/automata.bin`, committed,
//! and embedded: a process starts with every region ready, and a number's
//! type is one table walk over its digits. `tests/automata.rs` fails when the
//! file is not what the metadata gives (and rewrites it on request).
//!
//! Generated ahead rather than in a `build.rs` so that a build does not
//! compile the metadata's decoder (prost, rlibphonenumber) a second time for
//! the build script.

pub(crate) mod compile;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneMetadata, PhoneNumberDesc, Region};

use compile::{Anchor, DigitDfa};

/// The automata of `data/metadata.bin`; see `tests/automata.rs`.
pub(crate) static AUTOMATA: &[u8] = include_bytes!("../../data/automata.bin");

const MAGIC: &[u8; 8] = b"LFPHDFA1";

/// Bits of a region's type DFA, in the order libphonenumber tests them.
pub(crate) mod types {
    /// The first eight: premium rate, toll free, shared cost, VoIP, personal
    /// number, pager, UAN, voicemail.
    pub(crate) const SPECIAL: usize = 8;
    pub(crate) const FIXED: usize = 8;
    pub(crate) const MOBILE: usize = 9;
    pub(crate) const GENERAL: usize = 10;
    /// The region's own leading digits (regions sharing a calling code).
    pub(crate) const LEADING: usize = 11;
}

/// Bit of format i's leading digits in a format DFA's mask; its pattern is
/// bit `FORMAT_PATTERN + i`.
pub(crate) const FORMAT_PATTERN: usize = 64;

/// A digit DFA ready to run: state 0 is dead.
#[derive(Debug)]
pub(crate) struct Dfa<M> {
    start: u16,
    next: Box<[u16]>,
    mask: Box<[M]>,
}

impl<M: Copy + Default> Dfa<M> {
    /// The mask of the patterns that match all of `digits` (ASCII digits).
    #[inline]
    pub(crate) fn run(&self, digits: &[u8]) -> M {
        let mut state = usize::from(self.start);
        for &b in digits {
            state = usize::from(self.next[state * 10 + usize::from(b.wrapping_sub(b'0') % 10)]);
            if state == 0 {
                return M::default();
            }
        }
        self.mask[state]
    }
}

/// A region's two automata.
#[derive(Debug)]
pub(crate) struct RegionAutomata {
    pub(crate) types: Dfa<u16>,
    pub(crate) formats: Dfa<u128>,
}

/// Everything `data/automata.bin` holds.
pub(crate) struct Automata {
    pub(crate) regions: Vec<(Region, RegionAutomata)>,
    /// Calling code → its regions, main region first (libphonenumber's order).
    pub(crate) regions_of: Vec<(i32, Vec<Region>)>,
}

/// A region's number descriptions in the order of its type DFA's bits (see
/// [`types`]): the eight special types, fixed line, mobile, general.
// rlibphonenumber deprecates these fields because its wrapper moves them out
// of its own copy; ours is decoded from the file, where they are filled.
#[allow(deprecated)]
pub(crate) fn type_descs(m: &PhoneMetadata) -> [&Option<PhoneNumberDesc>; 11] {
    [
        &m.premium_rate,
        &m.toll_free,
        &m.shared_cost,
        &m.voip,
        &m.personal_number,
        &m.pager,
        &m.uan,
        &m.voicemail,
        &m.fixed_line,
        &m.mobile,
        &m.general_desc,
    ]
}

/// The patterns of a region's type DFA, bit by bit (see [`types`]).
#[allow(deprecated)]
pub(crate) fn type_patterns(m: &PhoneMetadata) -> Vec<(Option<&str>, Anchor)> {
    let mut patterns: Vec<(Option<&str>, Anchor)> = type_descs(m)
        .into_iter()
        .map(|d| {
            let p = d
                .as_ref()
                .and_then(|d| d.national_number_pattern.as_deref())
                .filter(|p| !p.is_empty());
            (p.map(unwrap_pattern), Anchor::Whole)
        })
        .collect();
    let leading = m.leading_digits.as_deref().filter(|p| !p.is_empty());
    patterns.push((leading.map(unwrap_pattern), Anchor::Prefix));
    patterns
}

/// The patterns of a region's format DFA: each format's last leading-digits
/// pattern (always matching when it has none) at bit i, its pattern at bit
/// `FORMAT_PATTERN + i`.
#[allow(deprecated)]
pub(crate) fn format_patterns(m: &PhoneMetadata) -> Result<Vec<(Option<&str>, Anchor)>, String> {
    if m.number_format.len() > FORMAT_PATTERN {
        return Err(format!("{}: {} formats", m.id, m.number_format.len()));
    }
    let mut patterns = vec![(None, Anchor::Whole); 2 * FORMAT_PATTERN];
    for (i, f) in m.number_format.iter().enumerate() {
        let leading = f
            .leading_digits_pattern
            .last()
            .map_or("", |l| unwrap_pattern(l));
        patterns[i] = (Some(leading), Anchor::Prefix);
        patterns[FORMAT_PATTERN + i] = (Some(unwrap_pattern(&f.pattern)), Anchor::Whole);
    }
    Ok(patterns)
}

/// A pattern without the `^(?:…)$` some metadata fields carry.
pub(crate) fn unwrap_pattern(p: &str) -> &str {
    p.strip_prefix("^(?:")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap_or(p)
}

/// Builds `data/automata.bin` from the metadata: what `tests/automata.rs`
/// compares with the committed file.
#[doc(hidden)]
pub fn generate() -> Result<Vec<u8>, String> {
    let mut out = MAGIC.to_vec();
    let regions = crate::meta::decoded_metadata();
    out.extend_from_slice(&(regions.len() as u32).to_le_bytes());
    for (region, m) in &regions {
        let types = compile::build(&type_patterns(m)).map_err(|e| format!("{}: {e}", m.id))?;
        let formats = compile::build(&format_patterns(m)?).map_err(|e| format!("{}: {e}", m.id))?;
        out.extend_from_slice(&(*region as u16).to_le_bytes());
        write_dfa(&mut out, &types, 2);
        write_dfa(&mut out, &formats, 16);
    }
    let codes: Vec<i32> = {
        let mut c: Vec<i32> = PHONE_NUMBER_UTIL.get_supported_calling_codes().collect();
        c.sort_unstable();
        c
    };
    out.extend_from_slice(&(codes.len() as u16).to_le_bytes());
    for cc in codes {
        let regions: Vec<Region> = PHONE_NUMBER_UTIL
            .get_regions_for_country_calling_code(cc)
            .map(|r| r.collect())
            .unwrap_or_default();
        out.extend_from_slice(&(cc as u16).to_le_bytes());
        out.push(regions.len() as u8);
        for r in regions {
            out.extend_from_slice(&(r as u16).to_le_bytes());
        }
    }
    Ok(out)
}

fn write_dfa(out: &mut Vec<u8>, dfa: &DigitDfa, mask_bytes: usize) {
    out.extend_from_slice(&(dfa.mask.len() as u16).to_le_bytes());
    out.extend_from_slice(&dfa.start.to_le_bytes());
    for n in &dfa.next {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for m in &dfa.mask {
        out.extend_from_slice(&m.to_le_bytes()[..mask_bytes]);
    }
}

/// Reads what [`generate`] wrote.
pub(crate) fn decode(bytes: &[u8]) -> Result<Automata, String> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a leadflow automata file".into());
    }
    let n = r.u32()? as usize;
    let mut regions = Vec::with_capacity(n);
    for _ in 0..n {
        let region = r.region()?;
        let types = r.dfa(2, |b| u16::from_le_bytes([b[0], b[1]]))?;
        let formats = r.dfa(16, |b| u128::from_le_bytes(b.try_into().unwrap_or([0; 16])))?;
        regions.push((region, RegionAutomata { types, formats }));
    }
    let codes = r.u16()? as usize;
    let mut regions_of = Vec::with_capacity(codes);
    for _ in 0..codes {
        let cc = i32::from(r.u16()?);
        let k = r.take(1)?[0] as usize;
        let list = (0..k).map(|_| r.region()).collect::<Result<Vec<_>, _>>()?;
        regions_of.push((cc, list));
    }
    Ok(Automata {
        regions,
        regions_of,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or("automata file ends early")?;
        self.at += n;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn region(&mut self) -> Result<Region, String> {
        let code = self.u16()?;
        region_from_u16(code).ok_or_else(|| format!("unknown region {code:#x}"))
    }

    fn dfa<M>(&mut self, mask_bytes: usize, mask: impl Fn(&[u8]) -> M) -> Result<Dfa<M>, String> {
        let states = self.u16()? as usize;
        let start = self.u16()?;
        let next = self
            .take(states * 20)?
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect::<Box<[u16]>>();
        if next.iter().any(|&n| usize::from(n) >= states) || usize::from(start) >= states {
            return Err("automata file: state out of range".into());
        }
        let masks = self
            .take(states * mask_bytes)?
            .chunks_exact(mask_bytes)
            .map(mask)
            .collect();
        Ok(Dfa {
            start,
            next,
            mask: masks,
        })
    }
}

/// A region from its `repr(u16)` value (two ASCII letters, or 1 for the
/// non-geographic entity).
fn region_from_u16(code: u16) -> Option<Region> {
    if code == Region::World as u16 {
        return Some(Region::World);
    }
    let letters = [(code >> 8) as u8, code as u8];
    Region::from_code(std::str::from_utf8(&letters).ok()?).ok()
}
