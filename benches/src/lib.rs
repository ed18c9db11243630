//! What the benchmarks share: a corpus that looks like real exports, and
//! the harnesses' measure of their children's memory.

pub mod export;

/// The largest peak RSS (KiB) of this process's waited-for children.
pub fn peak_child_rss_kb() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own; RUSAGE_CHILDREN covers waited-for children.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss
}
