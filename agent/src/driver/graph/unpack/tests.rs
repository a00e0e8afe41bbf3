//! Unpacker tests, including the malicious-layer corpus: every hostile tar is generated here with
//! the `tar` crate's raw header API, unpacked into `<tmp>/a/b/layer`, must be rejected, and the
//! sentinel tree `<tmp>/sentinel` (plus everything else outside the layer) must be unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::*;

/// Builds tar bytes entry by entry, writing names straight into the header (no sanitising).
#[derive(Default)]
struct RawTar(Vec<u8>);

impl RawTar {
    fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        data: &[u8],
        mode: u32,
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        {
            let n = &mut h.as_old_mut().name;
            n.fill(0);
            n[..name.len()].copy_from_slice(name);
        }
        if let Some(l) = link {
            let ln = &mut h.as_old_mut().linkname;
            ln.fill(0);
            ln[..l.len()].copy_from_slice(l);
        }
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, name.as_bytes(), None, data, 0o644)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(EntryType::Directory, name.as_bytes(), None, b"", 0o755)
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Symlink,
            name.as_bytes(),
            Some(target.as_bytes()),
            b"",
            0o777,
        )
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Link,
            name.as_bytes(),
            Some(target.as_bytes()),
            b"",
            0o644,
        )
    }
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + base.to_string().len();
            if len.to_string().len() + base != len {
                len = base + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.raw(EntryType::XHeader, b"PaxHeader", None, &body, 0o644)
    }
    fn finish(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.0);
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

/// `<tmp>/sentinel/...` and `<tmp>/a/b/layer`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = dir.path().join("sentinel");
        fs::create_dir_all(s.join("dir")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(s.join("secret"), b"original").unwrap_or_else(|e| panic!("{e}"));
        fs::write(s.join("dir/inner"), b"inner").unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(dir.path().join("a/b/layer")).unwrap_or_else(|e| panic!("{e}"));
        Sandbox { dir }
    }
    fn layer(&self) -> PathBuf {
        self.dir.path().join("a/b/layer")
    }
    /// Everything outside the layer directory: path -> (mode, size, content).
    fn outside(&self) -> BTreeMap<PathBuf, (u32, u64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &self.layer(), &mut out);
        out
    }
}

fn walk(p: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, (u32, u64, Vec<u8>)>) {
    if p == skip {
        return;
    }
    let Ok(m) = fs::symlink_metadata(p) else {
        return;
    };
    let content = if m.is_file() {
        fs::read(p).unwrap_or_default()
    } else {
        Vec::new()
    };
    out.insert(p.to_path_buf(), (m.mode(), m.size(), content));
    if m.is_dir() {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            walk(&e.path(), skip, out);
        }
    }
}

fn run(tar: Vec<u8>) -> (Sandbox, Result<Stats, Error>) {
    let sb = Sandbox::new();
    let before = sb.outside();
    let r = unpack_layer(&tar[..], &sb.layer(), Options::default());
    assert_eq!(before, sb.outside(), "something outside the layer changed");
    (sb, r)
}

fn assert_rejected(case: &str, tar: Vec<u8>) {
    let (_sb, r) = run(tar);
    assert!(
        matches!(r, Err(Error::UnsafeEntry { .. })),
        "{case}: expected UnsafeEntry, got {r:?}"
    );
}

