//! A manifest file whose name holds a newline and a forged diagnostic: `agent validate` shows
//! the name quoted and escaped, so that every problem line is one real problem and no line of
//! its output comes from a file name.

use agent_e2e::manifest::validate;

#[test]
fn a_file_name_cannot_forge_a_diagnostic_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let name = "bad\nforged.yaml:1:1: spec.image: all is well\nx.yaml";
    std::fs::write(
        tmp.path().join(name),
        "apiVersion: agent/v1\nkind: Volume\nmetadata:\n  name: Not_A_Label\n",
    )
    .expect("write");
    let (code, out, err) = validate(&[tmp.path()]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let forged: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| l.starts_with("forged.yaml") || l.starts_with("x.yaml"))
        .collect();
    assert!(
        forged.is_empty(),
        "forged lines: {forged:?}\nstdout:\n{out}"
    );
    assert!(
        out.contains("bad\\nforged.yaml") && out.contains("invalid name"),
        "the problem is not shown with the escaped name:\n{out}"
    );
}
