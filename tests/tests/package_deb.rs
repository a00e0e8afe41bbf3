//! The Debian package: `scripts/package.sh` (cargo-deb) builds it from the test build's binaries,
//! and it is installed with `dpkg -i` into a clean Debian 12 root (mmdebstrap minbase plus the
//! package's dependencies, cached by scripts/build-deb-root.sh). Checked there: the files, their
//! modes, the conffiles, the units, the completions and man pages; the maintainer scripts, which
//! talk to systemd only where it is PID 1 (a `systemctl` stand-in records what they ask, with and
//! without `/run/systemd/system`), through install, upgrade, purge and a fresh install; then
//! `agent --version`, `agent validate` on the packaged examples, and the example itself run by
//! the packaged binary with the packaged config.toml inside the root (private mount and network
//! namespaces: the root bound onto itself (pivot_root wants a mount point), /proc, /sys, /dev,
//! the cgroup hierarchies, a /run of its own) until
//! `http://127.0.0.1:18080/` answers through the published port.
//!
//! Everything the test starts runs in a cgroup of its own (unified hierarchy), marked delegated
//! the way systemd marks agent.service's cgroup (`Delegate=yes`), in its leaf `agent` (where
//! `DelegateSubgroup=agent` starts the agent): the packaged agent must put the example's
//! containers below it. `Drop` kills what is left there and in the containers'
//! cgroups, then removes those cgroups and the root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use agent_e2e::daemon::{require_images, require_root};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The mount point of a cgroup2 file system (the unified hierarchy), if any.
fn cgroup2_mount() -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(pre.split_whitespace().nth(4)?))
    })
}

/// A clean Debian root in a temporary directory, and the cgroup its processes run in.
struct Root {
    dir: tempfile::TempDir,
    /// The cgroup in the unified hierarchy (`/agent-e2e-deb-<tag>-<pid>`), marked delegated as
    /// systemd marks agent.service's: the packaged agent puts the containers below it.
    rel: String,
    cgroup: PathBuf,
}

impl Root {
    fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `chroot ROOT args...`, output captured.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(self.path())
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C")
            .output()
            .unwrap_or_else(|e| panic!("chroot {args:?}: {e}"))
    }

    /// As [`Root::run`]; the command must succeed. Returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} in the root failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn file(&self, p: &str) -> PathBuf {
        self.path().join(p.trim_start_matches('/'))
    }

    /// The cgroup paths of the containers the root's agent made (bundles' `cgroupsPath`).
    fn container_cgroups(&self) -> Vec<String> {
        std::fs::read_dir(self.file("/var/lib/agent/exec"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path().join("config.json")).ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                let cg = v["linux"]["cgroupsPath"].as_str()?.to_string();
                let id = e.file_name().to_string_lossy().into_owned();
                (cg.starts_with('/') && !cg.contains("..") && cg.ends_with(&format!("/{id}")))
                    .then_some(cg)
            })
            .collect()
    }
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(cgroup_pids(&e.path()));
        }
    }
    out
}

fn kill_all_in(dirs: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = dirs.iter().flat_map(|d| cgroup_pids(d)).collect();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for p in pids {
            // SAFETY: kill(2) of a process in this test's own cgroup or its containers' ones.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Root {
    /// Runs after a failure too: nothing here panics.
    fn drop(&mut self) {
        // The agent and its monitors (and, on a hybrid host, the containers) are in the test's
        // cgroup; the containers also in their own (ids unique to this root's agent).
        let roots: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                matches!(f.get(2), Some(&"cgroup") | Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .collect();
        // `rel` in every hierarchy: the unit stand-in, and below it the containers' cgroups
        // libcontainer made in the v1 ones.
        let mut dirs: Vec<PathBuf> = roots
            .iter()
            .map(|r| r.join(self.rel.trim_start_matches('/')))
            .filter(|d| d.is_dir())
            .collect();
        for cg in self.container_cgroups() {
            dirs.extend(
                roots
                    .iter()
                    .map(|r| r.join(cg.trim_start_matches('/')))
                    .filter(|d| d.is_dir()),
            );
        }
        kill_all_in(&dirs);
        for d in &dirs {
            agent_e2e::exec::remove_cgroup_tree(d);
        }
        agent_e2e::daemon::unmount_under(self.dir.path());
    }
}

fn sh(script: &str) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("sh -c {script}: {e}"))
}

