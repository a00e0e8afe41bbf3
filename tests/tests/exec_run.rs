//! End-to-end: containers run through the exec driver and the real `agent monitor` (root). Each
//! container has a network namespace of its own with only loopback: no traffic leaves it.

use std::time::Duration;

use agent::driver::exec::spec::{Mount, MountSource, Rlimit, SeccompMode};
use agent::driver::exec::{ContainerStatus, ExecDriver};
use agent_e2e::exec::{Fixture, exited, require_root};

#[test]
fn exit_codes_and_output_are_recorded() {
    if !require_root("exit_codes_and_output_are_recorded") {
        return;
    }
    let mut f = Fixture::new("codes");
    let s = f.spec("zero");
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", "echo hello; echo oops >&2"]);
    assert_eq!(exited(&st, "zero"), (0, None, false));
    assert_eq!(log, "hello\noops\n");
    let s = f.spec("one");
    let (st, _) = f.run_to_end(s, &["/bin/sh", "-c", "exit 1"]);
    assert_eq!(exited(&st, "one"), (1, None, false));
    // SIGKILL from outside (`agent kill`, default signal KILL): 137, signal 9
    let mut s = f.spec("killed");
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    let id = f.run(&s);
    let out = f.agent(&["kill", "killed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = f.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exited(&info.status, "killed"), (137, Some(9), false));
    assert!(
        info.finished_at.is_some() && info.started_at.is_some(),
        "{info:?}"
    );
    // every container is listed with its name
    let names: Vec<String> = f
        .driver
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["killed", "one", "zero"]);
    // a missing command is an error at create time, naming the field
    let mut s = f.spec("nocmd");
    s.image = None;
    let e = f
        .driver
        .create(&s)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("command"), "{e}");
}

#[test]
fn process_sees_hostname_env_workdir_user_and_ulimit() {
    if !require_root("process_sees_hostname_env_workdir_user_and_ulimit") {
        return;
    }
    let mut f = Fixture::new("ident");
    let mut s = f.spec("ident");
    s.hostname = Some("box1".into());
    s.env.insert("FOO".into(), "bar baz".into());
    s.workdir = Some("/srv/app".into());
    s.user = Some("user".into());
    s.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 1234,
        hard: 2345,
    }];
    let (st, log) = f.run_to_end(
        s,
        &[
            "/bin/sh",
            "-c",
            "hostname; echo \"$FOO\"; pwd; id -u; id -g; ulimit -n; ulimit -Hn; cat /etc/hostname; \
             echo \"$HOME $PATH\"; grep -c . /etc/hosts",
        ],
    );
    assert_eq!(exited(&st, "ident").0, 0, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        &lines[..9],
        &[
            "box1",
            "bar baz",
            "/srv/app",
            "1000",
            "1000",
            "1234",
            "2345",
            "box1",
            "/home/user /bin"
        ],
        "{log}"
    );
    // numeric uid:gid without a passwd entry
    let mut s = f.spec("numeric");
    s.user = Some("4242:4343".into());
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", "id -u; id -g"]);
    assert_eq!(exited(&st, "numeric").0, 0, "{log}");
    assert_eq!(log, "4242\n4343\n");
    // an unknown user name is refused at create time with the file named
    let mut s = f.spec("ghost");
    s.user = Some("ghost".into());
    s.command = Some(vec!["true".into()]);
    let e = f
        .driver
        .create(&s)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("ghost") && e.contains("/etc/passwd"), "{e}");
}

#[test]
fn ulimit_above_host_hard_limit_is_a_clear_error() {
    if !require_root("ulimit_above_host_hard_limit_is_a_clear_error") {
        return;
    }
    let mut f = Fixture::new("ulimit");
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let caps = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if eff & (1 << 24) != 0 {
        eprintln!("ulimit test: skipped: this process holds CAP_SYS_RESOURCE");
        return;
    }
    let mut s = f.spec("toomany");
    s.command = Some(vec!["true".into()]);
    s.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 1024,
        hard: lim.rlim_max + 1,
    }];
    let e = f
        .driver
        .create(&s)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("ulimit nofile") && e.contains(&lim.rlim_max.to_string()),
        "{e}"
    );
}

