//! End-to-end: `agent exec` and the driver's exec into a running container (root).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::driver::exec::spec::Rlimit;
use agent::driver::exec::{ExecDriver, ExecRequest, ExecStdio};
use agent_e2e::exec::{Fixture, require_root};
use agent_e2e::graph::agent_bin;

fn sleeper(f: &mut Fixture, name: &str) -> String {
    let mut s = f.spec(name);
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    s.env.insert("FROM_SPEC".into(), "yes".into());
    s.workdir = Some("/srv".into());
    s.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 777,
        hard: 888,
    }];
    f.run(&s)
}

#[test]
fn exec_runs_inside_the_container_with_its_settings() {
    if !require_root("exec_runs_inside_the_container_with_its_settings") {
        return;
    }
    let mut f = Fixture::new("exec");
    let id = sleeper(&mut f, "box");
    let out = f.agent(&[
        "exec",
        "box",
        "--",
        "/bin/sh",
        "-c",
        "hostname; pwd; id -u; echo $FROM_SPEC; ulimit -n; grep Seccomp: /proc/self/status | tr -d '\\t '; \
         cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 5",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "box\n/srv\n0\nyes\n777\nSeccomp:2\nsleep 1000 \n");
    // user, workdir and env overrides; user names resolve in the container's /etc/passwd
    let out = f.agent(&[
        "exec",
        "-u",
        "user",
        "-w",
        "/tmp",
        "-e",
        "X=1",
        "box",
        "--",
        "/bin/sh",
        "-c",
        "id -u; id -g; pwd; echo $X $HOME",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1000\n1000\n/tmp\n1 /home/user\n"
    );
    // the exec'd process is in the container's cgroup
    let out = f.agent(&["exec", "box", "--", "cat", "/proc/self/cgroup"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&f.cgroup_parent),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // stdin is /dev/null without -i, passed through with -i
    let mut child = Command::new(agent_bin())
        .args(["exec", "-i", "box", "--state-dir"])
        .arg(&f.state)
        .args(["--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, b"piped in\n").unwrap_or_else(|e| panic!("{e}"));
    }
    let o = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\n");
    // the driver's exec (what a daemon calls), capturing output
    let o = f
        .driver
        .exec(
            &id,
            &ExecRequest {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo out; echo err >&2; exit 3".into(),
                ],
                ..ExecRequest::default()
            },
            ExecStdio::Capture,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (o.exit_code, o.stdout.as_slice(), o.stderr.as_slice()),
        (3, &b"out\n"[..], &b"err\n"[..])
    );
    // errors: unknown command, stopped container, unknown container
    let out = f.agent(&["exec", "box", "--", "/no/such/binary"]);
    assert_ne!(out.status.code(), Some(0));
    f.driver
        .stop(&id, Some(Duration::from_millis(100)))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = f.agent(&["exec", "box", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = f.agent(&["exec", "nosuch", "--", "true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such container"));
}

#[test]
fn exec_with_a_terminal() {
    if !require_root("exec_with_a_terminal") {
        return;
    }
    let mut f = Fixture::new("exectty");
    sleeper(&mut f, "tty");
    // a pty pair for `agent exec -it` to sit on
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty fills the two descriptors.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: openpty just returned these descriptors to us.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let dup = |fd: &OwnedFd| -> Stdio {
        // SAFETY: dup of a descriptor we own.
        Stdio::from(unsafe { OwnedFd::from_raw_fd(libc::dup(fd.as_raw_fd())) })
    };
    let mut child = Command::new(agent_bin())
        .args(["exec", "-it", "tty", "--state-dir"])
        .arg(&f.state)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "tty; [ -t 0 ] && echo stdin-is-tty; echo $TERM; exit 4",
        ])
        .env("TERM", "vt100")
        .stdin(dup(&slave))
        .stdout(dup(&slave))
        .stderr(dup(&slave))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    drop(slave);
    let mut out = Vec::new();
    let mut file = std::fs::File::from(master);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once every slave descriptor is closed
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        assert!(
            Instant::now() < deadline,
            "no end: {}",
            String::from_utf8_lossy(&out)
        );
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out).replace('\r', "");
    assert_eq!(status.code(), Some(4), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("stdin-is-tty\n"), "{text}");
    assert!(text.contains("vt100\n"), "{text}");
    // -t without a terminal on stdin is a usage error
    let out = f.agent(&["exec", "-t", "tty", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
}
