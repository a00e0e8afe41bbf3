//! Helpers for the exec driver's end-to-end tests: a private state directory with the busybox
//! test image loaded, containers created through the real driver (monitors are the real `agent`
//! binary), and a `Drop` that kills, deletes and unmounts everything and removes the test's
//! cgroup parent, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::driver::exec::spec::{ContainerSpec, image_config};
use agent::driver::exec::{
    ContainerInfo, ContainerStatus, ExecConfig, ExecDriver, MonitorDriver, paths,
};
use agent::driver::graph::{Graph, GraphDriver};

use crate::graph::{TestImages, agent_bin};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Whether we run as root; prints why a test is skipped when not.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("{test}: skipped: needs root (namespaces, cgroups, mounts)");
    }
    root
}

/// One test's world: state dir, graph with the busybox image, exec driver.
pub struct Fixture {
    pub state: PathBuf,
    pub graph: Graph,
    pub driver: MonitorDriver,
    pub cgroup_parent: String,
    image: String,
    containers: Vec<String>,
    n: usize,
}

impl Fixture {
    pub fn new(test: &str) -> Fixture {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let state = PathBuf::from(format!("/tmp/agent-exec-{test}-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
        let graph = Graph::open(&state, None).unwrap_or_else(|e| panic!("open graph: {e}"));
        let images = TestImages::get();
        let loaded = graph
            .load(&images.dir.join("oci"), Some("busybox:test"))
            .unwrap_or_else(|e| panic!("load test image: {e}"));
        let image = loaded
            .first()
            .map(|i| i.id.to_string())
            .unwrap_or_else(|| panic!("no image loaded"));
        let cgroup_parent = format!("/agent-test-{pid}-{n}");
        let driver = MonitorDriver::new(ExecConfig {
            state_dir: state.clone(),
            agent_binary: agent_bin(),
            cgroup_parent: cgroup_parent.clone(),
            cdi_dirs: Vec::new(),
        });
        Fixture {
            state,
            graph,
            driver,
            cgroup_parent,
            image,
            containers: Vec::new(),
            n,
        }
    }

    /// A spec for a new container `name` on a fresh root filesystem of the busybox image; the
    /// caller adjusts it and passes it to [`Fixture::create`].
    pub fn spec(&mut self, name: &str) -> ContainerSpec {
        let id = format!("{name}-{}-{}", std::process::id(), self.n);
        self.graph
            .create_container(&id, &self.image)
            .unwrap_or_else(|e| panic!("create layer {id}: {e}"));
        self.containers.push(id.clone());
        let rootfs = self
            .graph
            .driver()
            .mount(&id)
            .unwrap_or_else(|e| panic!("mount {id}: {e}"));
        let img = self
            .graph
            .find(&self.image)
            .unwrap_or_else(|e| panic!("{e}"));
        let blob = self
            .graph
            .blobs()
            .read(&img.id)
            .unwrap_or_else(|e| panic!("config blob: {e}"));
        let mut spec = ContainerSpec::new(&id, name, rootfs);
        spec.image = image_config(&blob).unwrap_or_else(|e| panic!("image config: {e}"));
        spec
    }

    /// Creates and starts the container; returns its id.
    pub fn run(&mut self, spec: &ContainerSpec) -> String {
        self.driver
            .create(spec)
            .unwrap_or_else(|e| panic!("create {}: {e}", spec.name));
        self.driver
            .start(&spec.id)
            .unwrap_or_else(|e| panic!("start {}: {e}", spec.name));
        spec.id.clone()
    }

    /// Waits until the container is no longer running; returns its final state.
    pub fn wait_exit(&self, id: &str, timeout: Duration) -> ContainerInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self
                .driver
                .state(id)
                .unwrap_or_else(|e| panic!("state {id}: {e}"));
            if !info.status.is_running() {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still running after {timeout:?}: {info:?}; log: {}",
                self.log_text(id)
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Kills the container with SIGKILL, waits for its exit (10 s at most) and deletes it.
    pub fn kill_and_delete(&self, id: &str) {
        self.driver
            .kill(id, libc::SIGKILL)
            .unwrap_or_else(|e| panic!("kill {id}: {e}"));
        self.wait_exit(id, Duration::from_secs(10));
        self.driver
            .delete(id)
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
    }

    /// Runs a container to its end with `argv`; returns (exit status, its stdout+stderr log).
    pub fn run_to_end(
        &mut self,
        mut spec: ContainerSpec,
        argv: &[&str],
    ) -> (ContainerStatus, String) {
        spec.command = Some(argv.iter().map(|s| s.to_string()).collect());
        let id = self.run(&spec);
        let info = self.wait_exit(&id, Duration::from_secs(30));
        (info.status, self.log_text(&id))
    }

    /// Waits up to 10 s until the container's log contains `needle`.
    pub fn wait_log(&self, id: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log_text(id).contains(needle) {
            assert!(Instant::now() < deadline, "{id} never logged {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All log text of a container (both streams, in order).
    pub fn log_text(&self, id: &str) -> String {
        let dir = paths::container_dir(&self.state, id);
        agent::driver::exec::logs::read(&dir, &Default::default())
            .map(|r| r.into_iter().map(|r| r.log).collect())
            .unwrap_or_default()
    }

    /// Runs `agent <args>` with `--state-dir` inserted after the subcommand.
    pub fn agent(&self, args: &[&str]) -> Output {
        Command::new(agent_bin())
            .args(&args[..1])
            .arg("--state-dir")
            .arg(&self.state)
            .args(&args[1..])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("run agent {args:?}: {e}"))
    }

    /// The container's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        paths::container_dir(&self.state, id)
    }
}

/// Exited status fields, panicking with `what` otherwise.
pub fn exited(status: &ContainerStatus, what: &str) -> (i32, Option<i32>, bool) {
    match status {
        ContainerStatus::Exited {
            exit_code,
            signal,
            oom_killed,
        } => (*exit_code, *signal, *oom_killed),
        other => panic!("{what}: expected exited, got {other:?}"),
    }
}

/// Removes every v1 controller's and the v2 directory of `parent` (children first).
pub fn remove_cgroup_parent(parent: &str) {
    let rel = parent.trim_start_matches('/');
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            roots.push(e.path());
        }
    }
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let d = root.join(rel);
        if d.is_dir() {
            remove_cgroup_tree(&d);
        }
    }
}

/// Removes cgroup directory `d`, children first (cgroup directories go with rmdir only).
pub fn remove_cgroup_tree(d: &Path) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(d);
}

/// Unpauses (a frozen process cannot die) and SIGKILLs container `id`, then waits up to 10 s
/// until the driver no longer reports it running. Errors are ignored: this is for cleanup.
pub fn kill_and_wait(driver: &MonitorDriver, id: &str) {
    let _ = driver.unpause(id);
    let _ = driver.kill(id, libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && driver
            .state(id)
            .map(|i| i.status.is_running())
            .unwrap_or(false)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in &self.containers {
            if let Ok(info) = self.driver.state(id)
                && info.status.is_running()
            {
                kill_and_wait(&self.driver, id);
            }
            if std::env::var_os("AGENT_TEST_KEEP").is_none() {
                let _ = self.driver.delete(id);
                let _ = self.graph.driver().remove(id);
            }
        }
        remove_cgroup_parent(&self.cgroup_parent);
        if std::env::var_os("AGENT_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.state.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
