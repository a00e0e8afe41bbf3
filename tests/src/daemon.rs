//! Helpers for the daemon's end-to-end tests: a running `agent run` on its own manifest
//! directory, state directory, socket and config (bridge name and subnet unique per test), driven
//! only through files and the CLI.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether we run as root; prints why a test is skipped when not.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("{test}: skipped: needs root (manifests must be root-owned; containers)");
    }
    root
}

/// A running agent and its directories. Dropping it, after a failed test too, stops the agent
/// (SIGTERM, then SIGKILL), kills the containers and monitors it left, removes their cgroups,
/// network names and mounts, and the temporary directory: all found through this fixture's own
/// state directory and names, never another test's.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
    extra_args: Vec<String>,
    /// The network names of this fixture (`[network]` of its config): unique per fixture, and
    /// everything carrying them is removed in `Drop`.
    pub net: agent::driver::network::DriverOptions,
    /// The default bridge (`[network] bridge`) and its subnet.
    pub bridge: String,
    pub subnet: String,
    /// Bridges of `Network` manifests the test wrote (removed in `Drop` as well).
    pub extra_bridges: Vec<String>,
    /// A command `agent run` is started under (`nsenter --net=...`), empty for none; it must
    /// exec the agent (its pid is the agent's).
    pub wrapper: Vec<String>,
}

impl Daemon {
    /// Directories and a config for test `tag`, the agent not started yet. `extra_config` is
    /// appended to the generated config.toml.
    pub fn prepare(tag: &str, extra_config: &str) -> Daemon {
        Daemon::prepare_with(tag, extra_config, true)
    }

