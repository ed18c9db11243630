//! Where leads come from. Each connector is a directory with its config, its
//! reader and its tests; all of them turn records into lead batches through
//! [`crate::lead::LeadBuilder`] and bad records into rejects.

pub mod files;
pub(crate) mod json;
pub mod kafka;

use std::sync::atomic::{AtomicU64, Ordering};

/// A xorshift generator for tests' random inputs: the same sequence on
/// every run, from `seed` (not zero).
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Counters a source updates as it reads, for the progress bar and summary.
#[derive(Debug, Default)]
pub struct SourceProgress {
    pub bytes_read: AtomicU64,
    pub bytes_total: AtomicU64,
    pub records_read: AtomicU64,
    pub leads: AtomicU64,
    pub rejects: AtomicU64,
    pub unknown_countries: AtomicU64,
    /// NDJSON values under keys first seen after the lines that fix the columns.
    pub unkept_values: AtomicU64,
    /// Set to stop reading: the leads read so far are the whole input (a
    /// canceled job of `leadflow serve`), the rest is not read.
    pub stop: std::sync::atomic::AtomicBool,
}

impl SourceProgress {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
