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

/// User + system CPU seconds of a live process so far, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_of(&format!("/proc/{pid}/stat"))
}

/// User + system CPU seconds in a `/proc/…/stat` file (a process's or a
/// thread's): fields 14 and 15, counted after the command's closing `)`.
pub fn cpu_of(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_else(|e| panic!("{stat_path}: {e}"));
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat names the command") + 2..]
        .split(' ')
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn children_usage() -> libc::rusage {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own; RUSAGE_CHILDREN covers waited-for children.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage
}