    /// As [`Daemon::prepare`]; `stop_on_exit` is the config's `stop_containers_on_exit` (tests
    /// clean up their containers through it; tests of the default leave it false and clean up
    /// themselves).
    pub fn prepare_with(tag: &str, extra_config: &str, stop_on_exit: bool) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix(&format!("agent-daemon-{tag}-"))
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).expect("mkdir manifests");
        std::fs::set_permissions(&manifests, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let state = dir.path().join("state");
        let socket = dir.path().join("agent.sock");
        let config = dir.path().join("config.toml");
        // Unique per fixture: instance (firewall table, namespaces), veth prefix, bridge, subnet.
        let (net, default) =
            crate::network::TestNet::names(agent::driver::network::FirewallChoice::Auto, true);
        let (bridge, subnet) = (default.bridge.clone(), default.subnet.to_string());
        // Top-level keys of `extra_config` (the lines before its first `[table]`) go first.
        let split =
            extra_config
                .find("\n[")
                .map(|i| i + 1)
                .unwrap_or(if extra_config.starts_with('[') {
                    0
                } else {
                    extra_config.len()
                });
        let (top, extra_config) = extra_config.split_at(split);
        let text = format!(
            "{top}\nresync_interval = \"60s\"\nstop_containers_on_exit = {stop_on_exit}\n[network]\nbridge = \"{bridge}\"\nsubnet = \"{subnet}\"\ninstance = \"{}\"\nveth_prefix = \"{}\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n{extra_config}\n",
            net.instance, net.veth_prefix,
        );
        std::fs::write(&config, text).expect("write config");
        Daemon {
            log: dir.path().join("agent.log"),
            dir,
            manifests,
            state,
            socket,
            config,
            child: None,
            extra_env: Vec::new(),
            extra_args: Vec::new(),
            net,
            bridge,
            subnet,
            extra_bridges: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// Sets an environment variable for the agent process.
    pub fn env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.into(), value.into()));
    }

    /// Forgets the variables set with [`Daemon::env`] (for the next start).
    pub fn clear_env(&mut self) {
        self.extra_env.clear();
    }

    /// Sets the extra arguments of the next `agent run`s (after the generated ones).
    pub fn args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Starts `agent run` and waits until its API answers.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(crate::agent_bin());
                c
            }
            None => Command::new(crate::agent_bin()),
        };
        cmd.args(["run", "--manifests"])
            .arg(&self.manifests)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--config")
            .arg(&self.config)
            .args(&self.extra_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn agent run"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Only ask once the socket exists: `ps` would read the store meanwhile.
            if !self.socket.exists() {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("agent run exited early ({status}):\n{}", self.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "agent did not start within 20s:\n{}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let out = self.cli(&["ps"]);
            if out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("not running")
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("agent run exited early ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "agent did not answer within 20s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The agent's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` and waits for the agent to exit; returns its exit status.
    pub fn stop_with(&mut self, signal: i32) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.stop_with(libc::SIGTERM)
    }

    /// Runs `agent <args> --socket S --state-dir D --config C`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(crate::agent_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("run agent {args:?}: {e}"))
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "agent {args:?} failed ({}):\nstdout: {}\nstderr: {}\nagent log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `agent <args> -o json`, parsed.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.cli(&a);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "agent {a:?}: not JSON ({e}):\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Writes a manifest file atomically (temp file + rename), mode 0644.
    pub fn write(&self, name: &str, content: &str) {
        let tmp = self.manifests.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write manifest");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::rename(&tmp, self.manifests.join(name)).expect("rename manifest");
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(name)).expect("remove manifest");
    }

    /// Removes every file of the manifest directory (the agent then removes what they asked for).
    pub fn remove_all_manifests(&self) {
        for e in std::fs::read_dir(&self.manifests)
            .expect("manifests")
            .flatten()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }

    /// Removes every manifest and waits until `agent ps` lists no container (asking for a pass
    /// with `agent apply` on each poll, never waiting more than 10 s for one); panics with the
    /// log after `timeout`.
    pub fn remove_all_and_wait(&self, timeout: Duration) {
        self.remove_all_manifests();
        self.wait_for("containers removed", timeout, || {
            let _ = self.cli(&["apply", "--timeout", "10s"]);
            self.cli_json(&["ps"]).as_array()?.is_empty().then_some(())
        });
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.manifests.join(name)
    }

    /// The status entry of manifest file `name` (from `agent status -o json`).
    pub fn file_status(&self, name: &str) -> Option<serde_json::Value> {
        let path = self.path(name).to_string_lossy().into_owned();
        let v = self.cli_json(&["status"]);
        v["files"]
            .as_array()?
            .iter()
            .find(|f| f["path"] == path.as_str())
            .cloned()
    }

    /// Polls `f` until it returns `Some`, or panics after `timeout` with `what` and the log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\nagent log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Events of `agent events -o json` (the newest `limit`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        let out = self.cli(&["events", "-n", "10000", "-o", "json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Daemon {
    /// The `agent ps -o json` row of container `name` (`Null` if there is none).
    pub fn ps_row(&self, name: &str) -> serde_json::Value {
        self.try_ps_row(name).unwrap_or(serde_json::Value::Null)
    }

    /// The `agent ps -o json` row of container `name`, if `ps` lists it.
    pub fn try_ps_row(&self, name: &str) -> Option<serde_json::Value> {
        self.cli_json(&["ps"])
            .as_array()?
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
    }

    /// The network namespaces of this fixture's instance (`<instance>-*`), sorted.
    pub fn netns(&self) -> Vec<String> {
        crate::network::netns_of_instance(&self.net)
    }

    /// Events of kind `kind` about container `name`, oldest first.
    pub fn events_of(&self, name: &str, kind: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["object"] == format!("container/{name}") && e["kind"] == kind)
            .collect()
    }

    /// Container ids in the exec driver's state (every container the agent created and has
    /// not deleted).
    pub fn runtime_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.state.join("exec"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().join("state.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Whether the container with runtime id `id` runs (asks the exec driver through
    /// `agent exec ID -- sh -c true`, which works with or without the agent).
    pub fn runs(&self, id: &str) -> bool {
        self.sh_in(id, "true")
    }

    /// Whether `sh -c script` succeeds in the running container with runtime id `id`.
    pub fn sh_in(&self, id: &str, script: &str) -> bool {
        Command::new(crate::agent_bin())
            .args(["exec", "--state-dir"])
            .arg(&self.state)
            .args([id, "--", "/bin/sh", "-c", script])
            .env("RUST_LOG", "off")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// SIGKILLs every container of this agent (as a host reboot would; monitors then record
    /// the exit and go) and waits until none runs.
    pub fn kill_containers(&self) {
        for id in self.runtime_ids() {
            let _ = Command::new(crate::agent_bin())
                .args(["kill", "-s", "KILL", "--state-dir"])
                .arg(&self.state)
                .arg(&id)
                .env("RUST_LOG", "off")
                .output();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.runtime_ids().iter().any(|id| self.runs(id)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What a host reboot does to this agent's containers, with the agent already gone: every
    /// `agent monitor` and container process SIGKILLed (no exit recorded), every container
    /// root filesystem unmounted, the fixture's bridges, veths, namespaces and firewall rules
    /// and the containers' cgroups removed. Only processes recorded in this test's own state directory are
    /// touched (each checked against its recorded start time or command line).
    pub fn simulate_reboot(&self) {
        let state = self.state.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for id in self.runtime_ids() {
            let path = self.state.join("exec").join(&id).join("state.json");
            let Ok(v) = std::fs::read_to_string(&path)
                .map_err(|_| ())
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|_| ()))
            else {
                continue;
            };
            if let Some(m) = v["monitor_pid"].as_i64() {
                let cmdline = std::fs::read(format!("/proc/{m}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains("monitor") && cmdline.contains(&state) {
                    pids.push(m as i32);
                }
            }
            if let (Some(p), Some(start)) = (v["pid"].as_i64(), v["pid_start"].as_u64())
                && start_time(p as i32) == Some(start)
            {
                pids.push(p as i32);
            }
        }
        for p in &pids {
            // SAFETY: kill(2) of a process verified above to belong to this test.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        unmount_under(self.dir.path());
        // Bridges, veths, namespaces and firewall rules do not survive a reboot either.
        self.cleanup_network();
        // A reboot starts with empty cgroup hierarchies: remove the dead containers' cgroups.
        self.remove_cgroups();
    }

    /// Removes everything carrying this fixture's network names: veths, namespaces, firewall
    /// table or chains, the default bridge and `extra_bridges`. The agent must be stopped.
    pub fn cleanup_network(&self) {
        // No panics here: `Drop` calls this while a failed test unwinds.
        // The networks' DNS server of this state directory (it outlives the agent by design).
        let _ = agent::driver::network::dns::stop(&self.state.join("dns"));
        if let Ok(state) = tempfile::tempdir()
            && let Ok(store) =
                agent::driver::network::FileStore::open(state.path().join("none.json"))
            && let Ok(d) = agent::driver::network::NetworkDriver::new(
                self.net.clone(),
                std::sync::Arc::new(store),
            )
        {
            let _ = d.cleanup(Some(&std::collections::HashSet::new()));
            let _ = agent::driver::network::FirewallDriver::remove_all(d.firewall());
        }
        for b in std::iter::once(&self.bridge).chain(&self.extra_bridges) {
            let _ = Command::new("ip")
                .args(["link", "del", b])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// How long `Drop` lets monitors finish their own cleanup (record the exit, remove the cgroup)
/// before it kills them and cleans up after them.
const MONITOR_GRACE: Duration = Duration::from_secs(15);

impl Daemon {
    /// The cgroup path (`linux.cgroupsPath`, e.g. `/agent/<id>`) of every container bundle in
    /// this fixture's state directory, running or not. Only paths whose last component is the
    /// bundle's own id are returned: ids are unique per container (name, time and pid hashed),
    /// so these cgroups belong to this fixture and to no parallel test.
    pub fn container_cgroups(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.state.join("exec")) else {
            return Vec::new();
        };
        let mut out: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(e.path().join("config.json")).ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                let cg = v["linux"]["cgroupsPath"].as_str()?.to_string();
                let p = Path::new(&cg);
                (p.is_absolute()
                    && p.components().all(|c| {
                        matches!(
                            c,
                            std::path::Component::RootDir | std::path::Component::Normal(_)
                        )
                    })
                    && p.file_name().is_some_and(|n| n.to_string_lossy() == id))
                .then_some(cg)
            })
            .collect();
        out.sort();
        out
    }

    /// The directories of this fixture's container cgroups that exist: in every v1 hierarchy
    /// and in the unified (v2) one, whichever the host mounts.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let roots = cgroup_roots();
        self.container_cgroups()
            .iter()
            .flat_map(|cg| {
                roots
                    .iter()
                    .map(move |r| r.join(cg.trim_start_matches('/')))
            })
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Thaws frozen containers of this fixture (a frozen process does not die of SIGKILL).
    fn thaw_containers(&self) {
        for d in self.cgroup_dirs() {
            for (file, value) in [("freezer.state", "THAWED"), ("cgroup.freeze", "0")] {
                if d.join(file).is_file() {
                    let _ = std::fs::write(d.join(file), value);
                }
            }
        }
    }

    /// Pids of this fixture's container monitors, both halves (`agent monitor` and
    /// `agent-monitor-wait monitor`): `argv[1]` is `monitor` and `--state-dir` lies inside this
    /// fixture's state directory, whether or not a `state.json` recorded the monitor.
    pub fn monitor_pids(&self) -> Vec<i32> {
        use std::os::unix::ffi::OsStrExt;
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut pids: Vec<i32> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                let raw = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                args.get(1) == Some(&&b"monitor"[..])
                    && args.windows(2).any(|w| {
                        w[0] == b"--state-dir"
                            && Path::new(std::ffi::OsStr::from_bytes(w[1])).starts_with(&self.state)
                    })
                    && !is_zombie(*p)
            })
            .collect();
        pids.sort();
        pids
    }

    /// Waits up to `grace` for this fixture's monitors to leave, then SIGKILLs the rest.
    fn end_monitors(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while !self.monitor_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = self.monitor_pids();
        if !left.is_empty() {
            eprintln!(
                "{}: monitors {left:?} still there after {grace:?}: SIGKILL",
                self.dir.path().display()
            );
        }
        for p in &left {
            // SAFETY: kill(2) of a monitor of this fixture (checked by its arguments just above).
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.monitor_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes this fixture's container cgroups (see [`Daemon::container_cgroups`]) in every
    /// hierarchy, first killing whatever still runs in them. A monitor removes its container's
    /// cgroup itself when the container exits; this is for monitors that were killed.
    pub fn remove_cgroups(&self) {
        let dirs = self.cgroup_dirs();
        for d in &dirs {
            for p in cgroup_pids(d) {
                // SAFETY: kill(2) of a process inside a cgroup of this fixture's own container.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while dirs.iter().any(|d| !cgroup_pids(d).is_empty()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for d in &dirs {
            crate::exec::remove_cgroup_tree(d);
        }
    }
}

impl Drop for Daemon {
    /// Runs after a failed test too, so nothing here may panic (a panic while unwinding aborts
    /// and leaves everything behind). Touches only what this fixture's state directory and
    /// network names identify.
    fn drop(&mut self) {
        self.stop();
        self.thaw_containers();
        // Whatever the test left running (its own containers only: own state directory).
        self.kill_containers();
        self.end_monitors(MONITOR_GRACE);
        self.remove_cgroups();
        self.cleanup_network();
        unmount_under(self.dir.path());
        // `TempDir` ignores a failed removal; retry (a late writer, a lazy unmount) and say so.
        let mut result = Ok(());
        for _ in 0..10 {
            result = std::fs::remove_dir_all(self.dir.path());
            match &result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(100));
                    unmount_under(self.dir.path());
                }
                _ => break,
            }
        }
        if let Err(e) = result
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("leftover {}: {e}", self.dir.path().display());
        }
    }
}

/// The mount points of the host's cgroup hierarchies (each v1 controller, the unified one).
fn cgroup_roots() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            matches!(f.get(2), Some(&"cgroup") | Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Pids in cgroup `dir` and its descendants.
fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(cgroup_pids(&e.path()));
            }
        }
    }
    pids
}

/// Unmounts everything mounted below `dir` (container root filesystems left by stopped
/// containers), deepest first, so that the temporary directory can be removed.
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

/// The busybox test image as an Image manifest named `busybox`.
pub const BUSYBOX_IMAGE: &str = "apiVersion: agent/v1\nkind: Image\nmetadata:\n  name: busybox\nspec:\n  dockerArchive:\n    path: /var/lib/agent-test-images/docker.tar\n";

/// A container manifest running `sh -c script` from the busybox image (`networkMode: none`,
/// 1 s stop grace); `extra` is appended to its spec.
pub fn container_manifest(name: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: busybox\n  command: [\"/bin/sh\", \"-c\", {script:?}]\n  networkMode: none\n  stopGracePeriod: 1s\n{extra}"
    )
}

/// Panics with a hint when the test images are missing.
pub fn require_images() {
    assert!(
        Path::new("/var/lib/agent-test-images/docker.tar").exists(),
        "test images missing: run scripts/build-test-images.sh"
    );
}

/// Whether `path` is a directory owned by root and closed to writes by others (what the agent
/// wants of a manifest directory).
pub fn strict_dir(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
}
