//! Integration tests of the UDFs through real SQL, in one binary so the
//! build links once.

mod slt;
mod sql;
