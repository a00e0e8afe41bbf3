//! Shared helpers for the end-to-end tests: locating the binary, temporary state directories.

pub mod daemon;
pub mod exec;
pub mod graph;
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
