//! The agent process's own use, from `/proc/self`, under the names every Prometheus client
//! library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// One reading of `/proc/self`. Fields are 0 where the file could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    /// Unix seconds.
    pub start_time: f64,
}

/// The fields of `/proc/<pid>/stat` after the command (which may hold spaces and parentheses):
/// index 0 is the state (field 3 of proc(5)).
pub fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 when unknown).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The boot time, Unix seconds (`btime` of `/proc/stat`).
pub fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Reads `/proc/self`.
pub fn read() -> Process {
    let mut p = Process::default();
    let ticks = clock_ticks() as f64;
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        let f = stat_fields(&stat);
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // proc(5) fields 14 utime, 15 stime, 20 num_threads, 22 starttime, 23 vsize, 24 rss.
        p.cpu_seconds = (num(11) + num(12)) as f64 / ticks;
        p.threads = num(17);
        p.virtual_bytes = num(20);
        p.resident_bytes = num(21) * page;
        if let Some(boot) = boot_time() {
            p.start_time = boot as f64 + num(19) as f64 / ticks;
        }
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        p.max_fds = limit.rlim_cur;
    }
    p
}

/// Adds the process metrics of `p` to `r`.
pub fn register(r: &mut Registry, p: &Process) {
    let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
    cpu.inc_by(p.cpu_seconds);
    r.register_with_unit(
        "process_cpu",
        "Total user and system CPU time spent in seconds",
        Unit::Seconds,
        cpu,
    );
    let gauge = |v: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    r.register_with_unit(
        "process_resident_memory",
        "Resident memory size in bytes",
        Unit::Bytes,
        gauge(p.resident_bytes),
    );
    r.register_with_unit(
        "process_virtual_memory",
        "Virtual memory size in bytes",
        Unit::Bytes,
        gauge(p.virtual_bytes),
    );
    r.register("process_threads", "Number of OS threads", gauge(p.threads));
    r.register(
        "process_open_fds",
        "Number of open file descriptors",
        gauge(p.open_fds),
    );
    r.register(
        "process_max_fds",
        "Maximum number of open file descriptors",
        gauge(p.max_fds),
    );
    let start = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    start.set(p.start_time);
    r.register_with_unit(
        "process_start_time",
        "Start time of the process since unix epoch in seconds",
        Unit::Seconds,
        start,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_commands() {
        let f = stat_fields("42 (a b) c)) S 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 5 0 99 1000 12");
        assert_eq!(f[0], "S");
        assert_eq!(f[11], "7");
        assert_eq!(f[12], "3");
        assert_eq!(f[17], "5");
        assert_eq!(f[19], "99");
        assert_eq!(f[21], "12");
    }

    #[test]
    fn reads_this_process() {
        let p = read();
        assert!(p.threads >= 1, "{p:?}");
        assert!(p.resident_bytes > 0, "{p:?}");
        assert!(p.open_fds >= 3, "{p:?}");
        assert!(p.start_time > 1e9, "{p:?}");
    }
}
