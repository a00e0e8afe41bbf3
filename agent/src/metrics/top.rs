//! `agent top NAME`: the processes in a container's cgroup, with the columns of `ps -ef` (as
//! `docker top` shows by default): UID PID PPID C STIME TTY TIME CMD, read from `/proc`.
//!
//! Pids are the host's; UID is the user name from the host's `/etc/passwd` when it has one,
//! else the number (as `ps` prints it). C is the CPU use over the process's life, in percent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::process::{boot_time, clock_ticks, stat_fields};

/// The answer of `GET /v1/containers/{name}/top`, shaped as Docker's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top {
    #[serde(rename = "Titles")]
    pub titles: Vec<String>,
    #[serde(rename = "Processes")]
    pub processes: Vec<Vec<String>>,
}

/// The column titles.
pub const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// The rows of `pids` (processes that are gone by now are left out).
pub fn top(pids: &[i32]) -> Top {
    let users = users();
    let ticks = clock_ticks();
    let boot = boot_time().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut processes = Vec::new();
    for &pid in pids {
        if let Some(row) = row(pid, &users, ticks, boot, now) {
            processes.push(row);
        }
    }
    Top {
        titles: TITLES.iter().map(|t| t.to_string()).collect(),
        processes,
    }
}

/// The processes of the recorded container `c`; an error that says why when it does not run.
pub fn of_container(
    state_dir: &std::path::Path,
    c: &crate::store::ContainerRecord,
) -> Result<Top, String> {
    let not_running = || format!("container {} is not running", c.name);
    if c.state != crate::store::ContainerState::Running {
        return Err(not_running());
    }
    let path = super::sample::cgroups_path(state_dir, &c.id).ok_or_else(not_running)?;
    let pids = crate::driver::exec::cgroups::procs(crate::driver::exec::cgroups::version(), &path);
    if pids.is_empty() {
        return Err(not_running());
    }
    Ok(top(&pids))
}

fn users() -> BTreeMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

fn row(
    pid: i32,
    users: &BTreeMap<u32, String>,
    ticks: u64,
    boot: u64,
    now: u64,
) -> Option<Vec<String>> {
    let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let comm = stat
        .split_once('(')
        .and_then(|(_, r)| r.rsplit_once(')'))
        .map(|(c, _)| c.to_string())
        .unwrap_or_default();
    let f = stat_fields(&stat);
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ppid = num(1);
    let tty_nr = num(4);
    let cpu_ticks = num(11) + num(12);
    let start_secs = boot + num(19) / ticks.max(1);
    let uid = std::fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok())
        })
        .unwrap_or(0);
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ")
    };
    let cpu_secs = cpu_ticks / ticks.max(1);
    let life = now.saturating_sub(start_secs).max(1);
    Some(vec![
        users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
        pid.to_string(),
        ppid.to_string(),
        (cpu_secs * 100 / life).to_string(),
        stime(start_secs, now),
        tty(tty_nr),
        format!(
            "{:02}:{:02}:{:02}",
            cpu_secs / 3600,
            cpu_secs / 60 % 60,
            cpu_secs % 60
        ),
        cmd,
    ])
}

/// `ps`'s STIME: `HH:MM` (UTC) for today's processes, else `MonDD`.
pub fn stime(start: u64, now: u64) -> String {
    let day = |t: u64| t / 86_400;
    if day(start) == day(now) {
        format!("{:02}:{:02}", start / 3600 % 24, start / 60 % 60)
    } else {
        let (_, m, d) = civil(day(start));
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!("{}{d:02}", MONTHS[(m as usize - 1) % 12])
    }
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `ps`'s TTY: `pts/N`, `ttyN` or `?`.
pub fn tty(nr: u64) -> String {
    if nr == 0 {
        return "?".into();
    }
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 => format!("tty{minor}"),
        _ => "?".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn columns_of_this_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let t = top(&[me, i32::MAX]);
        assert_eq!(t.titles, TITLES);
        assert_eq!(t.processes.len(), 1, "{t:?}");
        let r = &t.processes[0];
        assert_eq!(r[1], me.to_string());
        assert!(r[7].contains("agent"), "{r:?}");
        assert_eq!(r[6].len(), 8, "{r:?}");
    }

    #[test]
    fn times_and_ttys() {
        // 2026-12-07 03:46 UTC and the day before.
        let now = 1_796_615_160;
        assert_eq!(stime(now - 60, now), "03:45");
        assert_eq!(stime(now - 86_400, now), "Dec06");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(tty(0), "?");
        assert_eq!(tty((136 << 8) | 3), "pts/3");
        assert_eq!(tty((4 << 8) | 1), "tty1");
    }
}
