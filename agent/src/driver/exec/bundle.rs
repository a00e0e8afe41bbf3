//! The OCI bundle of one container: `<state>/exec/<id>/` with `config.json` (the runtime spec),
//! `spec.json` (the [`ContainerSpec`] it was built from) and `etc/{hosts,hostname,resolv.conf}`,
//! which are bind-mounted into the container, and `secrets/` ([`super::secrets`]). Every file
//! is written atomically.
//!
//! Preparing the bundle also does what the spec needs on the host and in the root filesystem:
//! named volume directories are created, bind sources must exist, the working directory is
//! created inside the root filesystem (resolved against it, as Docker does).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Error;
use super::spec::{self, ContainerSpec, HostInfo, MountSource};

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("fsync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The host's resolv.conf without loopback name servers (they do not answer inside another
/// network namespace), as Docker filters it.
pub fn host_resolv_conf() -> String {
    let text = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    filter_resolv_conf(&text)
}

/// Drops `nameserver 127.*` / `::1` lines.
pub fn filter_resolv_conf(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() == Some("nameserver")
            && let Some(addr) = f.next()
            && (addr.starts_with("127.") || addr == "::1")
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The default `/etc/hosts`: loopback entries, and the hostname on loopback. (Docker puts the
/// hostname on the container's address, which only the network driver knows; it passes the
/// whole file in [`ContainerSpec::hosts`].)
pub fn default_hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.0.1\t{hostname}\n"
    )
}

/// Writes the bundle for `spec` into `dir` (created) and returns the runtime spec written.
/// `cdi_dirs` are the CDI spec directories ([`super::cdi`]).
pub fn write(
    dir: &Path,
    spec: &ContainerSpec,
    host: &HostInfo,
    cdi_dirs: &[PathBuf],
) -> Result<oci_spec::runtime::Spec, Error> {
    fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let etc = dir.join("etc");
    fs::create_dir_all(&etc).map_err(Error::io("create directory", &etc))?;
    if !spec.rootfs.is_dir() {
        return Err(Error::InvalidSpec {
            container: spec.name.clone(),
            field: "rootfs".into(),
            reason: format!(
                "{} is not a directory (is the root filesystem mounted?)",
                spec.rootfs.display()
            ),
        });
    }
    let hostname = spec::build::hostname(spec);
    let hosts = spec
        .hosts
        .clone()
        .unwrap_or_else(|| default_hosts(&hostname));
    let resolv = spec.resolv_conf.clone().unwrap_or_else(host_resolv_conf);
    for (name, text) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let p = etc.join(name);
        write_atomic(&p, text.as_bytes())?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
            .map_err(Error::io("chmod", &p))?;
    }
    for m in &spec.mounts {
        match &m.source {
            MountSource::Volume { path } => {
                fs::create_dir_all(path).map_err(Error::io("create volume directory", path))?;
            }
            MountSource::Bind { path } => {
                if !path.exists() {
                    return Err(Error::InvalidSpec {
                        container: spec.name.clone(),
                        field: format!("mounts[{}]", m.target),
                        reason: format!("bind source {} does not exist", path.display()),
                    });
                }
            }
            MountSource::Tmpfs { .. } => {}
        }
    }
    let mut user = spec::user::resolve(&spec.rootfs, spec::build::user(spec).as_deref()).map_err(
        |reason| Error::InvalidSpec {
            container: spec.name.clone(),
            field: "user".into(),
            reason,
        },
    )?;
    spec::user::add_groups(&spec.rootfs, &mut user, &spec.group_add).map_err(|reason| {
        Error::InvalidSpec {
            container: spec.name.clone(),
            field: "groupAdd".into(),
            reason,
        }
    })?;
    let mut oci = spec::build(spec, host, &user, &etc)?;
    super::secrets::apply(dir, spec, &mut oci)?;
    super::devices::apply(spec, &mut oci, cdi_dirs)?;
    let cwd = spec::build::workdir(spec);
    let wd: PathBuf =
        spec::user::secure_join(&spec.rootfs, &cwd).map_err(Error::io("resolve workdir", &cwd))?;
    if !wd.exists() && !spec.read_only {
        fs::create_dir_all(&wd).map_err(Error::io("create workdir", &wd))?;
    }
    write_json(&dir.join("config.json"), &oci)?;
    write_json(&dir.join("spec.json"), spec)?;
    Ok(oci)
}

/// Writes `value` as pretty JSON to `path` atomically ([`write_atomic`]).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let t = "# c\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nnameserver ::1\nsearch lan\n";
        assert_eq!(
            filter_resolv_conf(t),
            "# c\nnameserver 10.0.0.1\nsearch lan\n"
        );
    }

    #[test]
    fn writes_bundle_files_and_workdir() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let rootfs = d.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nu:x:7:8::/home/u:/bin/sh\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut s = ContainerSpec::new("c1", "web", &rootfs);
        s.command = Some(vec!["/bin/sh".into()]);
        s.workdir = Some("/srv/app".into());
        s.user = Some("u".into());
        s.resolv_conf = Some("nameserver 10.1.1.1\n".into());
        s.mounts.push(super::super::spec::Mount {
            target: "/data".into(),
            source: MountSource::Volume {
                path: d.path().join("vol"),
            },
            read_only: false,
        });
        let host = HostInfo::detect("/agent-test");
        let bundle = d.path().join("bundle");
        let oci = write(&bundle, &s, &host, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(rootfs.join("srv/app").is_dir());
        assert!(d.path().join("vol").is_dir());
        assert_eq!(
            fs::read_to_string(bundle.join("etc/hostname"))
                .ok()
                .as_deref(),
            Some("web\n")
        );
        assert_eq!(
            fs::read_to_string(bundle.join("etc/resolv.conf"))
                .ok()
                .as_deref(),
            Some("nameserver 10.1.1.1\n")
        );
        assert!(
            fs::read_to_string(bundle.join("etc/hosts"))
                .unwrap_or_default()
                .contains("127.0.0.1\tweb")
        );
        let user = oci
            .process()
            .as_ref()
            .map(|p| p.user().clone())
            .unwrap_or_default();
        assert_eq!((user.uid(), user.gid()), (7, 8));
        let back: oci_spec::runtime::Spec =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, oci);
        // a bind source that does not exist is refused with the mount named
        s.mounts.push(super::super::spec::Mount {
            target: "/conf".into(),
            source: MountSource::Bind {
                path: d.path().join("missing"),
            },
            read_only: true,
        });
        let e = write(&bundle, &s, &host, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("mounts[/conf]") && e.contains("does not exist"),
            "{e}"
        );
    }
}
