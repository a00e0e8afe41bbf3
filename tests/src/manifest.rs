//! Helpers for the manifest end-to-end tests: running `agent validate` and reading its output.

use std::path::Path;
use std::process::Output;

/// Runs `agent <args>` from the workspace root and returns its output.
pub fn run_agent(args: &[&str]) -> Output {
    match std::process::Command::new(crate::agent_bin())
        .args(args)
        .current_dir(crate::workspace_root())
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("running agent {args:?}: {e}"),
    }
}

/// Runs `agent validate <paths>` and returns (exit code, stdout, stderr).
pub fn validate(paths: &[&Path]) -> (i32, String, String) {
    let mut args = vec!["validate"];
    let strs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(strs.iter().map(String::as_str));
    let out = run_agent(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
