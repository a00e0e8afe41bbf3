//! Layer unpacking on arbitrary bytes (plain, gzip or zstd tar): `unpack_layer` may refuse the
//! input, but must never panic and never create, change or remove anything outside the layer
//! directory. Each run unpacks into `<box>/layer/` next to a sibling `<box>/outside/` holding one
//! sentinel file; afterwards `<box>` must hold exactly `layer` and `outside`, and `outside` exactly
//! the untouched sentinel (an input can aim symlinks, hard links or `..` names at it).
#![no_main]

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use agent::driver::graph::unpack::{Options, decompress, unpack_layer};
use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"sentinel: must never change\n";
/// Decompressed bytes read at most per input, so a compression bomb cannot fill the disk.
const MAX_UNPACKED: u64 = 64 << 20;

fn sandbox() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("AGENT_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("agent-fuzz-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("outside")).expect("create sandbox");
        std::fs::write(dir.join("outside/sentinel"), SENTINEL).expect("write sentinel");
        dir
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let root = sandbox();
    let layer = root.join("layer");
    let outside = root.join("outside");
    let before = std::fs::metadata(outside.join("sentinel")).expect("sentinel");
    let outside_before = std::fs::symlink_metadata(&outside).expect("outside");
    std::fs::create_dir(&layer).expect("create layer dir");

    if let Ok((_, reader)) = decompress(data) {
        let _ = unpack_layer(reader.take(MAX_UNPACKED), &layer, Options::default());
    }

    assert_eq!(names(root), ["layer", "outside"], "something was created next to the layer");
    assert_eq!(names(&outside), ["sentinel"], "something was created outside the layer");
    let sentinel = outside.join("sentinel");
    let after = std::fs::symlink_metadata(&sentinel).expect("sentinel");
    assert!(after.file_type().is_file(), "sentinel replaced");
    assert_eq!(std::fs::read(&sentinel).expect("read sentinel"), SENTINEL);
    assert_eq!(
        (after.ino(), after.mode(), after.uid(), after.gid(), after.nlink()),
        (before.ino(), before.mode(), before.uid(), before.gid(), before.nlink()),
        "sentinel's inode, mode, owner or link count changed"
    );
    let dir = std::fs::symlink_metadata(&outside).expect("outside");
    assert!(dir.file_type().is_dir(), "outside replaced");
    assert_eq!(
        (dir.ino(), dir.mode(), dir.mtime(), dir.mtime_nsec()),
        (
            outside_before.ino(),
            outside_before.mode(),
            outside_before.mtime(),
            outside_before.mtime_nsec()
        ),
        "the outside directory was changed (an entry created and removed, or chmod)"
    );
    std::fs::remove_dir_all(&layer).expect("remove layer dir");
});
