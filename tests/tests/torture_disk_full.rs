//! Torture: the disk fills up during an image import (root).
//!
//! The state directory is a 64 MiB tmpfs of the test's own (unique mountpoint, unmounted in
//! `Drop`). The busybox test image is loaded into it and a container runs from it through the
//! exec driver (the real `agent monitor`). Then `agent image load` of a root filesystem tarball of
//! 40 MiB of random data (stored once as a blob and once unpacked: ~80 MiB) runs out of space.
//! The test checks that:
//! - the load fails with exit status 1 and an I/O error (not "unsafe layer entry") that says the
//!   device is full, names the state directory and gives the bytes needed and available;
//! - nothing partial is left: `agent image ls` does not list the image, `graph/blobs/tmp` and
//!   `graph/layers/.tmp-*` are empty, and right after the failed load (and again after
//!   `agent image prune`) the graph holds exactly the files it held before: the load removed
//!   the tarball blob it had stored;
//! - the running container is untouched (same monitor and process, still running, `agent exec`
//!   works) and the small image still creates new container layers;
//! - once the tmpfs is remounted bigger, the same load succeeds and both images are listed.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agent::driver::exec::spec::{ContainerSpec, image_config};
use agent::driver::exec::{ContainerStatus, ExecConfig, ExecDriver, MonitorDriver};
use agent::driver::graph::{Graph, GraphDriver};
use agent_e2e::exec::{kill_and_wait, remove_cgroup_parent};
use agent_e2e::graph::{TestImages, agent, agent_bin, agent_ok, images, require_root};

/// Size of the random payload of the big image, and of the tmpfs before and after "freeing space".
const BIG_MIB: usize = 40;
const SMALL_FS: &str = "64m";
const BIG_FS: &str = "192m";

/// A tmpfs state directory with a graph and exec driver on it; `Drop` kills the containers,
/// removes their layers, unmounts the tmpfs and removes the cgroup parent, even on failure.
struct World {
    mnt: PathBuf,
    graph: Option<Graph>,
    driver: MonitorDriver,
    cgroup_parent: String,
    containers: Vec<String>,
}