#[test]
fn read_only_root_volume_bind_and_tmpfs() {
    if !require_root("read_only_root_volume_bind_and_tmpfs") {
        return;
    }
    let mut f = Fixture::new("mounts");
    let vol = f.state.join("volumes/data");
    let conf = f.state.join("conf");
    std::fs::create_dir_all(&conf).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(conf.join("app.conf"), "setting=1\n").unwrap_or_else(|e| panic!("{e}"));
    let mut s = f.spec("mounts");
    s.read_only = true;
    s.mounts = vec![
        Mount {
            target: "/data".into(),
            source: MountSource::Volume { path: vol.clone() },
            read_only: false,
        },
        Mount {
            target: "/conf".into(),
            source: MountSource::Bind { path: conf.clone() },
            read_only: true,
        },
        Mount {
            target: "/scratch".into(),
            source: MountSource::Tmpfs {
                size: Some(1 << 20),
                mode: None,
            },
            read_only: false,
        },
    ];
    s.shm_size = Some(2 << 20);
    let script = "touch /rootfile 2>/dev/null && echo root=rw || echo root=ro; \
        echo from-container > /data/hello && echo data=ok; \
        cat /conf/app.conf; touch /conf/x 2>/dev/null && echo conf=rw || echo conf=ro; \
        dd if=/dev/zero of=/scratch/fill bs=1024 count=2048 2>/dev/null && echo tmpfs=unbounded || echo tmpfs=full; \
        grep ' /scratch ' /proc/mounts | grep -o 'tmpfs [^ ]* tmpfs'; \
        df -k /dev/shm | tail -1 | awk '{print \"shm=\" $2}'";
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", script]);
    assert_eq!(exited(&st, "mounts").0, 0, "{log}");
    assert_eq!(
        log,
        "root=ro\ndata=ok\nsetting=1\nconf=ro\ntmpfs=full\ntmpfs /scratch tmpfs\nshm=2048\n"
    );
    // the volume's data is visible from the host and survives the container
    assert_eq!(
        std::fs::read_to_string(vol.join("hello")).ok().as_deref(),
        Some("from-container\n")
    );
}

#[test]
fn capabilities_and_seccomp_are_enforced() {
    if !require_root("capabilities_and_seccomp_are_enforced") {
        return;
    }
    let mut f = Fixture::new("caps");
    let script = "touch /f; chown 1000 /f 2>/dev/null && echo chown=ok || echo chown=denied; \
        grep Seccomp: /proc/self/status | tr -d '\\t '; \
        (echo forked) ; \
        unshare -U true 2>/dev/null && echo userns=ok || echo userns=denied; \
        grep -c . /proc/kcore 2>/dev/null | head -1; cat /proc/sys/kernel/hostname >/dev/null && echo procsys=readable; \
        echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo procsys=rw || echo procsys=ro";
    // default set: chown allowed, seccomp filter on, forking works, user namespaces refused
    let s = f.spec("default");
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", script]);
    assert_eq!(exited(&st, "default").0, 0, "{log}");
    assert!(log.contains("chown=ok\n"), "{log}");
    assert!(log.contains("Seccomp:2\n"), "{log}");
    assert!(log.contains("forked\n"), "{log}");
    assert!(log.contains("userns=denied\n"), "{log}");
    assert!(log.contains("procsys=ro\n"), "{log}");
    // CHOWN dropped: refused
    let mut s = f.spec("nochown");
    s.cap_drop = vec!["CHOWN".into()];
    let (_, log) = f.run_to_end(s, &["/bin/sh", "-c", script]);
    assert!(log.contains("chown=denied\n"), "{log}");
    // seccomp unconfined: no filter, and the same user namespace call now succeeds
    let mut s = f.spec("unconfined");
    s.seccomp = SeccompMode::Unconfined;
    let (_, log) = f.run_to_end(s, &["/bin/sh", "-c", script]);
    assert!(log.contains("Seccomp:0\n"), "{log}");
    assert!(log.contains("userns=ok\n"), "{log}");
}

#[test]
fn container_has_only_loopback_network() {
    if !require_root("container_has_only_loopback_network") {
        return;
    }
    let mut f = Fixture::new("net");
    let s = f.spec("net");
    let (st, log) = f.run_to_end(s, &["/bin/sh", "-c", "ls /sys/class/net"]);
    assert_eq!(exited(&st, "net").0, 0, "{log}");
    assert_eq!(log, "lo\n");
    assert!(matches!(st, ContainerStatus::Exited { .. }));
}
