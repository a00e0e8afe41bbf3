//! End-to-end: `agent completion bash|zsh|fish` and `agent man DIR` (issue 18 item 4). The bash
//! script loads in bash and registers the completion; the man pages are valid roff (groff
//! renders them without warnings) and name the commands' flags.

use std::process::Command;

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(agent_e2e::agent_bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("agent {args:?}: {e}"))
}

#[test]
fn bash_completion_loads() {
    let out = agent(&["completion", "bash"]);
    assert!(out.status.success(), "{out:?}");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let script = dir.path().join("agent.bash");
    std::fs::write(&script, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    assert!(check.status.success(), "{check:?}");
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(". {} && complete -p agent", script.display()))
        .output()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    assert!(loaded.status.success(), "{loaded:?}");
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("agent"),
        "{loaded:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--no-stream"), "stats flags missing");
    for shell in ["zsh", "fish"] {
        let out = agent(&["completion", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{out:?}");
    }
    let bad = agent(&["completion", "tcsh"]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
}

#[test]
fn man_pages_are_valid_roff() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = agent(&["man", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "agent.1",
        "agent-stats.1",
        "agent-ps.1",
        "agent-image-pull.1",
    ] {
        let p = dir.path().join(page);
        assert!(p.exists(), "{page} missing");
        let Ok(groff) = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&p)
            .output()
        else {
            panic!("groff is needed for this test (Debian package groff-base)");
        };
        assert!(groff.status.success(), "{page}: {groff:?}");
        assert!(
            groff.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&groff.stderr)
        );
    }
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8"])
        .arg(dir.path().join("agent-stats.1"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(text.contains("Print one reading and exit"), "{text}");
    let roff = std::fs::read_to_string(dir.path().join("agent-stats.1")).unwrap_or_default();
    assert!(roff.contains("\\-\\-no\\-stream"), "{roff}");
}
