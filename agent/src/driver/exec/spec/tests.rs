//! Unit tests of the spec builder (no root needed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use oci_spec::image::ConfigBuilder;
use oci_spec::runtime::{
    Capability, LinuxNamespaceType, LinuxSeccompAction, PosixRlimitType, Spec,
};

use super::user::{ResolvedUser, resolve, resolve_with, secure_join};
use super::*;
use crate::driver::exec::Error;

fn host() -> HostInfo {
    HostInfo {
        cgroup_v2: false,
        swap_accounting: true,
        arch: "amd64".into(),
        kernel: (6, 1),
        rlimit_hard: BTreeMap::from([("nofile".to_string(), 20000), ("nproc".to_string(), 96000)]),
        can_raise_rlimits: false,
        nr_open: Some(1_048_576),
        cgroup_parent: "/agent".into(),
        cap_bounding: None,
        oom_score_adj: 0,
        init_binary: None,
        cgroup_v1: crate::driver::exec::cgroups::v1_hierarchies_in(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        ),
    }
}

fn root() -> ResolvedUser {
    ResolvedUser {
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        home: "/root".into(),
    }
}

fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> oci_spec::image::Config {
    let mut b = ConfigBuilder::default().env(vec![
        "PATH=/bin".to_string(),
        "FOO=image".to_string(),
        "KEEP=1".to_string(),
    ]);
    if let Some(e) = entrypoint {
        b = b.entrypoint(e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
    if let Some(c) = cmd {
        b = b.cmd(c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
    b.build().unwrap_or_else(|e| panic!("{e}"))
}

fn spec() -> ContainerSpec {
    let mut s = ContainerSpec::new("c1", "web", "/rootfs");
    s.image = Some(image(None, Some(&["/bin/sh"])));
    s
}

fn build_ok(s: &ContainerSpec) -> Spec {
    build(s, &host(), &root(), Path::new("/state/c1/etc")).unwrap_or_else(|e| panic!("{e}"))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn command_merge_follows_docker() {
    let mut s = spec();
    // image cmd only
    assert_eq!(build::command(&s).ok(), Some(strs(&["/bin/sh"])));
    // command override replaces cmd
    s.command = Some(strs(&["echo", "hi"]));
    assert_eq!(build::command(&s).ok(), Some(strs(&["echo", "hi"])));
    // image entrypoint + image cmd
    let mut s = spec();
    s.image = Some(image(Some(&["/entry", "-x"]), Some(&["arg"])));
    assert_eq!(
        build::command(&s).ok(),
        Some(strs(&["/entry", "-x", "arg"]))
    );
    // image entrypoint + command override
    s.command = Some(strs(&["other"]));
    assert_eq!(
        build::command(&s).ok(),
        Some(strs(&["/entry", "-x", "other"]))
    );
    // entrypoint override clears the image's cmd
    s.command = None;
    s.entrypoint = Some(strs(&["/bin/true"]));
    assert_eq!(build::command(&s).ok(), Some(strs(&["/bin/true"])));
    // empty entrypoint override: the command alone
    s.entrypoint = Some(vec![]);
    s.command = Some(strs(&["/bin/date"]));
    assert_eq!(build::command(&s).ok(), Some(strs(&["/bin/date"])));
    // nothing at all is an error naming the field
    s.command = None;
    match build::command(&s) {
        Err(Error::InvalidSpec { field, .. }) => assert_eq!(field, "command"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn env_merges_image_then_spec() {
    let mut s = spec();
    s.env.insert("FOO".into(), "spec".into());
    s.env.insert("NEW".into(), "x".into());
    let env = build::environment(&s, "web", "/root");
    assert_eq!(
        env,
        strs(&[
            "PATH=/bin",
            "FOO=spec",
            "KEEP=1",
            "NEW=x",
            "HOSTNAME=web",
            "HOME=/root"
        ])
    );
    // PATH defaulted when the image has none
    let mut s = ContainerSpec::new("c", "n", "/r");
    s.command = Some(strs(&["x"]));
    let env = build::environment(&s, "n", "/");
    assert_eq!(env[0], format!("PATH={}", build::DEFAULT_PATH));
}

#[test]
fn workdir_hostname_user_defaults() {
    let mut s = spec();
    assert_eq!(build::workdir(&s), "/");
    assert_eq!(build::hostname(&s), "web");
    s.image = Some(
        ConfigBuilder::default()
            .working_dir("/srv")
            .user("user")
            .cmd(strs(&["x"]))
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(build::workdir(&s), "/srv");
    assert_eq!(build::user(&s).as_deref(), Some("user"));
    s.workdir = Some("/data".into());
    s.user = Some("1000:1000".into());
    s.hostname = Some("box".into());
    assert_eq!(build::workdir(&s), "/data");
    assert_eq!(build::user(&s).as_deref(), Some("1000:1000"));
    let out = build_ok(&s);
    assert_eq!(out.hostname().as_deref(), Some("box"));
    s.workdir = Some("relative".into());
    assert!(build(&s, &host(), &root(), Path::new("/e")).is_err());
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n\
                      # comment\nbroken line\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nuser:x:1000:\nstaff:x:50:user,other\naudio:x:29:user\n";

#[test]
fn user_resolution() {
    let r = resolve_with(None, PASSWD, GROUP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
    let r = resolve_with(Some("user"), PASSWD, GROUP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.uid, r.gid, r.home.as_str()), (1000, 1000, "/home/user"));
    assert_eq!(r.additional_gids, vec![50, 29]);
    let r = resolve_with(Some("1000"), PASSWD, GROUP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.uid, r.gid), (1000, 1000));
    let r = resolve_with(Some("4242"), PASSWD, GROUP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.uid, r.gid, r.home.as_str()), (4242, 0, "/"));
    let r = resolve_with(Some("user:staff"), PASSWD, GROUP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.uid, r.gid), (1000, 50));
    assert!(r.additional_gids.is_empty());
    let r = resolve_with(Some("nobody:7"), PASSWD, GROUP).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.uid, r.gid), (65534, 7));
    let e = resolve_with(Some("ghost"), PASSWD, GROUP)
        .err()
        .unwrap_or_default();
    assert!(e.contains("\"ghost\"") && e.contains("/etc/passwd"), "{e}");
    let e = resolve_with(Some("user:ghosts"), PASSWD, GROUP)
        .err()
        .unwrap_or_default();
    assert!(e.contains("\"ghosts\"") && e.contains("/etc/group"), "{e}");
    assert!(resolve_with(Some("user:"), PASSWD, GROUP).is_err());
}

/// `(uid_t)-1` means "unchanged" to setresuid: ids above 2147483647 are refused from every
/// source, as runc does.
#[test]
fn user_ids_above_max_are_refused() {
    let err = |u: &str, passwd: &str, group: &str| {
        resolve_with(Some(u), passwd, group)
            .err()
            .unwrap_or_else(|| panic!("{u:?} was accepted"))
    };
    for u in [
        "4294967295",
        "2147483648",
        "99999999999999999999",
        "0:4294967295",
        "user:2147483648",
    ] {
        let e = err(u, PASSWD, GROUP);
        assert!(e.contains("0-2147483647"), "{u}: {e}");
    }
    let r = resolve_with(Some("2147483647:2147483647"), PASSWD, GROUP)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.uid, r.gid), (2147483647, 2147483647));
    // from the image's files
    let passwd =
        "evil:x:4294967295:0::/:/bin/sh\nbadgid:x:5:4294967295::/:/bin/sh\nok:x:6:6::/:/bin/sh\n";
    let group = "wide:x:4294967294:ok\n";
    assert!(err("evil", passwd, group).contains("uid 4294967295"));
    assert!(err("badgid", passwd, group).contains("gid 4294967295"));
    assert!(err("ok", passwd, group).contains("gid 4294967294"));
    assert!(err("ok:wide", passwd, group).contains("gid 4294967294"));
    assert!(super::user::check_numeric_ids("user:group").is_ok());
    assert!(super::user::check_numeric_ids("2147483648").is_err());
}

#[test]
fn secure_join_stays_inside_root() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let r = dir.path();
    std::fs::create_dir_all(r.join("etc")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(r.join("real")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(r.join("real/passwd"), PASSWD).unwrap_or_else(|e| panic!("{e}"));
    // absolute symlink: resolved against the container root, not the host
    std::os::unix::fs::symlink("/real/passwd", r.join("etc/passwd"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("../../../../../../etc/shadow", r.join("etc/group"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        secure_join(r, "/etc/passwd").ok(),
        Some(r.join("real/passwd"))
    );
    assert_eq!(
        secure_join(r, "/etc/group").ok(),
        Some(r.join("etc/shadow"))
    );
    assert_eq!(secure_join(r, "/../../x").ok(), Some(r.join("x")));
    std::os::unix::fs::symlink("loop", r.join("loop")).unwrap_or_else(|e| panic!("{e}"));
    assert!(secure_join(r, "/loop/x").is_err());
    let u = resolve(r, Some("user")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u.uid, 1000);
}

#[test]
fn default_nofile_is_bounded_by_what_the_host_allows() {
    let mut h = host();
    assert_eq!(build::default_nofile(&h), (1024, 20000));
    h.can_raise_rlimits = true;
    assert_eq!(build::default_nofile(&h), (1024, 1_048_576));
    h.nr_open = Some(65536);
    assert_eq!(build::default_nofile(&h), (1024, 65536));
    h.can_raise_rlimits = false;
    h.rlimit_hard.insert("nofile".into(), 512);
    assert_eq!(build::default_nofile(&h), (512, 512));
    h.rlimit_hard.insert("nofile".into(), 4_000_000);
    h.nr_open = None;
    assert_eq!(build::default_nofile(&h), (1024, 1_048_576));
}

/// A `nofile` above `fs.nr_open` cannot be set even with CAP_SYS_RESOURCE: refused by name
/// (it failed deep inside container creation with EPERM before).
#[test]
fn rlimit_ceilings_name_the_bound() {
    let mut h = host();
    let b = h.limits();
    assert_eq!(b.ceiling("nofile", 20000), None);
    assert_eq!(
        b.ceiling("nofile", 20001),
        Some(build::RlimitCeiling::Own(20000))
    );
    assert_eq!(b.ceiling("core", u64::MAX), None, "no own limit known");
    h.can_raise_rlimits = true;
    let b = h.limits();
    assert_eq!(b.ceiling("nproc", u64::MAX), None);
    assert_eq!(
        b.ceiling("nofile", u64::MAX),
        Some(build::RlimitCeiling::NrOpen(1_048_576))
    );
    let mut s = spec();
    s.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 1024,
        hard: u64::MAX,
    }];
    let e = build(&s, &h, &root(), Path::new("/e"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("ulimit nofile: hard limit unlimited is above the kernel's fs.nr_open 1048576")
            && e.contains("use at most 1048576"),
        "{e}"
    );
}

#[test]
fn rlimits_default_and_host_bound() {
    let mut s = spec();
    let out = build_ok(&s);
    let rl = out
        .process()
        .as_ref()
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default();
    assert_eq!(rl.len(), 1);
    assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
    // soft 1024, hard as high as the agent may give: its own hard limit here
    assert_eq!((rl[0].soft(), rl[0].hard()), (1024, 20000));
    s.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 2048,
        hard: 4096,
    }];
    let out = build_ok(&s);
    let rl = out
        .process()
        .as_ref()
        .and_then(|p| p.rlimits().clone())
        .unwrap_or_default();
    assert_eq!((rl[0].soft(), rl[0].hard()), (2048, 4096));
    // above the host's hard limit: a clear error naming the ulimit
    s.rlimits = vec![Rlimit {
        name: "nofile".into(),
        soft: 1024,
        hard: 1_048_576,
    }];
    let e = build(&s, &host(), &root(), Path::new("/e"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("ulimit nofile") && e.contains("20000") && e.contains("CAP_SYS_RESOURCE"),
        "{e}"
    );
    // with CAP_SYS_RESOURCE the agent may raise it
    let mut h = host();
    h.can_raise_rlimits = true;
    assert!(build(&s, &h, &root(), Path::new("/e")).is_ok());
    s.rlimits = vec![Rlimit {
        name: "nofiles".into(),
        soft: 1,
        hard: 1,
    }];
    let e = build(&s, &host(), &root(), Path::new("/e"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("ulimits.nofiles") && e.contains("nofile"), "{e}");
    s.rlimits = vec![Rlimit {
        name: "core".into(),
        soft: 2,
        hard: 1,
    }];
    assert!(build(&s, &host(), &root(), Path::new("/e")).is_err());
}

#[test]
fn capabilities_default_add_drop() {
    let set = caps::effective(&[], &[]).unwrap_or_default();
    assert_eq!(set.len(), 14);
    assert!(set.contains("NET_RAW") && !set.contains("SYS_ADMIN"));
    let set = caps::effective(&strs(&["cap_net_admin"]), &strs(&["NET_RAW", "CAP_CHOWN"]))
        .unwrap_or_default();
    assert!(set.contains("NET_ADMIN") && !set.contains("NET_RAW") && !set.contains("CHOWN"));
    let set = caps::effective(&strs(&["KILL"]), &strs(&["ALL"])).unwrap_or_default();
    assert_eq!(set, BTreeSet::from(["KILL".to_string()]));
    assert!(
        caps::effective(&strs(&["ALL"]), &[])
            .unwrap_or_default()
            .contains("SYS_ADMIN")
    );
    let e = caps::effective(&strs(&["FLY"]), &[])
        .err()
        .unwrap_or_default();
    assert!(e.contains("cap_add") && e.contains("FLY"), "{e}");

    let mut s = spec();
    s.cap_drop = strs(&["CHOWN"]);
    // ALL is the agent's own bounding set (this host's root lacks SYS_RESOURCE, bit 24)
    let status = "Name:\tagent\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n";
    let bounding = caps::bounding_in_status(status).unwrap_or_default();
    assert_eq!(bounding, 0x1fffeffffff);
    let all = caps::effective(&strs(&["ALL"]), &[]).unwrap_or_default();
    let within = caps::within_bounding(all.clone(), &strs(&["ALL"]), bounding)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(within.len(), all.len() - 1);
    assert!(!within.contains("SYS_RESOURCE") && within.contains("SYS_ADMIN"));
    let e = caps::within_bounding(all, &strs(&["cap_sys_resource"]), bounding)
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("SYS_RESOURCE") && e.contains("bounding set"),
        "{e}"
    );
    let mut h = host();
    h.cap_bounding = Some(bounding & !(1 << 27)); // no MKNOD: the default set loses it
    let mut all_spec = spec();
    all_spec.cap_add = strs(&["ALL"]);
    let out = build(&all_spec, &h, &root(), Path::new("/e")).unwrap_or_else(|e| panic!("{e}"));
    let bnd = out
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    assert!(!bnd.contains(&Capability::Mknod) && !bnd.contains(&Capability::SysResource));
    assert!(bnd.contains(&Capability::SysAdmin));
    let out = build_ok(&s);
    let c = out
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone());
    let bounding = c
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    assert!(!bounding.contains(&Capability::Chown));
    assert!(bounding.contains(&Capability::Kill));
    assert_eq!(
        c.and_then(|c| c.ambient().clone())
            .unwrap_or_default()
            .len(),
        0
    );
}

/// (destination, type, source, options) of the mounts under /sys/fs/cgroup.
fn cgroup_mounts_of(out: &Spec) -> Vec<(String, String, String, Vec<String>)> {
    out.mounts()
        .clone()
        .unwrap_or_default()
        .iter()
        .filter(|m| m.destination().starts_with("/sys/fs/cgroup"))
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.typ().clone().unwrap_or_default(),
                m.source()
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                m.options().clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// v1: a tmpfs made read-only after the binds, one read-only bind of the container's own cgroup
/// per managed hierarchy (and per co-mounted controller name); no systemd or unified hierarchy.
#[test]
fn cgroup_v1_mounts_are_read_only_binds_of_the_container_cgroup() {
    let out = build_ok(&spec());
    let m = cgroup_mounts_of(&out);
    let dests: Vec<&str> = m.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        dests,
        vec![
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/cpu,cpuacct",
            "/sys/fs/cgroup/cpu",
            "/sys/fs/cgroup/cpuacct",
            "/sys/fs/cgroup/memory"
        ]
    );
    assert_eq!(m[0].1, "tmpfs");
    for (dest, typ, source, opts) in &m[1..] {
        assert_eq!(typ, "bind", "{dest}");
        assert!(opts.contains(&"ro".to_string()), "{dest}: {opts:?}");
        assert!(source.ends_with("/agent/c1"), "{dest}: {source}");
    }
    assert_eq!(m[4].2, "/sys/fs/cgroup/memory/agent/c1");
    assert!(
        !m.iter().any(|m| m.1 == "cgroup"),
        "libcontainer's v1 mount ignores ro"
    );
    let linux = out.linux().clone().unwrap_or_default();
    assert!(
        linux
            .readonly_paths()
            .clone()
            .unwrap_or_default()
            .contains(&"/sys/fs/cgroup".to_string())
    );
}

/// v2-only host: a read-only cgroup2 mount inside a cgroup namespace, rooted at the container's
/// own cgroup.
#[test]
fn cgroup_v2_mount_is_read_only_in_a_cgroup_namespace() {
    let mut v2 = host();
    v2.cgroup_v2 = true;
    v2.cgroup_v1 = Vec::new();
    let out = build(&spec(), &v2, &root(), Path::new("/e")).unwrap_or_else(|e| panic!("{e}"));
    let m = cgroup_mounts_of(&out);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(
        (m[0].0.as_str(), m[0].1.as_str()),
        ("/sys/fs/cgroup", "cgroup")
    );
    assert!(m[0].3.contains(&"ro".to_string()), "{m:?}");
    let linux = out.linux().clone().unwrap_or_default();
    assert!(
        linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    );
    assert!(
        !linux
            .readonly_paths()
            .clone()
            .unwrap_or_default()
            .contains(&"/sys/fs/cgroup".to_string())
    );
}

#[test]
fn security_defaults() {
    let s = spec();
    let out = build_ok(&s);
    let p = out.process().clone().unwrap_or_default();
    assert_eq!(p.no_new_privileges(), Some(true));
    let linux = out.linux().clone().unwrap_or_default();
    let masked = linux.masked_paths().clone().unwrap_or_default();
    assert!(masked.contains(&"/proc/kcore".to_string()));
    assert!(
        linux
            .readonly_paths()
            .clone()
            .unwrap_or_default()
            .contains(&"/proc/sys".to_string())
    );
    let ns: Vec<LinuxNamespaceType> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(ns.contains(&LinuxNamespaceType::Network) && ns.contains(&LinuxNamespaceType::Pid));
    assert!(
        !ns.contains(&LinuxNamespaceType::Cgroup),
        "v1: host cgroup namespace as Docker"
    );
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/agent/c1"))
    );
    let sec = linux
        .seccomp()
        .clone()
        .unwrap_or_else(|| panic!("seccomp missing"));
    assert_eq!(sec.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(sec.default_errno_ret(), Some(1));
    let sys = out.mounts().clone().unwrap_or_default();
    let sysfs = sys
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .cloned()
        .unwrap_or_default();
    assert!(
        sysfs
            .options()
            .clone()
            .unwrap_or_default()
            .contains(&"ro".to_string())
    );

    let mut v2 = host();
    v2.cgroup_v2 = true;
    let out = build(&s, &v2, &root(), Path::new("/e")).unwrap_or_else(|e| panic!("{e}"));
    let bounding = out
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    assert!(
        !bounding.contains(&Capability::Mknod),
        "v2: no device cgroup, no MKNOD"
    );
    assert!(bounding.contains(&Capability::Chown));
    let mut with_mknod = s.clone();
    with_mknod.cap_add = vec!["mknod".into()];
    let out2 = build(&with_mknod, &v2, &root(), Path::new("/e")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out2.process()
            .as_ref()
            .and_then(|p| p.capabilities().clone())
            .and_then(|c| c.bounding().clone())
            .unwrap_or_default()
            .contains(&Capability::Mknod)
    );
    let ns: Vec<LinuxNamespaceType> = out
        .linux()
        .clone()
        .unwrap_or_default()
        .namespaces()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(ns.contains(&LinuxNamespaceType::Cgroup));

    let mut s = spec();
    s.seccomp = SeccompMode::Unconfined;
    s.no_new_privileges = false;
    s.network = NetworkMode::Host;
    let out = build_ok(&s);
    assert!(out.linux().clone().unwrap_or_default().seccomp().is_none());
    let ns: Vec<LinuxNamespaceType> = out
        .linux()
        .clone()
        .unwrap_or_default()
        .namespaces()
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(!ns.contains(&LinuxNamespaceType::Network));
}

fn names_allowed(sec: &oci_spec::runtime::LinuxSeccomp) -> BTreeSet<String> {
    sec.syscalls()
        .clone()
        .unwrap_or_default()
        .iter()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
        .flat_map(|s| s.names().clone())
        .collect()
}

#[test]
fn seccomp_profile_depends_on_caps_and_arch() {
    let default = caps::effective(&[], &[]).unwrap_or_default();
    let sec = seccomp::docker_default(&default, "amd64", (6, 1)).unwrap_or_else(|e| panic!("{e}"));
    let allowed = names_allowed(&sec);
    for n in [
        "read",
        "write",
        "execve",
        "arch_prctl",
        "chroot",
        "ptrace",
        "wait4",
    ] {
        assert!(allowed.contains(n), "{n} should be allowed");
    }
    for n in [
        "mount",
        "unshare",
        "setns",
        "reboot",
        "init_module",
        "bpf",
        "clone",
        "arm_fadvise64_64",
    ] {
        assert!(
            !allowed.contains(n),
            "{n} must not be allowed unconditionally"
        );
    }
    // clone: allowed only without namespace flags, encoded for libcontainer 0.7.0
    let clone = sec
        .syscalls()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.names().contains(&"clone".to_string()))
        .unwrap_or_else(|| panic!("no clone rule"));
    let arg = clone.args().clone().unwrap_or_default()[0];
    assert_eq!(
        (arg.index(), arg.value(), arg.value_two()),
        (0, 0, Some(seccomp::CLONE_NAMESPACE_FLAGS))
    );
    // clone3 answers ENOSYS so that libc falls back to clone
    assert!(
        sec.syscalls()
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|s| s.names().contains(&"clone3".to_string()) && s.errno_ret() == Some(38))
    );

    let admin = caps::effective(&strs(&["SYS_ADMIN"]), &[]).unwrap_or_default();
    let sec = seccomp::docker_default(&admin, "amd64", (6, 1)).unwrap_or_else(|e| panic!("{e}"));
    let allowed = names_allowed(&sec);
    assert!(allowed.contains("mount") && allowed.contains("clone") && allowed.contains("clone3"));
    assert!(
        !sec.syscalls()
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|s| s.errno_ret() == Some(38))
    );

    let sec = seccomp::docker_default(&default, "arm64", (6, 1)).unwrap_or_else(|e| panic!("{e}"));
    let allowed = names_allowed(&sec);
    assert!(allowed.contains("arm_fadvise64_64") && !allowed.contains("arch_prctl"));
    // before 4.8 ptrace needs CAP_SYS_PTRACE
    let sec = seccomp::docker_default(&default, "amd64", (4, 4)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!names_allowed(&sec).contains("ptrace"));
    assert_eq!(seccomp::kernel_version("6.18.44-fc-v857"), Some((6, 18)));
}

#[test]
fn mounts_volumes_tmpfs_shm_and_etc() {
    let mut s = spec();
    s.read_only = true;
    s.shm_size = Some(1 << 20);
    s.mounts = vec![
        Mount {
            target: "/data".into(),
            source: MountSource::Volume {
                path: "/var/lib/agent/volumes/v".into(),
            },
            read_only: false,
        },
        Mount {
            target: "/conf".into(),
            source: MountSource::Bind {
                path: "/srv/conf".into(),
            },
            read_only: true,
        },
        Mount {
            target: "/run".into(),
            source: MountSource::Tmpfs {
                size: Some(16 << 20),
                mode: None,
            },
            read_only: false,
        },
    ];
    let out = build_ok(&s);
    assert_eq!(out.root().as_ref().and_then(|r| r.readonly()), Some(true));
    let mounts = out.mounts().clone().unwrap_or_default();
    let find = |d: &str| {
        mounts
            .iter()
            .find(|m| m.destination() == Path::new(d))
            .cloned()
            .unwrap_or_else(|| panic!("no mount {d}"))
    };
    let opts = |d: &str| find(d).options().clone().unwrap_or_default();
    assert!(opts("/dev/shm").contains(&"size=1048576".to_string()));
    assert!(opts("/conf").contains(&"ro".to_string()));
    assert!(
        opts("/conf").contains(&"rro".to_string()),
        "read-only binds are read-only recursively"
    );
    assert!(opts("/data").contains(&"rw".to_string()));
    assert!(!opts("/data").contains(&"rro".to_string()));
    // no mount_setattr before 5.12: a read-only bind is refused, naming the mount and why
    let mut old_kernel = host();
    old_kernel.kernel = (5, 10);
    let e = build(&s, &old_kernel, &root(), Path::new("/e"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("/conf") && e.contains("5.12"), "{e}");
    assert_eq!(
        find("/data").source().as_deref(),
        Some(Path::new("/var/lib/agent/volumes/v"))
    );
    assert!(opts("/run").contains(&"size=16777216".to_string()));
    assert_eq!(find("/run").typ().as_deref(), Some("tmpfs"));
    assert_eq!(
        find("/etc/hosts").source().as_deref(),
        Some(Path::new("/state/c1/etc/hosts"))
    );
    assert_eq!(
        find("/etc/resolv.conf").source().as_deref(),
        Some(Path::new("/state/c1/etc/resolv.conf"))
    );

    s.mounts.push(Mount {
        target: "/data/".into(),
        source: MountSource::Tmpfs {
            size: None,
            mode: None,
        },
        read_only: false,
    });
    assert!(
        build(&s, &host(), &root(), Path::new("/e")).is_err(),
        "duplicate target"
    );
    s.mounts.pop();
    s.mounts.push(Mount {
        target: "rel".into(),
        source: MountSource::Tmpfs {
            size: None,
            mode: None,
        },
        read_only: false,
    });
    assert!(
        build(&s, &host(), &root(), Path::new("/e")).is_err(),
        "relative target"
    );
}

#[test]
fn resources_map_like_docker() {
    let mut s = spec();
    s.resources = Resources {
        memory: Some(64 << 20),
        memory_reservation: Some(32 << 20),
        cpu_quota: Some(50_000),
        cpu_shares: Some(512),
        cpuset_cpus: Some("0".into()),
        pids: Some(64),
        ..Resources::default()
    };
    let out = build_ok(&s);
    let r = out
        .linux()
        .clone()
        .unwrap_or_default()
        .resources()
        .clone()
        .unwrap_or_default();
    let mem = r.memory().unwrap_or_default();
    assert_eq!(mem.limit(), Some(64 << 20));
    assert_eq!(
        mem.swap(),
        Some(128 << 20),
        "Docker: swap defaults to twice the memory"
    );
    assert_eq!(mem.reservation(), Some(32 << 20));
    let cpu = r.cpu().clone().unwrap_or_default();
    assert_eq!(
        (cpu.quota(), cpu.period(), cpu.shares()),
        (Some(50_000), Some(100_000), Some(512))
    );
    assert_eq!(cpu.cpus().as_deref(), Some("0"));
    assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(64));
    let dev = r.devices().clone().unwrap_or_default();
    assert!(
        !dev[0].allow() && dev[0].access().as_deref() == Some("rwm"),
        "deny all first"
    );

    let mut h = host();
    h.swap_accounting = false;
    let out = build(&s, &h, &root(), Path::new("/e")).unwrap_or_else(|e| panic!("{e}"));
    let mem = out
        .linux()
        .clone()
        .unwrap_or_default()
        .resources()
        .clone()
        .unwrap_or_default()
        .memory()
        .unwrap_or_default();
    assert_eq!(mem.swap(), None);

    s.resources.memory_swap = Some(1 << 20);
    let e = build_ok_err(&s);
    assert!(e.contains("resources.memorySwap"), "{e}");
    s.resources.memory_swap = None;
    s.resources.memory = Some(1024);
    assert!(build_ok_err(&s).contains("resources.memory"));
    s.resources.memory = None;
    s.resources.cpu_shares = Some(1);
    assert!(build_ok_err(&s).contains("cpuShares"));
    s.resources.cpu_shares = None;
    s.resources.pids = Some(0);
    assert!(build_ok_err(&s).contains("resources.pids"));
}

fn build_ok_err(s: &ContainerSpec) -> String {
    build(s, &host(), &root(), Path::new("/e"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn sysctls_namespaced_only() {
    let mut s = spec();
    s.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    s.sysctls.insert("kernel.shmmax".into(), "1000000".into());
    let out = build_ok(&s);
    let sys = out
        .linux()
        .clone()
        .unwrap_or_default()
        .sysctl()
        .clone()
        .unwrap_or_default();
    assert_eq!(
        sys.get("net.ipv4.ip_forward").map(String::as_str),
        Some("1")
    );
    s.sysctls.insert("vm.swappiness".into(), "1".into());
    assert!(build_ok_err(&s).contains("sysctls.vm.swappiness"));
    s.sysctls.remove("vm.swappiness");
    s.network = NetworkMode::Host;
    assert!(build_ok_err(&s).contains("host's network"));
}

#[test]
fn container_spec_round_trips_json() {
    let mut s = spec();
    s.mounts.push(Mount {
        target: "/t".into(),
        source: MountSource::Tmpfs {
            size: Some(1),
            mode: Some(0o700),
        },
        read_only: true,
    });
    s.network = NetworkMode::Path("/run/netns/x".into());
    let j = serde_json::to_string(&s).unwrap_or_default();
    let back: ContainerSpec = serde_json::from_str(&j).unwrap_or_else(|e| panic!("{e}: {j}"));
    assert_eq!(back, s);
}

/// Loads the profile into a child process (this test binary, re-run for one test) and checks with
/// raw system calls that plain `clone` (fork) works and `clone` with a namespace flag is refused:
/// this pins the MASKED_EQ encoding libcontainer 0.7.0 needs (see `seccomp` module docs).
#[test]
fn seccomp_clone_rule_allows_fork_and_refuses_namespaces() {
    if std::env::var_os("AGENT_SECCOMP_PROBE").is_some() {
        return seccomp_probe_child();
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "driver::exec::spec::tests::seccomp_clone_rule_allows_fork_and_refuses_namespaces",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AGENT_SECCOMP_PROBE", "1")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("probe: fork=ok newuser=EPERM"), "{text}");
}

fn seccomp_probe_child() {
    let caps = caps::effective(&[], &[]).unwrap_or_default();
    let arch = seccomp::native_arch();
    let profile = seccomp::docker_default(&caps, arch, (6, 1)).unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) affects only this process, which is a throwaway child.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    libcontainer::seccomp::initialize_seccomp(&profile)
        .unwrap_or_else(|e| panic!("load filter: {e}"));
    let clone = |flags: libc::c_long| -> Result<(), i32> {
        // SAFETY: a raw clone without a new stack behaves like fork; the child exits at once.
        let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
        if r == 0 {
            // SAFETY: leave the child without running anything else.
            unsafe { libc::_exit(0) };
        }
        if r < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        let mut status = 0;
        // SAFETY: reap the child we just made.
        unsafe { libc::waitpid(r as i32, &mut status, 0) };
        Ok(())
    };
    let fork = clone(libc::SIGCHLD as libc::c_long);
    let newuser = clone((libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long);
    println!(
        "probe: fork={} newuser={}",
        if fork.is_ok() {
            "ok".to_string()
        } else {
            format!("{fork:?}")
        },
        match newuser {
            Err(libc::EPERM) => "EPERM".to_string(),
            other => format!("{other:?}"),
        }
    );
}
