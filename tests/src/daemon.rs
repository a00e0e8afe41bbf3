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

/// A running agent and its directories. Dropping it stops the agent (SIGTERM, then SIGKILL).
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
    /// The network names of this fixture (`[network]` of its config): unique per fixture, and
    /// everything carrying them is removed in `Drop`.
    pub net: agent::driver::network::DriverOptions,
    /// The default bridge (`[network] bridge`) and its subnet.
    pub bridge: String,
    pub subnet: String,
    /// Bridges of `Network` manifests the test wrote (removed in `Drop` as well).
    pub extra_bridges: Vec<String>,
}

impl Daemon {
    /// Directories and a config for test `tag`, the agent not started yet. `extra_config` is
    /// appended to the generated config.toml.
    pub fn prepare(tag: &str, extra_config: &str) -> Daemon {
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
        let text = format!(
            "resync_interval = \"60s\"\nstop_containers_on_exit = true\n[network]\nbridge = \"{bridge}\"\nsubnet = \"{subnet}\"\ninstance = \"{}\"\nveth_prefix = \"{}\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n{extra_config}\n",
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
            net,
            bridge,
            subnet,
            extra_bridges: Vec::new(),
        }
    }

    /// Sets an environment variable for the agent process.
    pub fn env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.into(), value.into()));
    }

    /// Starts `agent run` and waits until its API answers.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut cmd = Command::new(crate::agent_bin());
        cmd.args(["run", "--manifests"])
            .arg(&self.manifests)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--config")
            .arg(&self.config)
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
    /// Removes everything carrying this fixture's network names: veths, namespaces, firewall
    /// table or chains, the default bridge and `extra_bridges`. The agent must be stopped.
    pub fn cleanup_network(&self) {
        let state = tempfile::tempdir().expect("tempdir");
        let store = agent::driver::network::FileStore::open(state.path().join("none.json"))
            .expect("empty network store");
        if let Ok(d) =
            agent::driver::network::NetworkDriver::new(self.net.clone(), std::sync::Arc::new(store))
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

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        self.cleanup_network();
        unmount_under(self.dir.path());
    }
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

/// Whether `path` is a directory owned by root and closed to writes by others (what the agent
/// wants of a manifest directory).
pub fn strict_dir(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
}
