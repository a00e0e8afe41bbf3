//! `agent-monitor-wait`: the waiting half of a container's monitor (see
//! `agent::driver::exec::monitor`). `agent monitor` starts the container and then execs this
//! small program from its own directory:
//!
//! `agent-monitor-wait monitor --state-dir D --wait-pid P --wait-fds OUT,ERR,LOCK ID`
//!
//! (the `monitor` word keeps the command line shaped like `agent monitor ...`, so whatever finds
//! monitors by `argv[1] == "monitor"` and the state directory finds both halves).
//!
//! It links only the wait loop, the log writer and the state file, not the whole agent, so its
//! relocated read-only data (written by the dynamic loader in every process of a PIE, hence
//! private memory) is small. No argument parser crate and no logging subscriber for the same
//! reason: warnings go to stderr, which is the container's `monitor.log`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: agent-monitor-wait monitor --state-dir DIR --wait-pid PID \
                     --wait-fds OUT,ERR,LOCK ID (run by `agent monitor`, not by hand)";

#[derive(Debug)]
struct Args {
    state_dir: PathBuf,
    pid: i32,
    fds: Vec<i32>,
    id: String,
}

fn parse(argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut state_dir, mut pid, mut fds, mut id) = (None, None, None, None);
    let mut argv = argv.peekable();
    if argv.peek().is_some_and(|a| a == "monitor") {
        argv.next();
    }
    while let Some(a) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--state-dir" => state_dir = Some(PathBuf::from(value("--state-dir")?)),
            "--wait-pid" => {
                let v = value("--wait-pid")?;
                pid = Some(
                    v.parse::<i32>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("--wait-pid {v:?}: use a process id"))?,
                );
            }
            "--wait-fds" => {
                let v = value("--wait-fds")?;
                fds = Some(
                    v.split(',')
                        .map(|f| f.parse::<i32>().ok().filter(|f| *f >= 0))
                        .collect::<Option<Vec<i32>>>()
                        .ok_or_else(|| {
                            format!("--wait-fds {v:?}: use three descriptor numbers, OUT,ERR,LOCK")
                        })?,
                );
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if id.is_none() => id = Some(s.to_string()),
            s => return Err(format!("unexpected argument {s:?}")),
        }
    }
    Ok(Args {
        state_dir: state_dir.ok_or("--state-dir is required")?,
        pid: pid.ok_or("--wait-pid is required")?,
        fds: fds.ok_or("--wait-fds is required")?,
        id: id.ok_or("the container id is required")?,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            // Not `eprintln!`: it panics when stderr (monitor.log) cannot be written.
            let _ = writeln!(std::io::stderr(), "agent-monitor-wait: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match agent::driver::exec::monitor::resume(&args.state_dir, &args.id, args.pid, &args.fds) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "agent-monitor-wait: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_what_the_monitor_passes() {
        let a =
            args("monitor --state-dir /var/lib/agent --wait-pid 42 --wait-fds 3,4,5 c1").unwrap();
        assert_eq!(a.state_dir, PathBuf::from("/var/lib/agent"));
        assert_eq!((a.pid, a.fds, a.id.as_str()), (42, vec![3, 4, 5], "c1"));
    }

    #[test]
    fn refuses_bad_or_missing_arguments() {
        assert!(
            args("--wait-pid 1 --wait-fds 3,4,5 c1")
                .unwrap_err()
                .contains("--state-dir")
        );
        assert!(
            args("--state-dir d --wait-pid x --wait-fds 3,4,5 c1")
                .unwrap_err()
                .contains("process id")
        );
        assert!(
            args("--state-dir d --wait-pid 1 --wait-fds 3,a c1")
                .unwrap_err()
                .contains("OUT,ERR,LOCK")
        );
        assert!(
            args("--state-dir d --wait-pid 1 --wait-fds 3,4,5")
                .unwrap_err()
                .contains("id")
        );
        assert!(
            args("--state-dir d --wait-pid 1 --wait-fds 3,4,5 a b")
                .unwrap_err()
                .contains("unexpected")
        );
        assert_eq!(
            args("--state-dir d --wait-pid 1 --wait-fds 3,4,5 c1")
                .unwrap()
                .id,
            "c1"
        );
        assert!(args("--bogus").unwrap_err().contains("unknown option"));
    }
}
