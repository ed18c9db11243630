//! Phone parsing and E.164 normalization for leadflow.
//!
//! [`PhoneParser`] answers, for a raw phone string and a default region, the
//! fields of `phone_info`: E.164, validity, possibility, region, type,
//! national format and the reason a number failed. `rlibphonenumber` (a port
//! of Google's libphonenumber) is the parser of record; the fast path in
//! `meta` (libphonenumber's own metadata, compiled for one-pass matching)
//! answers the common shapes and is held to [`reference_info`] over
//! [`corpus`]. Plain Rust: no Arrow, no DataFusion.

mod automata;
pub mod corpus;
mod countries_table;
mod country;
mod email_kind;
mod info;
mod meta;

pub use country::resolve_country;
pub use email_kind::EmailKind;
pub use info::{
    PhoneError, PhoneInfo, PhoneParser, PhoneType, example_number_e164, parse_region,
    reference_info,
};
pub use rlibphonenumber::Region;

#[doc(hidden)]
pub use automata::generate as generate_automata;
