//! The intake as `agent plan` / `agent validate` use it: one name rule, one permission rule.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::*;

const VOLUME: &str = "apiVersion: agent/v1\nkind: Volume\nmetadata: {name: v}\n";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn problems(loaded: &Loaded) -> Vec<String> {
    loaded.diagnostics().map(ToString::to_string).collect()
}

#[test]
fn writable_files_are_refused_like_the_daemon_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.yaml");
    std::fs::write(&file, VOLUME).unwrap();
    for (mode, who) in [(0o666, "group and others"), (0o664, "its group")] {
        chmod(&file, mode);
        let d = problems(&load_dir(dir.path()).unwrap());
        assert_eq!(d.len(), 1, "{d:?}");
        let want = format!("v.yaml:1:1: refused: mode {mode:04o} lets {who} change it");
        assert!(d[0].contains(&want), "{d:?}");
        assert!(d[0].contains("(fix: chmod go-w "), "{d:?}");
    }
    chmod(&file, 0o644);
    assert!(load_dir(dir.path()).unwrap().is_valid());
}

#[test]
fn refused_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("v.yaml"), VOLUME).unwrap();
    chmod(dir.path(), 0o777);
    let e = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("refused: mode 0777 lets group and others change it"),
        "{e}"
    );
    // A file named directly is checked with the directory that holds it.
    let d = problems(&load_paths(&[dir.path().join("v.yaml")]).unwrap());
    assert!(d[0].contains("refused: mode 0777"), "{d:?}");
    chmod(dir.path(), 0o755);
}

#[test]
fn names_and_file_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("a.yaml"), VOLUME).unwrap();
    std::fs::write(p.join("#a.yaml#"), "junk: [").unwrap();
    std::fs::write(p.join("a.yaml~"), "junk: [").unwrap();
    std::os::unix::fs::symlink("missing.yaml", p.join("gone.yaml")).unwrap();
    nix::unistd::mkfifo(
        &p.join("fifo.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let loaded = load_dir(p).unwrap();
    let names: Vec<_> = loaded
        .files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.yaml", "fifo.yaml", "gone.yaml"]);
    let d = problems(&loaded);
    assert!(d[0].contains("fifo.yaml:1:1: not a regular file"), "{d:?}");
    assert!(
        d[1].contains("gone.yaml:1:1: cannot read the file"),
        "{d:?}"
    );
    // Named directly, any name is read.
    let other = p.join("a.yaml~");
    let loaded = load_paths(&[other]).unwrap();
    assert_eq!(loaded.files.len(), 1);
    assert!(!loaded.is_valid());
}

#[test]
fn snapshot_and_paths_load_alike() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), VOLUME).unwrap();
    std::fs::write(dir.path().join("b.yaml"), VOLUME).unwrap();
    let mut s = Scanner::new(
        dir.path(),
        WatchTiming {
            settle: std::time::Duration::from_millis(1),
            ..WatchTiming::default()
        },
    );
    s.scan();
    let from_snapshot = problems(&load(s.snapshot()));
    let from_paths = problems(&load_dir(dir.path()).unwrap());
    assert_eq!(from_snapshot, from_paths);
    assert!(
        from_paths[0].contains("duplicate Volume name \"v\""),
        "{from_paths:?}"
    );
}

#[test]
fn only_changed_files_are_parsed_and_checks_across_files_still_run() {
    let volume =
        |name: &str| format!("apiVersion: agent/v1\nkind: Volume\nmetadata: {{name: {name}}}\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let write = |file: &str, name: &str| std::fs::write(p.join(file), volume(name)).unwrap();
    write("a.yaml", "a");
    write("b.yaml", "b");
    write("c.yaml", "c");
    let mut s = Scanner::new(
        p,
        WatchTiming {
            settle: std::time::Duration::from_millis(1),
            ..WatchTiming::default()
        },
    );
    s.scan();
    assert_eq!(s.parses(), 3);
    assert!(load(s.snapshot()).is_valid());
    let c_parsed = s.snapshot().files["c.yaml"].parsed.clone();

    // The same bytes again (new mtime): nothing parsed.
    write("b.yaml", "b");
    s.scan();
    assert_eq!(s.parses(), 3);

    // b now clashes with a: only b is parsed, and the check across files still sees the clash.
    write("b.yaml", "a");
    s.scan();
    assert_eq!(s.parses(), 4);
    let d = problems(&load(s.snapshot()));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].contains("b.yaml") && d[0].contains("duplicate Volume name \"a\""),
        "{d:?}"
    );

    // a renames its volume: only a is parsed, and b is fine again without being parsed.
    write("a.yaml", "x");
    s.scan();
    assert_eq!(s.parses(), 5);
    assert!(load(s.snapshot()).is_valid());
    assert!(Arc::ptr_eq(&c_parsed, &s.snapshot().files["c.yaml"].parsed));

    // A file that goes and comes back with other bytes is parsed again.
    std::fs::remove_file(p.join("c.yaml")).unwrap();
    s.scan();
    write("c.yaml", "c2");
    s.scan();
    assert_eq!(s.parses(), 6);
}