impl World {
    fn new() -> World {
        let pid = std::process::id();
        let mnt = PathBuf::from(format!("/tmp/agent-torture-diskfull-{pid}"));
        let _ = Command::new("umount")
            .arg(&mnt)
            .stderr(Stdio::null())
            .status();
        std::fs::create_dir_all(&mnt).unwrap_or_else(|e| panic!("{}: {e}", mnt.display()));
        run(Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={SMALL_FS},mode=0700"),
            "agent-torture",
            &mnt.to_string_lossy(),
        ]));
        let cgroup_parent = format!("/agent-test-diskfull-{pid}");
        let driver = MonitorDriver::new(ExecConfig {
            state_dir: mnt.clone(),
            agent_binary: agent_bin(),
            cgroup_parent: cgroup_parent.clone(),
            cdi_dirs: Vec::new(),
        });
        let mut w = World {
            mnt,
            graph: None,
            driver,
            cgroup_parent,
            containers: Vec::new(),
        };
        w.graph = Some(Graph::open(&w.mnt, None).unwrap_or_else(|e| panic!("open graph: {e}")));
        w
    }

    fn graph(&self) -> &Graph {
        self.graph
            .as_ref()
            .unwrap_or_else(|| panic!("graph closed"))
    }

    fn state(&self) -> String {
        self.mnt.to_string_lossy().into_owned()
    }

    /// Starts `argv` in a new container of image `image`; returns its id.
    fn start(&mut self, name: &str, image: &str, argv: &[&str]) -> String {
        let id = format!("{name}-{}", std::process::id());
        let graph = self.graph();
        graph
            .create_container(&id, image)
            .unwrap_or_else(|e| panic!("create layer {id}: {e}"));
        self.containers.push(id.clone());
        let graph = self.graph();
        let rootfs = graph
            .driver()
            .mount(&id)
            .unwrap_or_else(|e| panic!("mount {id}: {e}"));
        let img = graph.find(image).unwrap_or_else(|e| panic!("{e}"));
        let blob = graph
            .blobs()
            .read(&img.id)
            .unwrap_or_else(|e| panic!("config blob: {e}"));
        let mut spec = ContainerSpec::new(&id, name, rootfs);
        spec.image = image_config(&blob).unwrap_or_else(|e| panic!("image config: {e}"));
        spec.command = Some(argv.iter().map(|s| s.to_string()).collect());
        self.driver
            .create(&spec)
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        self.driver
            .start(&id)
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        id
    }

    /// Every file and directory under `graph/` (relative paths), minus the lock file.
    fn graph_tree(&self) -> BTreeSet<String> {
        let root = self.mnt.join("graph");
        let mut out = BTreeSet::new();
        walk(&root, &root, &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        // container layers (overlay upper/work/merged) change while a container runs
        if rel.starts_with("containers/") {
            continue;
        }
        out.insert(rel);
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, &p, out);
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in &self.containers {
            kill_and_wait(&self.driver, id);
            let _ = self.driver.delete(id);
            if let Some(g) = &self.graph {
                let _ = g.driver().remove(id);
            }
        }
        self.graph = None;
        remove_cgroup_parent(&self.cgroup_parent);
        // monitors leave shortly after their container: retry a while before a lazy unmount
        let mut ok = false;
        for _ in 0..50 {
            ok = Command::new("umount")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !ok {
            eprintln!("{}: busy, unmounting lazily", self.mnt.display());
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root filesystem tarball holding `mib` MiB of random (incompressible) data.
fn big_tarball(path: &Path, mib: usize) {
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tar = tar::Builder::new(file);
    let mut data = vec![0u8; mib << 20];
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap_or_else(|e| panic!("{e}"));
    std::io::Read::read_exact(&mut urandom, &mut data).unwrap_or_else(|e| panic!("{e}"));
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "data/random.bin", &data[..])
        .unwrap_or_else(|e| panic!("tar: {e}"));
    let mut file = tar.into_inner().unwrap_or_else(|e| panic!("tar: {e}"));
    file.flush().unwrap_or_else(|e| panic!("{e}"));
}

fn names(state: &Path) -> Vec<String> {
    let mut v: Vec<String> = images(state)
        .iter()
        .flat_map(|i| {
            i["names"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| n.as_str().map(str::to_string))
        })
        .collect();
    v.sort();
    v
}

/// The running container's process id and start time; panics unless it runs monitored.
fn running(w: &World, id: &str) -> (i32, Option<String>) {
    let info = w
        .driver
        .state(id)
        .unwrap_or_else(|e| panic!("state {id}: {e}"));
    match info.status {
        ContainerStatus::Running {
            pid,
            monitored: true,
        } => (pid, info.started_at),
        other => panic!("{id} is not running under its monitor: {other:?}"),
    }
}

#[test]
fn image_load_on_a_full_disk_fails_cleanly_and_succeeds_after_space_is_freed() {
    let test = "image_load_on_a_full_disk_fails_cleanly_and_succeeds_after_space_is_freed";
    if !require_root(test) {
        return;
    }
    let images_dir = TestImages::get();
    let mut w = World::new();
    let state = w.state();

    // a small image and a container running from it
    agent_ok(&[
        "image",
        "load",
        "--state-dir",
        &state,
        &images_dir.dir.join("oci.tar").to_string_lossy(),
    ]);
    let small = "agent-test/busybox:latest";
    let id = w.start("steady", small, &["/bin/sleep", "1000"]);
    let before_pids = running(&w, &id);
    let before_tree = w.graph_tree();

    // an image bigger than the free space
    let tarball =
        std::env::temp_dir().join(format!("agent-torture-big-{}.tar", std::process::id()));
    big_tarball(&tarball, BIG_MIB);
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(tarball.clone());
    let tarball_s = tarball.to_string_lossy().into_owned();
    let load = [
        "image",
        "load",
        "--state-dir",
        &state,
        "--name",
        "big:1",
        &tarball_s,
    ];

    let out = agent(&load);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "load on a full disk: {stderr}");
    assert!(
        stderr.contains("No space left on device"),
        "the error must say the disk is full: {stderr}"
    );
    // an I/O error of the state directory, not a verdict on the (harmless) layer
    assert!(
        !stderr.contains("unsafe") && !stderr.contains("rejected"),
        "a full disk is not an unsafe layer: {stderr}"
    );
    assert!(
        stderr.contains(&format!("not enough free space in {state}/graph/")),
        "the error must name the state directory: {stderr}"
    );
    // the figures: the layer's uncompressed size is needed, what is free after the cleanup
    let need: u64 = stderr
        .split("need ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'need N bytes' in: {stderr}"));
    assert!(
        need >= (BIG_MIB as u64) << 20,
        "needed {need} bytes < the {BIG_MIB} MiB payload: {stderr}"
    );
    let avail: u64 = stderr
        .split("bytes, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no 'N available' in: {stderr}"));
    assert!(avail < need, "available {avail} >= needed {need}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // nothing partial recorded
    assert_eq!(names(&w.mnt), vec![small.to_string()]);
    let tmp: Vec<_> = std::fs::read_dir(w.mnt.join("graph/blobs/tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "partial downloads left: {tmp:?}");
    let half_layers: Vec<String> = w
        .graph_tree()
        .into_iter()
        .filter(|p| p.starts_with("layers/.tmp-"))
        .collect();
    assert!(
        half_layers.is_empty(),
        "half-unpacked layers left: {half_layers:?}"
    );
    assert_eq!(
        w.graph_tree(),
        before_tree,
        "the failed load must leave the graph as it was (no blob, layer or record of it)"
    );
    let prune = agent_ok(&["image", "prune", "--state-dir", &state]);
    assert_eq!(
        w.graph_tree(),
        before_tree,
        "after prune the graph must be as before the failed load (prune said: {prune})"
    );

    // the running container is untouched and the small image still usable
    assert_eq!(running(&w, &id), before_pids, "container restarted");
    let exec = Command::new(agent_bin())
        .args([
            "exec",
            "--state-dir",
            &state,
            "steady",
            "--",
            "/bin/cat",
            "/etc/layer3",
        ])
        .output()
        .unwrap_or_else(|e| panic!("agent exec: {e}"));
    assert!(
        exec.status.success(),
        "agent exec into the running container: {}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert!(
        String::from_utf8_lossy(&exec.stdout).contains("layer 3"),
        "agent exec output: {}",
        String::from_utf8_lossy(&exec.stdout)
    );
    let id2 = w.start("after", small, &["/bin/sleep", "1000"]);
    running(&w, &id2);

    // free space: the same load now succeeds
    run(Command::new("mount").args(["-o", &format!("remount,size={BIG_FS}"), &state]));
    let out = agent_ok(&load);
    assert!(out.contains("Loaded big:1"), "{out}");
    assert_eq!(names(&w.mnt), vec!["agent-test/busybox:latest", "big:1"]);
    // the big image is whole: a container layer of it shows all of its data
    let graph = w.graph();
    let check = format!("big-check-{}", std::process::id());
    graph
        .create_container(&check, "big:1")
        .unwrap_or_else(|e| panic!("create layer of big:1: {e}"));
    w.containers.push(check.clone());
    let rootfs = w
        .graph()
        .driver()
        .mount(&check)
        .unwrap_or_else(|e| panic!("mount {check}: {e}"));
    let len = std::fs::metadata(rootfs.join("data/random.bin"))
        .map(|m| m.len())
        .unwrap_or_else(|e| panic!("big image's data: {e}"));
    assert_eq!(len, (BIG_MIB as u64) << 20);
    assert_eq!(running(&w, &id), before_pids, "container restarted");
}