/// Builds the .deb from the test build's binaries; returns its path.
fn build_deb(out: &Path) -> PathBuf {
    agent_e2e::agent_bin();
    let script = agent_e2e::workspace_root().join("scripts/package.sh");
    let o = Command::new(&script)
        .args(["--debug", "--no-build", "--fast", "--out"])
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        o.status.success(),
        "scripts/package.sh failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "package.sh did not print a .deb: {stdout}"
    );
    deb
}

/// Extracts the cached clean root (built by scripts/build-deb-root.sh if missing).
fn clean_root(tag: &str) -> Root {
    let script = agent_e2e::workspace_root().join("scripts/build-deb-root.sh");
    let o = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        o.status.success(),
        "scripts/build-deb-root.sh failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let tar = stdout.lines().last().unwrap_or_default().trim().to_string();
    let dir = tempfile::Builder::new()
        .prefix(&format!("agent-deb-{tag}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("tempdir: {e}"));
    let unified = cgroup2_mount().unwrap_or_else(|| panic!("no cgroup2 mount on this host"));
    let rel = format!("/agent-e2e-deb-{tag}-{}", std::process::id());
    let cgroup = unified.join(rel.trim_start_matches('/'));
    std::fs::create_dir(&cgroup).unwrap_or_else(|e| panic!("mkdir {}: {e}", cgroup.display()));
    let root = Root { dir, rel, cgroup };
    mark_delegated(&root.cgroup);
    std::fs::create_dir(root.path()).unwrap_or_else(|e| panic!("mkdir root: {e}"));
    let o = Command::new("tar")
        .args(["-xf", &tar, "--numeric-owner", "-C"])
        .arg(root.path())
        .output()
        .unwrap_or_else(|e| panic!("tar: {e}"));
    assert!(
        o.status.success(),
        "extracting {tar}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    root
}

/// Marks cgroup `dir` as delegated, as systemd marks the cgroup of a unit with `Delegate=yes`.
fn mark_delegated(dir: &Path) {
    let path =
        std::ffi::CString::new(dir.to_string_lossy().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: NUL-terminated strings and a 1-byte value, all alive across the call.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"trusted.delegate".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr trusted.delegate on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}

/// The `systemctl` stand-in: records its arguments, one call a line.
const FAKE_SYSTEMCTL: &str = "#!/bin/sh\necho \"$*\" >> /tmp/systemctl.log\n";

fn systemctl_calls(root: &Root) -> Vec<String> {
    let log = root.file("/tmp/systemctl.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    text.lines().map(str::to_string).collect()
}

#[test]
fn deb_installs_into_a_clean_debian_root_and_runs_the_example() {
    if !require_root("deb_installs_into_a_clean_debian_root_and_runs_the_example") {
        return;
    }
    require_images();
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let t0 = Instant::now();
    let deb = build_deb(work.path());
    eprintln!(
        "package.sh --debug --fast: {:?}, {} bytes",
        t0.elapsed(),
        std::fs::metadata(&deb).map(|m| m.len()).unwrap_or(0)
    );
    let root = clean_root("install");
    std::fs::copy(&deb, root.file("/tmp/agent.deb")).unwrap_or_else(|e| panic!("copy: {e}"));
    let fake = root.file("/usr/local/bin/systemctl");
    std::fs::write(&fake, FAKE_SYSTEMCTL).unwrap_or_else(|e| panic!("{e}"));
    let _ = sh(&format!("chmod 0755 {}", fake.display()));

    // 1. Install where systemd is not PID 1 (no /run/systemd/system): systemd is not touched.
    let t1 = Instant::now();
    root.ok(&["dpkg", "-i", "/tmp/agent.deb"]);
    eprintln!("dpkg -i: {:?}", t1.elapsed());
    assert_eq!(systemctl_calls(&root), Vec::<String>::new());
    assert!(
        !root
            .file("/etc/systemd/system/multi-user.target.wants/agent.service")
            .exists(),
        "enabled without systemd"
    );

    let files = root.ok(&["dpkg", "-L", "agent"]);
    for want in [
        "/usr/bin/agent",
        "/usr/bin/agent-monitor-wait",
        "/lib/systemd/system/agent.service",
        "/lib/systemd/system/agent.socket",
        "/etc/agent/config.toml",
        "/etc/agent.d",
        "/etc/agent.d/README",
        "/usr/share/bash-completion/completions/agent",
        "/usr/share/zsh/vendor-completions/_agent",
        "/usr/share/fish/vendor_completions.d/agent.fish",
        "/usr/share/man/man1/agent.1.gz",
        "/usr/share/man/man1/agent-ps.1.gz",
        "/usr/share/man/man1/agent-image-pull.1.gz",
        "/usr/share/doc/agent/copyright",
        "/usr/share/doc/agent/daemon.md",
        "/usr/share/doc/agent/examples/manifests/web.yaml",
    ] {
        assert!(
            files.lines().any(|l| l == want),
            "{want} not in dpkg -L:\n{files}"
        );
    }
    // One page per command, none for clap's `help` subcommands (`agent help ps`).
    let help_pages: Vec<&str> = files
        .lines()
        .filter(|l| l.starts_with("/usr/share/man/man1/") && l.contains("-help"))
        .collect();
    assert!(help_pages.is_empty(), "man pages of `help`: {help_pages:?}");
    let conffiles = root.ok(&["dpkg-query", "-W", "-f=${Conffiles}", "agent"]);
    let conffiles: Vec<&str> = conffiles
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(conffiles, ["/etc/agent/config.toml", "/etc/agent.d/README"]);
    for (path, mode) in [
        ("/usr/bin/agent", 0o755),
        ("/usr/bin/agent-monitor-wait", 0o755),
        ("/etc/agent", 0o755),
        ("/etc/agent/config.toml", 0o644),
        ("/etc/agent.d", 0o755),
        ("/lib/systemd/system/agent.service", 0o644),
        ("/lib/systemd/system/agent.socket", 0o644),
        ("/usr/share/man/man1/agent.1.gz", 0o644),
        ("/var/lib/agent", 0o700),
    ] {
        let m = std::fs::metadata(root.file(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (mode, 0, 0),
            "{path}"
        );
    }
    // The packaged config is the repository's, and its socket is the socket unit's.
    let config = std::fs::read_to_string(root.file("/etc/agent/config.toml")).unwrap_or_default();
    let repo_config =
        std::fs::read_to_string(agent_e2e::workspace_root().join("packaging/config.toml"))
            .unwrap_or_default();
    assert_eq!(config, repo_config);
    assert!(config.contains("socket = \"/run/agent/agent.sock\""));
    let service =
        std::fs::read_to_string(root.file("/lib/systemd/system/agent.service")).unwrap_or_default();
    let socket_unit =
        std::fs::read_to_string(root.file("/lib/systemd/system/agent.socket")).unwrap_or_default();
    for want in [
        "ExecStart=/usr/bin/agent run --config /etc/agent/config.toml",
        "Delegate=yes",
    ] {
        assert!(
            service.lines().any(|l| l == want),
            "{want} not in agent.service"
        );
    }
    assert!(
        socket_unit
            .lines()
            .any(|l| l == "ListenStream=/run/agent/agent.sock")
    );
    // Man pages are gzip, completions scripts for their shells.
    let man = std::fs::read(root.file("/usr/share/man/man1/agent.1.gz")).unwrap_or_default();
    assert!(man.starts_with(&[0x1f, 0x8b]), "agent.1.gz is not gzip");
    let bash = std::fs::read_to_string(root.file("/usr/share/bash-completion/completions/agent"))
        .unwrap_or_default();
    assert!(
        bash.contains("complete -F _agent"),
        "bash completion:\n{bash}"
    );
    let zsh = std::fs::read_to_string(root.file("/usr/share/zsh/vendor-completions/_agent"))
        .unwrap_or_default();
    assert!(zsh.starts_with("#compdef agent"), "zsh completion");
    let fish =
        std::fs::read_to_string(root.file("/usr/share/fish/vendor_completions.d/agent.fish"))
            .unwrap_or_default();
    assert!(fish.contains("complete -c agent"), "fish completion");

    let version = root.ok(&["agent", "--version"]);
    assert!(version.starts_with("agent "), "{version}");

    // 2. Where systemd is PID 1: upgrade (reinstall), purge, fresh install.
    std::fs::create_dir_all(root.file("/run/systemd/system")).unwrap_or_else(|e| panic!("{e}"));
    root.ok(&["dpkg", "-i", "/tmp/agent.deb"]);
    assert_eq!(
        systemctl_calls(&root),
        ["daemon-reload", "try-restart agent.service"]
    );
    root.ok(&["dpkg", "--purge", "agent"]);
    assert_eq!(
        systemctl_calls(&root),
        [
            "stop agent.socket agent.service",
            "disable agent.socket agent.service",
            "daemon-reload"
        ]
    );
    assert!(
        !root.file("/etc/agent/config.toml").exists(),
        "conffile left by purge"
    );
    assert!(
        root.file("/var/lib/agent").is_dir(),
        "purge removed the state"
    );
    root.ok(&["dpkg", "-i", "/tmp/agent.deb"]);
    assert_eq!(
        systemctl_calls(&root),
        [
            "daemon-reload",
            "enable agent.service",
            "start agent.service"
        ]
    );
    std::fs::remove_dir_all(root.file("/run/systemd")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&fake).unwrap_or_else(|e| panic!("{e}"));

    // 3. The example, run by the packaged agent with the packaged config.
    let r = root.path();
    let r = r.display();
    let cgroup = root.cgroup.display();
    let script = format!(
        r#"set -eu
mkdir {cgroup}/agent
echo $$ > {cgroup}/agent/cgroup.procs
unshare --mount --net --propagation private sh -eu -c '
R={r}
mount --bind $R $R
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount --rbind /sys/fs/cgroup $R/sys/fs/cgroup
mount --rbind /dev $R/dev
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -p $R/var/lib/agent-test-images
mount --bind /var/lib/agent-test-images $R/var/lib/agent-test-images
mount -o remount,bind,ro $R/var/lib/agent-test-images
ip link set lo up
chroot $R agent validate /usr/share/doc/agent/examples/manifests
cp $R/usr/share/doc/agent/examples/manifests/*.yaml $R/etc/agent.d/
chroot $R agent run --stop-containers-on-exit > $R/tmp/agent.log 2>&1 &
agent=$!
trap "kill -TERM $agent; wait $agent" EXIT
i=0
until curl -fsS --max-time 2 http://127.0.0.1:18080/ > $R/tmp/web.out 2>/dev/null; do
  i=$((i + 1))
  if [ $i -ge 300 ]; then echo "web did not answer within 60 s" >&2; exit 1; fi
  sleep 0.2
done
echo "answer: $(cat $R/tmp/web.out)"
chroot $R agent ps
for f in $R/var/lib/agent/exec/*/config.json; do
  echo "cgroupsPath: $(grep -o "\"cgroupsPath\": *\"[^\"]*\"" $f | sed "s/.*: *\"//; s/\"\$//")"
done
'
"#
    );
    let t2 = Instant::now();
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("PATH", PATH)
        .output()
        .unwrap_or_else(|e| panic!("sh: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(root.file("/tmp/agent.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "the example in the root failed ({}):\nstdout: {stdout}\nstderr: {}\nagent log:\n{log}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("example in the root: {:?}", t2.elapsed());
    assert!(stdout.contains("answer: shop is up"), "{stdout}");
    for name in ["kv", "web"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.contains("running")),
            "{name} not running in agent ps:\n{stdout}"
        );
    }
    // Started in a cgroup marked as systemd marks a delegated unit's, the packaged agent put
    // the containers below it (driver/exec/delegate.rs).
    let paths: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("cgroupsPath: "))
        .collect();
    assert!(paths.len() >= 2, "{stdout}");
    for p in &paths {
        assert!(
            p.starts_with(&format!("{}/containers/", root.rel)),
            "container cgroup {p} is not below the unit's {}",
            root.rel
        );
    }
    // The agent stopped the containers on exit; their monitors then leave too.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cgroup_pids(&root.cgroup).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        cgroup_pids(&root.cgroup),
        Vec::<i32>::new(),
        "processes left in the test's cgroup:\n{log}"
    );
}
