//! `agent validate` refuses a command argument or an environment string longer than the kernel
//! takes in one `execve` string (MAX_ARG_STRLEN, 131072 bytes with the NUL on 4 KiB pages):
//! such a container could never start, and the agent found out only at start, after stopping
//! the container it replaced. One byte less passes. The same for an env file (`envFiles`), and
//! a NUL byte in one (it passed validate and failed at create), and for a Secret given as
//! `secretEnv` (not UTF-8, a NUL byte, too long; as a file it is fine). The files are made here
//! (a checked-in 128 KiB case would bloat `tests/bad/`).

use agent_e2e::manifest::validate;

/// The longest string `execve` takes, without its NUL.
const LONGEST: usize = 131_071;

fn manifest(arg_len: usize, env_len: usize) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  \
         image: 127.0.0.1:5000/busybox:1.36\n  command: [\"/bin/sh\", \"-c\", \"{}\"]\n  \
         env:\n    A: \"{}\"\n  healthcheck: {{command: [\"/bin/true\", \"{}\"]}}\n",
        "a".repeat(arg_len),
        "b".repeat(env_len),
        "c".repeat(arg_len),
    )
}

fn run(text: &str) -> (i32, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("web.yaml"), text).expect("write");
    let (code, out, err) = validate(&[tmp.path()]);
    (code, format!("{out}{err}"))
}

#[test]
fn an_argument_or_env_string_the_kernel_cannot_take_is_refused() {
    // "A=" and the value: LONGEST bytes in all.
    let (code, out) = run(&manifest(LONGEST, LONGEST - 2));
    assert_eq!(
        code, 0,
        "the longest strings execve takes are refused:\n{out}"
    );

    let (code, out) = run(&manifest(LONGEST + 1, LONGEST - 1));
    assert_eq!(code, 1, "{out}");
    for (at, phrase) in [
        (
            "web.yaml:7:30: spec.command[2]",
            "command[2] is 131072 bytes long",
        ),
        (
            "web.yaml:9:8: spec.env.A",
            "environment variable A is 131072 bytes",
        ),
        (
            "web.yaml:10:40: spec.healthcheck.command[1]",
            "healthcheck command[1] is 131072 bytes long",
        ),
    ] {
        assert!(
            out.lines().any(|l| l.contains(&format!("/{at}: "))
                && l.contains(phrase)
                && l.contains("at most 131071")),
            "missing {at} {phrase:?} in:\n{}",
            out.lines()
                .map(|l| l.chars().take(200).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(out.contains("3 problem(s)"), "{out}");
}

#[test]
fn an_env_file_the_kernel_cannot_take_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let env_file = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).expect("write env file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    env_file(
        "ok.env",
        format!("A={}\n", "b".repeat(LONGEST - 2)).as_bytes(),
    );
    env_file("nul.env", b"# a comment\nA=a\0b\n");
    env_file(
        "long.env",
        format!("A={}\n", "b".repeat(LONGEST - 1)).as_bytes(),
    );
    let web = |files: &str| {
        format!(
            "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  \
             image: 127.0.0.1:5000/busybox:1.36\n  envFiles: [{files}]\n"
        )
    };
    std::fs::write(tmp.path().join("web.yaml"), web("ok.env")).expect("write");
    let (code, out, err) = validate(&[tmp.path()]);
    assert_eq!(
        code, 0,
        "the longest string execve takes is refused:\n{out}{err}"
    );

    std::fs::write(
        tmp.path().join("web.yaml"),
        web("ok.env, nul.env, long.env"),
    )
    .expect("write");
    let (code, out, err) = validate(&[tmp.path()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("spec.envFiles[1]: env file nul.env")
                && l.contains("line 2: a NUL byte")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("spec.envFiles[2]: env file long.env")
                && l.contains("variable A is 131072 bytes long")
                && l.contains("at most 131071")),
        "{out}"
    );
    assert!(!out.contains("bbbb"), "a value is shown: {out}");
}

#[test]
fn a_secret_the_kernel_cannot_take_as_env_is_refused_in_secret_env_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    let mut secret = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).expect("write secret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        text.push_str(&format!(
            "apiVersion: agent/v1\nkind: Secret\nmetadata:\n  name: {name}\nspec:\n  file: {}\n---\n",
            p.display()
        ));
    };
    // "PW=" and the value, its trailing newline dropped: LONGEST bytes in all.
    secret("ok", format!("{}\n", "s".repeat(LONGEST - 3)).as_bytes());
    secret("nul", b"a\0b");
    secret("bin", b"\xff\xfe");
    secret("long", "s".repeat(LONGEST - 1).as_bytes());
    std::fs::write(tmp.path().join("secrets.yaml"), &text).expect("write");
    let web = |env: &str| {
        format!(
            "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  \
             image: 127.0.0.1:5000/busybox:1.36\n  secrets: [{{source: nul}}, {{source: bin}}, {{source: long}}]\n  \
             secretEnv: {{{env}}}\n"
        )
    };
    std::fs::write(tmp.path().join("web.yaml"), web("PW: ok")).expect("write");
    let (code, out, err) = validate(&[tmp.path()]);
    assert_eq!(code, 0, "{out}{err}");

    std::fs::write(
        tmp.path().join("web.yaml"),
        web("PW: ok, A: nul, B: bin, C: long"),
    )
    .expect("write");
    let (code, out, err) = validate(&[tmp.path()]);
    assert_eq!(code, 1, "{out}{err}");
    for (field, phrase) in [
        (
            "spec.secretEnv.A",
            "secret nul cannot be environment variable A: its value holds a NUL byte",
        ),
        (
            "spec.secretEnv.B",
            "secret bin cannot be environment variable B: its value is not UTF-8",
        ),
        (
            "spec.secretEnv.C",
            "secret long cannot be environment variable C: it is 131072 bytes long",
        ),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains("web.yaml:8:") && l.contains(field) && l.contains(phrase)),
            "missing {field} {phrase:?} in:\n{out}"
        );
    }
    assert!(out.contains("3 problem(s)"), "{out}");
}
