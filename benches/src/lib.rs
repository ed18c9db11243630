//! What the benchmarks share: a corpus that looks like real exports.

pub mod export;
