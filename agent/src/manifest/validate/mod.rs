//! Checks beyond what the types enforce: each object on its own ([`check_object`], in
//! [`object`]) and all files together ([`check_across`], in [`across`]).
//!
//! Every problem becomes a [`Diagnostic`] at the line and column of the offending value, with
//! its field path, the bad value and what is allowed.
//!
//! Decisions:
//! - Names (metadata.name, and every reference to one) are DNS labels: 1-63 characters of
//!   `a-z0-9-`, not starting or ending with `-`.
//! - A container's `image` without `/`, `:` or `@` is the name of an Image manifest; anything
//!   else is a registry reference (`host[:port]/repo[:tag][@sha256:..]`). The agent never falls
//!   back to Docker Hub for a bare name: an edge device should not pull from the internet by
//!   accident.
//! - Paths on the host (bind sources, image archives) and in the container (targets, tmpfs,
//!   workingDir) must be absolute. Paths in the container must not contain `..` (the exec
//!   driver refuses it; Docker would clean it silently) and a mount target must not be `/`.
//!   No path, command argument, env value or sysctl holds a NUL byte (the kernel cannot take
//!   one); sysctl names are dot-separated words of `A-Za-z0-9_-`.
//! - Control characters ([`control_char`]: NUL, newline, carriage return, escape, the rest of
//!   C0, DEL, C1) are refused where a manifest string reaches a line of text (the plan's
//!   reasons `labels.KEY old -> new`, `env.KEY changed`, mounts, the archive tag; the event
//!   log; the agent's log) and has no use for them: label keys and values (a tab is allowed in
//!   a value), environment variable names (env and secretEnv), every host and container path
//!   (binds, tmpfs, workingDir, devices, archives, secret files and targets, envFiles) and an
//!   archive's `tag` (also at most 384 characters). Env values, command, entrypoint and
//!   healthcheck arguments and sysctl values keep newlines, as Docker does: they reach the
//!   process or the kernel as they are (`execve` takes any byte but NUL; the exec driver passes
//!   them in `config.json` and as one argument of `agent exec`), a shell script in `sh -c`
//!   needs them, and the plan never shows an env value; only NUL is refused there.
//! - A command, entrypoint or healthcheck argument, or an env `KEY=VALUE`, is at most 131071
//!   bytes ([`object::MAX_ARG_STRLEN`] with its NUL: the kernel's limit on one `execve` string
//!   on 4 KiB pages; larger pages allow more, but such a value belongs in a file anyway). Above
//!   it the container could never start, and the agent found out only at create, after the
//!   container it replaced had stopped.
//! - Network modes other than `bridge` refuse the options they make meaningless (ports, links,
//!   networks; and for `container:NAME` also hostname, dns, dnsSearch, extraHosts), as Docker does.
//! - Two published ports conflict when protocol and some host port are the same and the host
//!   addresses overlap (a missing or unspecified address overlaps every address of its family).
//! - A cycle through links, volumesFrom, `container:` network modes and dependsOn cannot be
//!   started in any order and is refused, printing the cycle.
//! - dependsOn ([`depends`]): a name no manifest declares is refused unless `required: false`;
//!   `condition: healthy` needs a dependency with a health check (Compose refuses it too); a
//!   name listed twice is refused.

pub mod across;
pub mod depends;
pub mod object;
pub mod warn;

use super::Diagnostic;
use super::load::Object;
use super::node::Step;

pub use across::check_across;
pub use object::check_object;

/// Whether `name` is a DNS label: 1-63 characters of `a-z`, `0-9`, `-`, starting and ending with
/// a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The first control character of `s` (C0 such as NUL, newline, carriage return and escape;
/// DEL; C1), if any. Such a character truncates a C string (NUL), forges a line of the plan, the
/// event log or the agent's log (newline, carriage return), or drives the terminal that shows
/// them (escape).
pub fn control_char(s: &str) -> Option<char> {
    s.chars().find(|ch| ch.is_control())
}

/// A control character as a message names it: `a NUL byte`, `a newline`, `U+001B`.
pub fn char_name(ch: char) -> String {
    match ch {
        '\0' => "a NUL byte".into(),
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        _ => format!("the control character U+{:04X}", ch as u32),
    }
}

/// The rule for names, for error messages.
pub const NAME_RULE: &str = "a name is a DNS label: 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit";

/// `spec.ports[1]` from steps (a key with control characters is shown quoted, escaped).
pub fn field_path(path: &[Step<'_>]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                if k.chars().any(char::is_control) {
                    // Quoted and escaped: a key with a newline must not forge a second line.
                    s.push_str(&format!("{k:?}"));
                } else {
                    s.push_str(k);
                }
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A diagnostic about the value at `path` of `obj`.
pub(crate) fn diag(obj: &Object, path: &[Step<'_>], message: String) -> Diagnostic {
    let (line, column, depth) = obj.locate_depth(path);
    // Name the field as written: a path into a short form stops at the short form's value, and
    // a field left out (a default) is named in full.
    let shown = if depth == 0 {
        path
    } else {
        &path[..depth.max(path.len().min(2))]
    };
    Diagnostic {
        file: obj.source.file.clone(),
        line,
        column,
        field: field_path(shown),
        message,
        related: None,
    }
}

#[cfg(test)]
mod tests;