#[test]
fn malicious_corpus_is_rejected_and_nothing_escapes() {
    let big = vec![b'a'; 2 * 1024 * 1024];
    let long = vec![b'b'; 100 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot traversal",
            RawTar::default()
                .file("../../../sentinel/secret", b"pwned")
                .finish(),
        ),
        (
            "dotdot inside",
            RawTar::default()
                .file("x/../../../../sentinel/secret", b"pwned")
                .finish(),
        ),
        (
            "absolute path",
            RawTar::default()
                .file("/tmp/agent-abs-escape", b"pwned")
                .finish(),
        ),
        (
            "symlinked parent (relative)",
            RawTar::default()
                .symlink("evil", "../../../sentinel")
                .file("evil/secret", b"pwned")
                .finish(),
        ),
        (
            "symlinked parent (absolute)",
            RawTar::default()
                .symlink("evil", "/")
                .file("evil/tmp/agent-abs-escape", b"pwned")
                .finish(),
        ),
        (
            "symlinked parent planted deeper",
            RawTar::default()
                .dir("d")
                .symlink("d/l", "../../../..")
                .file("d/l/sentinel/secret", b"x")
                .finish(),
        ),
        (
            "symlinked parent for a directory",
            RawTar::default()
                .symlink("evil", "../../../sentinel")
                .dir("evil/newdir")
                .finish(),
        ),
        (
            "hardlink escape relative",
            RawTar::default()
                .hardlink("h", "../../../sentinel/secret")
                .finish(),
        ),
        (
            "hardlink escape absolute",
            RawTar::default().hardlink("h", "/etc/passwd").finish(),
        ),
        (
            "hardlink through symlinked dir",
            RawTar::default()
                .symlink("s", "../../../sentinel")
                .hardlink("h", "s/secret")
                .finish(),
        ),
        (
            "hardlink to missing",
            RawTar::default().hardlink("h", "nothere").finish(),
        ),
        (
            "hardlink to directory",
            RawTar::default().dir("d").hardlink("h", "d").finish(),
        ),
        (
            "whiteout via symlinked parent",
            RawTar::default()
                .symlink("evil", "../../../sentinel")
                .file("evil/.wh.secret", b"")
                .finish(),
        ),
        (
            "opaque via symlinked parent",
            RawTar::default()
                .symlink("evil", "../../../sentinel")
                .file("evil/.wh..wh..opq", b"")
                .finish(),
        ),
        (
            "whiteout of dotdot",
            RawTar::default().file(".wh..", b"").finish(),
        ),
        (
            "oversized PAX header",
            RawTar::default()
                .raw(EntryType::XHeader, b"p", None, &big, 0o644)
                .file("f", b"")
                .finish(),
        ),
        (
            "oversized GNU long name",
            RawTar::default()
                .raw(EntryType::GNULongName, b"././@LongLink", None, &long, 0o644)
                .file("f", b"")
                .finish(),
        ),
        (
            "GNU long name with traversal",
            RawTar::default()
                .raw(
                    EntryType::GNULongName,
                    b"././@LongLink",
                    None,
                    b"a/../../../../sentinel/secret\0",
                    0o644,
                )
                .file("f", b"pwned")
                .finish(),
        ),
        (
            "PAX path traversal",
            RawTar::default()
                .pax(&[("path", b"../../../sentinel/secret")])
                .file("f", b"pwned")
                .finish(),
        ),
        (
            "PAX size disagrees",
            RawTar::default()
                .pax(&[("size", b"3")])
                .file("f", b"pwned")
                .finish(),
        ),
        (
            "PAX overlay xattr",
            RawTar::default()
                .pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")])
                .dir("d")
                .finish(),
        ),
        (
            "non-directory root",
            RawTar::default().file("./", b"x").finish(),
        ),
        (
            "name too long",
            RawTar::default()
                .pax(&[("path", &vec![b'c'; 5000])])
                .file("f", b"")
                .finish(),
        ),
    ];
    for (case, tar) in cases {
        assert_rejected(case, tar);
    }
}

#[test]
fn symlink_replaced_by_file_does_not_write_through() {
    let tar = RawTar::default()
        .symlink("s", "../../../sentinel/secret")
        .file("s", b"new")
        .finish();
    let (sb, r) = run(tar);
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(fs::read(sb.layer().join("s")).unwrap_or_default(), b"new");
}

#[test]
fn unpacks_metadata_whiteouts_and_links() {
    let mut t = RawTar::default();
    t.dir("./")
        .dir("etc/")
        .file("etc/motd", b"hi")
        .hardlink("etc/motd2", "etc/motd")
        .symlink("etc/l", "/etc/motd");
    t.file("gone/.wh.file", b"")
        .dir("op")
        .file("op/.wh..wh..opq", b"")
        .file("op/new", b"n");
    t.pax(&[
        ("SCHILY.xattr.user.test", b"v"),
        ("uid", b"1000"),
        ("gid", b"1001"),
    ])
    .file("owned", b"o");
    t.raw(EntryType::Regular, b"suid", None, b"s", 0o4755);
    let tar = t.finish();
    let (sb, r) = run(tar);
    let stats = r.unwrap_or_else(|e| panic!("{e}"));
    let l = sb.layer();
    assert!(stats.entries >= 9, "{stats:?}");
    assert_eq!(fs::read(l.join("etc/motd")).unwrap_or_default(), b"hi");
    let (a, b) = (
        fs::metadata(l.join("etc/motd")),
        fs::metadata(l.join("etc/motd2")),
    );
    assert_eq!(
        a.map(|m| m.ino()).ok(),
        b.map(|m| m.ino()).ok(),
        "hard link not kept"
    );
    assert_eq!(
        fs::read_link(l.join("etc/l")).ok(),
        Some(PathBuf::from("/etc/motd"))
    );
    let wh = fs::symlink_metadata(l.join("gone/file")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (wh.mode() & libc::S_IFMT, wh.rdev()),
        (libc::S_IFCHR, 0),
        "whiteout is char 0:0"
    );
    let op = fsops::open_dir(&l.join("op")).unwrap_or_else(|e| panic!("{e}"));
    let key = fsops::cstr(b"trusted.overlay.opaque").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fsops::fgetxattr(op.as_raw_fd(), &key).ok().flatten(),
        Some(b"y".to_vec())
    );
    let owned = fs::metadata(l.join("owned")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((owned.uid(), owned.gid()), (1000, 1001));
    let f = fs::File::open(l.join("owned")).unwrap_or_else(|e| panic!("{e}"));
    let ukey = fsops::cstr(b"user.test").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fsops::fgetxattr(f.as_raw_fd(), &ukey).ok().flatten(),
        Some(b"v".to_vec())
    );
    let suid = fs::metadata(l.join("suid")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(suid.mtime(), 0);
}

