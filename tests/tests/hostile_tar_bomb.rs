//! A tar bomb through `agent image load`: a 512 MiB layer that compresses to 0.5 MiB (gzip
//! members of zeros), loaded into a state directory on a 64 MiB tmpfs of the test's own. The
//! load fails as a storage error, not an unsafe layer, having stopped while the file system
//! still had the agent's floor free (2% of it) instead of filling it to the last block; the
//! error does not decompress the whole bomb for a size figure ("more than"), and nothing is
//! left behind: no layer, no temporary directory, no image. The same for inodes: a layer of
//! many empty files on a tmpfs of 4000 inodes stops while 2% of them are still free.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agent_e2e::graph::{agent, images, require_root};

/// A tmpfs mounted for this test; unmounted in `Drop`.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `opts` as for `mount -o` (`size=64m`); a mountpoint unique to this process and `tag`.
    fn mount(tag: &str, opts: &str) -> Tmpfs {
        let dir = PathBuf::from(format!(
            "/tmp/agent-hostile-bomb-{}-{tag}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("{opts},mode=0700"),
                "agent-bomb",
            ])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount tmpfs at {}", dir.display());
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// `bytes` gzipped by the gzip tool (one member).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-c", "-9"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("gzip: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("gzip stdin"));
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("gzip: {e}"));
    let _ = writer.join();
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// A gzip stream of a tar holding one file `bomb` of `mib` MiB of zeros: the same 1 MiB
/// member repeated.
fn bomb(mib: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("bomb").unwrap_or_else(|e| panic!("{e}"));
    h.set_size(mib << 20);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    let mut out = gzip(h.as_bytes());
    let zeros = gzip(&vec![0u8; 1 << 20]);
    for _ in 0..mib {
        out.extend_from_slice(&zeros);
    }
    out.extend_from_slice(&gzip(&[0u8; 1024]));
    out
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn a_tar_bomb_stops_above_the_free_space_floor_and_leaves_nothing() {
    if !require_root("a_tar_bomb_stops_above_the_free_space_floor_and_leaves_nothing") {
        return;
    }
    let fs = Tmpfs::mount("bytes", "size=64m");
    let state = fs.0.join("state");
    let input = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = input.path().join("bomb.tar.gz");
    let mib = 512;
    std::fs::write(&file, bomb(mib)).unwrap_or_else(|e| panic!("{e}"));

    let out = agent(&[
        "image",
        "load",
        "--state-dir",
        &s(&state),
        "--graph-driver",
        "vfs",
        "--name",
        "bomb:1",
        &s(&file),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the bomb was loaded: {err}");
    assert!(
        !err.contains("unsafe") && !err.contains("rejected"),
        "a bomb is a storage error, not an unsafe entry: {err}"
    );
    // It stopped at the floor, not at ENOSPC.
    assert!(
        err.contains("the agent keeps free while unpacking"),
        "the unpack did not stop at the free-space floor: {err}"
    );
    // And it did not inflate the whole 512 MiB to name a size.
    assert!(
        err.contains("unpacks to more than")
            && !err.contains(&format!("need {}", (mib << 20) + 2048)),
        "the whole bomb was decompressed for the error: {err}"
    );
    assert!(images(&state).is_empty(), "the bomb was recorded");
    let layers: Vec<_> = std::fs::read_dir(state.join("graph/layers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(layers.is_empty(), "layers left: {layers:?}");
}

#[test]
fn a_layer_of_many_empty_files_stops_above_the_inode_floor() {
    if !require_root("a_layer_of_many_empty_files_stops_above_the_inode_floor") {
        return;
    }
    let fs = Tmpfs::mount("inodes", "size=64m,nr_inodes=4000");
    let state = fs.0.join("state");
    let input = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = input.path().join("files.tar");
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..6000 {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("f{i}"), std::io::empty())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&file, b.into_inner().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = agent(&[
        "image",
        "load",
        "--state-dir",
        &s(&state),
        "--graph-driver",
        "vfs",
        "--name",
        "files:1",
        &s(&file),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the layer was loaded: {err}");
    assert!(
        err.contains("inodes the agent keeps free while unpacking"),
        "the unpack did not stop at the inode floor: {err}"
    );
    assert!(images(&state).is_empty(), "the layer was recorded");
}
