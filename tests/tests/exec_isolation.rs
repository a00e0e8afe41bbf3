//! End-to-end: what a default container cannot do to its host (root). Each case ran on the code
//! before its fix and got through (issue 15): ids that mean "unchanged" to setresuid, writable
//! cgroup files, `capAdd: [ALL]` beyond the agent's bounding set, writable submounts under a
//! read-only bind.

use agent::driver::exec::ExecDriver;
use agent_e2e::exec::{Fixture, require_root};

/// The create error of `spec`, panicking when the driver accepts it.
fn create_err(f: &Fixture, spec: &agent::driver::exec::spec::ContainerSpec) -> String {
    match f.driver.create(spec) {
        Ok(()) => panic!("{}: created, want a refusal", spec.name),
        Err(e) => e.to_string(),
    }
}

/// `(uid_t)-1` is "leave unchanged" to setresuid: a user 4294967295 ran as root. Ids above
/// 2147483647 are refused from the manifest's `user` (see tests/bad/65-*), the image's `User`, a
/// passwd entry inside the image, and `agent exec -u`.
#[test]
fn user_ids_above_2147483647_are_refused() {
    if !require_root("user_ids_above_2147483647_are_refused") {
        return;
    }
    let mut f = Fixture::new("bigid");
    let rule = "0-2147483647";

    let mut s = f.spec("spec-user");
    s.user = Some("4294967295".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule) && e.contains("4294967295"), "{e}");
    s.user = Some("0:4294967295".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule), "{e}");

    let mut s = f.spec("image-user");
    if let Some(c) = s.image.as_mut() {
        c.set_user(Some("4294967295".into()));
    }
    let e = create_err(&f, &s);
    assert!(e.contains(rule), "{e}");

    let mut s = f.spec("passwd-user");
    let passwd = s.rootfs.join("etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).unwrap_or_default();
    text.push_str("evil:x:4294967295:0:evil:/:/bin/sh\nevilgrp:x:1000:4294967295::/:/bin/sh\n");
    std::fs::write(&passwd, &text).unwrap_or_else(|e| panic!("{}: {e}", passwd.display()));
    s.user = Some("evil".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule) && e.contains("uid 4294967295"), "{e}");
    s.user = Some("evilgrp".into());
    let e = create_err(&f, &s);
    assert!(e.contains(rule) && e.contains("gid 4294967295"), "{e}");

    // agent exec -u, into a running container whose image has the same passwd entry
    let mut s = f.spec("box");
    let passwd = s.rootfs.join("etc/passwd");
    std::fs::write(&passwd, &text).unwrap_or_else(|e| panic!("{}: {e}", passwd.display()));
    s.command = Some(vec!["sleep".into(), "1000".into()]);
    f.run(&s);
    for user in ["4294967295", "evil", "1000:4294967295", "99999999999"] {
        let out = f.agent(&["exec", "-u", user, "box", "--", "id", "-u"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.stdout.is_empty() && stderr.contains(rule),
            "exec -u {user}: {:?} stdout {:?} stderr {stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // the largest id is still fine
    let out = f.agent(&["exec", "-u", "2147483647", "box", "--", "id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2147483647\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
