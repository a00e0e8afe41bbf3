//! `agent validate` and `agent schema` through the real binary.

use std::path::Path;

use agent_e2e::manifest::{run_agent, validate};
use agent_e2e::workspace_root;

#[test]
fn examples_are_valid() {
    let root = workspace_root();
    let (code, out, err) = validate(&[&root.join("examples/manifests")]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("all valid"), "{out}");
}

#[test]
fn checked_in_schema_is_current() {
    let out = run_agent(&["schema"]);
    assert!(out.status.success());
    let fresh = String::from_utf8_lossy(&out.stdout);
    let path = workspace_root().join("schema/agent-v1.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        fresh == checked_in,
        "{} is stale: run `cargo run -p agent -- schema > schema/agent-v1.schema.json`",
        path.display()
    );
}

#[test]
fn missing_path_is_a_usage_error() {
    let (code, _, err) = validate(&[Path::new("/nonexistent/agent-manifests")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/agent-manifests"), "{err}");
}
