//! User resolution against the image's `/etc/passwd` and `/etc/group`, as runc's `GetExecUser`
//! does it for Docker: `name`, `uid`, `name:group`, `uid:gid` and mixes.
//!
//! - A name must exist in `/etc/passwd`; a numeric uid need not (it then gets gid 0 and home `/`).
//! - Without a group, the user's primary group from `/etc/passwd` applies and every group in
//!   `/etc/group` that lists the user as a member becomes a supplementary group.
//! - With a group, that group is the only one; a group name must exist in `/etc/group`.
//!
//! Files are read inside the root filesystem with symlinks resolved against the container's root
//! ([`secure_join`]), so that an image cannot point `/etc/passwd` at a host file.
//!
//! Ids above [`MAX_ID`] (2147483647) are refused wherever they come from: the manifest's `user`,
//! the image's `User`, `agent exec -u`, or a passwd or group entry inside the image. As in runc
//! (`user.ErrRange`) and so Docker: `(uid_t)-1` (4294967295) means "leave unchanged" to
//! `setresuid`, so such a user would silently keep running as root.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The largest user or group id accepted (runc's `maxID`, `1 << 31 - 1`).
pub const MAX_ID: u32 = i32::MAX as u32;

/// The rule for ids, for error messages.
pub const ID_RULE: &str = "user and group ids must be 0-2147483647";

/// Checks the numeric parts of a user string (`uid`, `uid:gid`, `name:gid`, ...) against
/// [`MAX_ID`] without the image's files: what `agent validate` and `agent exec -u` can say before
/// anything runs. Names are checked later, when they are resolved.
pub fn check_numeric_ids(user: &str) -> Result<(), String> {
    for (i, part) in user.trim().splitn(2, ':').enumerate() {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            let what = if i == 0 { "uid" } else { "gid" };
            match part.parse::<u64>() {
                Ok(n) if n <= u64::from(MAX_ID) => {}
                _ => return Err(format!("{what} {part} is out of range: {ID_RULE}")),
            }
        }
    }
    Ok(())
}

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd` (`/` when the user has no entry).
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `user` (None or empty: root) with the given file contents. The error says what was
/// not found and where it was looked for.
pub fn resolve_with(user: Option<&str>, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let spec = user.unwrap_or("").trim();
    check_numeric_ids(spec).map_err(|e| format!("user {spec:?}: {e}"))?;
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = parse_passwd(passwd);
    let (uid, mut gid, name, home) = if user_part.is_empty() {
        match users.iter().find(|u| u.uid == 0) {
            Some(u) => (0, u.gid, Some(u.name.clone()), u.home.clone()),
            None => (0, 0, None, "/".to_string()),
        }
    } else if let Ok(n) = user_part.parse::<u32>() {
        match users.iter().find(|u| u.uid == n) {
            Some(u) => (n, u.gid, Some(u.name.clone()), u.home.clone()),
            None => (n, 0, None, "/".to_string()),
        }
    } else {
        match users.iter().find(|u| u.name == user_part) {
            Some(u) => (u.uid, u.gid, Some(u.name.clone()), u.home.clone()),
            None => {
                return Err(format!(
                    "user {user_part:?} is not in the image's /etc/passwd; use a user listed \
                     there or a numeric uid"
                ));
            }
        }
    };
    let groups = parse_group(group);
    let mut additional = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => match groups.iter().find(|e| e.name == g) {
                    Some(e) => e.gid,
                    None => {
                        return Err(format!(
                            "group {g:?} is not in the image's /etc/group; use a group listed \
                             there or a numeric gid"
                        ));
                    }
                },
            };
        }
        Some(_) => return Err(format!("{spec:?}: empty group after ':'")),
        None => {
            if let Some(name) = &name {
                for g in &groups {
                    if g.members.iter().any(|m| m == name)
                        && g.gid != gid
                        && !additional.contains(&g.gid)
                    {
                        additional.push(g.gid);
                    }
                }
            }
        }
    }
    if uid > MAX_ID {
        return Err(format!(
            "user {spec:?} resolves to uid {uid} in the image's /etc/passwd: {ID_RULE}"
        ));
    }
    if let Some(g) = std::iter::once(gid)
        .chain(additional.iter().copied())
        .find(|g| *g > MAX_ID)
    {
        return Err(format!(
            "user {spec:?} resolves to gid {g} in the image's /etc/passwd or /etc/group: {ID_RULE}"
        ));
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

/// Adds `groups` (Docker's `--group-add`: names from the image's `/etc/group`, or gids) to the
/// supplementary groups of `user`, skipping its primary group and repeats.
pub fn add_groups_with(
    user: &mut ResolvedUser,
    groups: &[String],
    group: &str,
) -> Result<(), String> {
    if groups.is_empty() {
        return Ok(());
    }
    let entries = parse_group(group);
    for g in groups {
        let gid = match g.parse::<u64>() {
            Ok(n) if n <= u64::from(MAX_ID) => n as u32,
            Ok(n) => return Err(format!("gid {n} is out of range: {ID_RULE}")),
            Err(_) => match entries.iter().find(|e| e.name == *g) {
                Some(e) if e.gid <= MAX_ID => e.gid,
                Some(e) => {
                    return Err(format!(
                        "group {g:?} has gid {} in the image's /etc/group: {ID_RULE}",
                        e.gid
                    ));
                }
                None => {
                    return Err(format!(
                        "group {g:?} is not in the image's /etc/group; use a group listed there \
                         or a numeric gid"
                    ));
                }
            },
        };
        if gid != user.gid && !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(())
}

/// [`add_groups_with`] with the image's `/etc/group` in `rootfs` (a missing file counts as
/// empty).
pub fn add_groups(rootfs: &Path, user: &mut ResolvedUser, groups: &[String]) -> Result<(), String> {
    if groups.is_empty() {
        return Ok(());
    }
    let path =
        secure_join(rootfs, "/etc/group").map_err(|e| format!("resolving /etc/group: {e}"))?;
    let text = match std::fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    add_groups_with(user, groups, &text)
}

/// Resolves `user` against the files in `rootfs` (missing files count as empty).
pub fn resolve(rootfs: &Path, user: Option<&str>) -> Result<ResolvedUser, String> {
    let read = |p: &str| -> Result<String, String> {
        let path = secure_join(rootfs, p).map_err(|e| format!("resolving {p}: {e}"))?;
        match std::fs::read(&path) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    };
    resolve_with(user, &read("/etc/passwd")?, &read("/etc/group")?)
}

/// Joins `path` onto `root` the way the container will see it: symlinks (absolute or relative)
/// and `..` are resolved inside `root` and never lead out of it. Components that do not exist are
/// taken literally. At most 40 symlinks are followed (ELOOP beyond).
pub fn secure_join(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut current: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate: PathBuf = current.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let candidate = candidate.join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    current.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(s) => pending.push(s.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => current.push(part),
        }
    }
    Ok(current.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}
