//! End-to-end: `agent logs` for several containers or all at once, each line prefixed with its
//! container's name, as `docker compose logs [-f]` (issue 19 item 9). It took exactly one name.

use std::process::{Command, Output};
use std::time::Duration;

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, container_manifest, require_images, require_root};

fn logs(d: &Daemon, args: &[&str]) -> Output {
    Command::new(agent_e2e::agent_bin())
        .arg("logs")
        .args(args)
        .arg("--state-dir")
        .arg(&d.state)
        .output()
        .unwrap_or_else(|e| panic!("agent logs: {e}"))
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "agent logs failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn logs_of_several_and_all_containers_carry_their_names() {
    if !require_root("logs_of_several_and_all_containers_carry_their_names") {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("logsmany", "");
    d.write("busybox.yaml", BUSYBOX_IMAGE);
    // a and web print one line each 0.3 s apart, alternating; web also to stderr
    d.write(
        "a.yaml",
        &container_manifest("a", "for i in 1 2 3; do echo a$i; sleep 0.3; done", ""),
    );
    d.write(
        "web.yaml",
        &container_manifest(
            "web",
            "sleep 0.15; for i in 1 2 3; do echo web$i; sleep 0.3; done; echo oops >&2",
            "",
        ),
    );
    d.start();
    d.wait_for("both to start", Duration::from_secs(60), || {
        let started = |n: &str| {
            d.try_ps_row(n)
                .is_some_and(|r| r["state"] == "running" || r["state"] == "exited")
        };
        (started("a") && started("web")).then_some(())
    });
    // -f on both while they run: every line of both, prefixed, and it ends when both have
    let follow = Command::new(agent_e2e::agent_bin())
        .args(["logs", "-f", "a", "web", "--state-dir"])
        .arg(&d.state)
        .output();
    let follow = follow.unwrap_or_else(|e| panic!("agent logs -f: {e}"));
    d.wait_for("both to exit", Duration::from_secs(60), || {
        let done = |n: &str| d.try_ps_row(n).is_some_and(|r| r["state"] == "exited");
        (done("a") && done("web")).then_some(())
    });
    let mut followed: Vec<String> = stdout(&follow).lines().map(String::from).collect();
    followed.sort();
    // (lines written before `-f` started come from the past; all six are there either way)
    let want = [
        "a   | a1",
        "a   | a2",
        "a   | a3",
        "web | web1",
        "web | web2",
        "web | web3",
    ];
    assert_eq!(followed, want, "agent logs -f a web");
    assert_eq!(String::from_utf8_lossy(&follow.stderr), "web | oops\n");
    // every container (no names): the past of both, merged by time
    let all = logs(&d, &["--timestamps"]);
    let text = stdout(&all);
    let times: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap_or(""))
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "not merged by time:\n{text}");
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f = l.split(' ').filter(|w| !w.is_empty());
            let name = f.next().unwrap_or("");
            let _bar = f.next();
            let _time = f.next();
            format!("{name} {}", f.next().unwrap_or(""))
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["a a1", "a a2", "a a3", "web web1", "web web2", "web web3"],
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&all.stderr).starts_with("web | 20"),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    // one name: no prefix, as before; --no-log-prefix drops it for several
    assert_eq!(stdout(&logs(&d, &["a"])), "a1\na2\na3\n");
    // (the last line of web is its stderr's)
    let out = logs(&d, &["--no-log-prefix", "--tail", "1", "a", "web"]);
    assert_eq!(stdout(&out), "a3\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    // an unknown name among them is an error naming it
    let out = logs(&d, &["a", "nosuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}
