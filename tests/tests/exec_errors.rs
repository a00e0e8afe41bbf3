//! End-to-end: `agent exec` as a shell and Docker users expect it (issue 16 item 8, issue 19
//! item 9): a missing command is one line and exit 127, one that cannot be executed 126, the
//! agent's own errors 125; a container that is restarting is said to be so (not an internal
//! procfs error); killing `agent exec` ends the command it started; input from a file or pipe
//! reaches the command without `-i`; `-t` gives the command the caller's terminal size.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agent::driver::exec::ExecDriver;
use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images};
use agent_e2e::exec::{Fixture, require_root};
use agent_e2e::graph::agent_bin;

fn sleeper(f: &mut Fixture, name: &str) -> String {
    let mut s = f.spec(name);
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    f.run(&s)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Host pids whose command line is exactly `argv`.
fn pids_of(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One line on stderr, no terminal colour codes, naming `needle`.
fn one_plain_line(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(
        err.lines().count() == 1 && !err.contains('\u{1b}') && err.contains(needle),
        "stderr: {err:?}"
    );
}

#[test]
fn exec_exit_codes_and_messages_are_a_shells() {
    if !require_root("exec_exit_codes_and_messages_are_a_shells") {
        return;
    }
    let mut f = Fixture::new("execcodes");
    let id = sleeper(&mut f, "box");
    // not found: by path and in $PATH
    for cmd in ["/no/such/binary", "no-such-command"] {
        let out = f.agent(&["exec", "box", "--", cmd, "arg"]);
        assert_eq!(out.status.code(), Some(127), "{cmd}: {}", text(&out.stderr));
        one_plain_line(&out, cmd);
        assert!(out.stdout.is_empty());
    }
    // found but not executable
    let out = f.agent(&["exec", "box", "--", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    one_plain_line(&out, "/etc/passwd");
    // the command's own codes pass through, 127 included
    let out = f.agent(&["exec", "box", "--", "/bin/sh", "-c", "exit 127"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // the agent's own errors: 125
    let out = f.agent(&["exec", "nosuch", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    one_plain_line(&out, "no such container");
    f.driver
        .stop(&id, Some(Duration::from_millis(100)))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = f.agent(&["exec", "box", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    one_plain_line(&out, "is not running: its process exited");
}

#[test]
fn killing_agent_exec_ends_the_command() {
    if !require_root("killing_agent_exec_ends_the_command") {
        return;
    }
    let mut f = Fixture::new("execkill");
    sleeper(&mut f, "box");
    for (i, sig) in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGKILL]
        .into_iter()
        .enumerate()
    {
        // a command line unique to this round, to find the process on the host
        let secs = format!("{}", 7000 + i);
        let argv = ["sleep", secs.as_str()];
        let mut child = Command::new(agent_bin())
            .args(["exec", "--state-dir"])
            .arg(&f.state)
            .args(["box", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        wait_until("the command to run", Duration::from_secs(20), || {
            !pids_of(&argv).is_empty()
        });
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        if sig != libc::SIGKILL {
            // the command ended by the same signal, and `agent exec` says so
            assert_eq!(status.code(), Some(128 + sig), "signal {sig}: {status:?}");
        }
        wait_until(
            &format!("`sleep {secs}` to end after signal {sig} to agent exec"),
            Duration::from_secs(10),
            || pids_of(&argv).is_empty(),
        );
    }
}

#[test]
fn exec_passes_piped_input_and_the_terminal_size() {
    if !require_root("exec_passes_piped_input_and_the_terminal_size") {
        return;
    }
    let mut f = Fixture::new("execio");
    sleeper(&mut f, "box");
    // input from a file, without -i
    let input = f.state.join("input.sql");
    std::fs::write(&input, "line one\nline two\n").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(agent_bin())
        .args(["exec", "--state-dir"])
        .arg(&f.state)
        .args(["box", "--", "/bin/sh", "-c", "wc -l"])
        .stdin(std::fs::File::open(&input).unwrap_or_else(|e| panic!("{e}")))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (out.status.code(), text(&out.stdout).trim()),
        (Some(0), "2"),
        "{}",
        text(&out.stderr)
    );
    // -t: the caller's terminal size, and nothing but the command's output
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 111,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills the two descriptors and reads the winsize we own.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
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
        .args(["exec", "-t", "--state-dir"])
        .arg(&f.state)
        .args(["box", "--", "stty", "size"])
        .stdin(dup(&slave))
        .stdout(dup(&slave))
        .stderr(dup(&slave))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    drop(slave);
    let mut out = Vec::new();
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once every slave descriptor is closed
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(text(&out).replace('\r', ""), "33 111\n");
}

#[test]
fn exec_into_a_restarting_container_says_so() {
    if !require_root("exec_into_a_restarting_container_says_so") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare(
        "execrestart",
        // a second between an exit and the restart: `agent ps` says `restarting` meanwhile
        "[restart]\nstart = \"1s\"\nfactor = 1.0\ncap = \"1s\"\nreset_after = \"10s\"\n",
    );
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    d.write(
        "a.yaml",
        &container_manifest("a", "sleep 0.2; exit 1", "  restart: always\n"),
    );
    d.start();
    d.wait_for("a to restart", Duration::from_secs(60), || {
        (d.try_ps_row("a")?["restarts"].as_u64()? > 1).then_some(())
    });
    let mut failures = 0;
    let mut said_restarting = 0;
    // Until the agent has said it at least once (each restart leaves ~1 s of `restarting`; a
    // fixed number of tries failed on a CPU-starved host where the agent noticed exits late).
    let deadline = Instant::now() + Duration::from_secs(60);
    while said_restarting == 0 && Instant::now() < deadline {
        let out = Command::new(agent_bin())
            .args(["exec", "a", "--state-dir"])
            .arg(&d.state)
            .arg("--socket")
            .arg(&d.socket)
            .args(["--", "true"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        // ran, or ran and was killed when the container's init ended (the container's pid
        // namespace goes with it)
        if matches!(out.status.code(), Some(0 | 137)) {
            continue;
        }
        failures += 1;
        assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
        one_plain_line(&out, "agent: container a is ");
        let err = text(&out.stderr);
        assert!(
            err.contains("restart"),
            "does not say it may be restarting: {err}"
        );
        // the agent, asked, says it is restarting (between an exit and the agent's noticing
        // it, or while it starts, the words are "not running: its process ...")
        if err.contains("container a is restarting (restart ") {
            said_restarting += 1;
        } else {
            assert!(
                err.contains("container a is not running: its process"),
                "{err}"
            );
        }
    }
    assert!(failures > 0, "every exec hit a running container");
    assert!(
        said_restarting > 0,
        "never said restarting in {failures} failures; ps: {}",
        d.ps_row("a")
    );
}
