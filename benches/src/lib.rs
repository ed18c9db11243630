//! What the benchmarks share: a corpus that looks like real exports, and
//! the harnesses' measure of their children's memory and CPU.

pub mod export;

/// The largest peak RSS (KiB) of this process's waited-for children.
pub fn peak_child_rss_kb() -> i64 {
    children_usage().ru_maxrss
}

/// User + system CPU seconds of this process's waited-for children.
pub fn child_cpu_secs() -> f64 {
    let usage = children_usage();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn children_usage() -> libc::rusage {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own; RUSAGE_CHILDREN covers waited-for children.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage
}
