//! Shared helpers for the end-to-end tests: locating the binary, temporary state directories.

pub mod daemon;
pub mod exec;
pub mod graph;
pub mod layout;
pub mod manifest;
pub mod network;
pub mod store;
pub mod torture;

use std::path::{Path, PathBuf};
use std::sync::Once;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Path of the `agent` binary, built once per test process with `cargo build -p agent --bins`
/// (a workspace member's binary is not built for another member's integration tests; `--bins`
/// also builds `agent-monitor-wait`, which the monitor execs from the same directory).
/// Honours `AGENT_BIN` (use that binary, build nothing), `CARGO_TARGET_DIR` and `CARGO`. Panics
/// if the build fails: no test can run without it.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AGENT_BIN") {
        return PathBuf::from(p);
    }
    static BUILD: Once = Once::new();
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    BUILD.call_once(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "agent", "--bins"])
            .current_dir(&root)
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!("building the agent binary failed: {other:?}"),
        }
    });
    target.join("debug").join("agent")
}

/// utime + stime of process `pid` in clock ticks (0 if it cannot be read).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest's first field is field 3 of stat(5); utime and stime are fields 14 and 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}