#[test]
fn device_nodes_are_skipped_and_counted() {
    let tar = RawTar::default()
        .dir("dev")
        .raw(EntryType::Char, b"dev/console", None, b"", 0o600)
        .raw(EntryType::Char, b"dev/null", None, b"", 0o666)
        .raw(EntryType::Block, b"sda", None, b"", 0o660)
        .hardlink("dev/null2", "dev/null")
        .file("dev/keep", b"k")
        .finish();
    let (sb, r) = run(tar);
    let stats = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stats.devices_skipped, 4, "{stats:?}");
    assert_eq!(
        stats.skipped_names,
        ["dev/console", "dev/null", "sda", "dev/null2"],
        "{stats:?}"
    );
    let l = sb.layer();
    for gone in ["dev/console", "dev/null", "sda", "dev/null2"] {
        assert!(
            fs::symlink_metadata(l.join(gone)).is_err(),
            "{gone} was created"
        );
    }
    assert_eq!(fs::read(l.join("dev/keep")).unwrap_or_default(), b"k");
}

#[test]
fn devices_are_created_when_allowed() {
    let tar = RawTar::default()
        .raw(EntryType::Char, b"null", None, b"", 0o666)
        .finish();
    let sb = Sandbox::new();
    let r = unpack_layer(
        &tar[..],
        &sb.layer(),
        Options {
            allow_devices: true,
            ..Options::default()
        },
    );
    assert!(r.is_ok(), "{r:?}");
    let m = fs::symlink_metadata(sb.layer().join("null")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.mode() & libc::S_IFMT, libc::S_IFCHR);
}

#[test]
fn detects_compression() {
    let data = RawTar::default().file("f", b"x").finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &data).ok();
    let gz = gz.finish().unwrap_or_default();
    let zs = zstd::encode_all(&data[..], 1).unwrap_or_default();
    for (bytes, want) in [
        (&data, Compression::None),
        (&gz, Compression::Gzip),
        (&zs, Compression::Zstd),
    ] {
        let (c, mut r) = decompress(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, want);
        let mut out = Vec::new();
        r.read_to_end(&mut out).ok();
        assert_eq!(out, data);
    }
}

#[test]
fn storage_errors_are_not_unsafe_entries() {
    for errno in [libc::ENOSPC, libc::EDQUOT, libc::EIO, libc::EROFS] {
        let e = super::entry_io_error(b"a/b", "write file", io::Error::from_raw_os_error(errno));
        assert!(matches!(e, Error::Storage { .. }), "errno {errno}: {e:?}");
    }
    for errno in [libc::ELOOP, libc::ENOTDIR, libc::EEXIST, libc::EPERM] {
        let e = super::entry_io_error(b"a/b", "write file", io::Error::from_raw_os_error(errno));
        assert!(
            matches!(e, Error::UnsafeEntry { .. }),
            "errno {errno}: {e:?}"
        );
    }
}

#[test]
fn the_free_space_floor_stops_the_unpack_as_a_storage_error() {
    let big = vec![0u8; (FLOOR_CHECK_EVERY + (1 << 20)) as usize];
    let tar = RawTar::default().file("big", &big).finish();
    let sb = Sandbox::new();
    let floor = Options {
        min_free: u64::MAX,
        ..Options::default()
    };
    match unpack_layer(&tar[..], &sb.layer(), floor) {
        Err(Error::Storage {
            op,
            source,
            available,
            ..
        }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{op}");
            assert!(available.is_some() && op.contains("keeps free"), "{op}");
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    // Without a floor the same layer unpacks.
    let sb = Sandbox::new();
    assert!(unpack_layer(&tar[..], &sb.layer(), Options::default()).is_ok());
}
