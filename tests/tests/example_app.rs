//! The realistic example app of examples/app (issue 16, "Done when"), end to end on a host with
//! Docker's firewall settings (`bridge-nf-call-iptables=1`, iptables' FORWARD policy DROP): an
//! image built from Debian packages by scripts/build-app-image.sh (a root filesystem tarball
//! with device nodes, as mmdebstrap writes it), a Redis database with a named volume and a
//! health check on network `back`, a Flask app on `front` and `back`, an nginx proxy on `front`
//! publishing a port on 127.0.0.1. The test brings it up, checks proxy -> app -> db across the
//! two networks and the health of db and app, updates the app (an env edit recreates it) and the
//! database (its data survives in the volume), and tears everything down.
//!
//! The manifests are the repository's own, with bridges, subnets and the port rewritten to this
//! fixture's. The Docker-like host settings are on from before the first container starts until
//! the checks are done, and restored in `Drop`. Traffic goes to 127.0.0.1 and between the test's
//! own containers only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use agent_e2e::daemon::{Daemon, require_root};
use agent_e2e::graph::free_port;
use agent_e2e::network::{DockerLikeHost, TestNet, br_netfilter};

const IMAGE: &str = "/var/lib/agent-test-images/debian-app.tar.zst";

/// `GET /` on 127.0.0.1:`port`: the body of a 200 answer.
fn http_get(port: u16) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(8))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

/// "hits N (version V)" -> (N, V).
fn hits(body: &str) -> Option<(u64, String)> {
    let rest = body.trim().strip_prefix("hits ")?;
    let (n, v) = rest.split_once(" (version ")?;
    Some((n.parse().ok()?, v.strip_suffix(')')?.to_string()))
}

/// The third octets' prefix ("10.x.y") of a fresh test subnet.
fn prefix(d: &Daemon) -> String {
    let (_, n) = TestNet::names(d.net.firewall, true);
    n.subnet
        .network()
        .to_string()
        .trim_end_matches(".0")
        .to_string()
}

#[test]
fn debian_app_comes_up_across_two_networks_updates_and_tears_down_under_docker_forward_drop() {
    let name =
        "debian_app_comes_up_across_two_networks_updates_and_tears_down_under_docker_forward_drop";
    if !require_root(name) || !br_netfilter() {
        return;
    }
    assert!(
        std::path::Path::new(IMAGE).exists(),
        "{IMAGE} missing: run scripts/build-app-image.sh (scripts/setup.sh does)"
    );
    let port = free_port();
    let mut d = Daemon::prepare("app", "");
    let (front, back) = (prefix(&d), prefix(&d));
    let (bf, bb) = (format!("{}f", d.bridge), format!("{}b", d.bridge));
    d.extra_bridges.extend([bf.clone(), bb.clone()]);
    let rewrite = |text: &str| {
        text.replace("10.214.8.", &format!("{front}."))
            .replace("10.214.9.", &format!("{back}."))
            .replace("agent-front", &bf)
            .replace("agent-back", &bb)
            .replace("127.0.0.1:18081:", &format!("127.0.0.1:{port}:"))
    };
    let examples = agent_e2e::workspace_root().join("examples/app");
    let read = |f: &str| rewrite(&std::fs::read_to_string(examples.join(f)).expect("example"));

    let mut docker = DockerLikeHost::set();
    d.start();
    for f in [
        "image.yaml",
        "networks.yaml",
        "db.yaml",
        "app.yaml",
        "proxy.yaml",
    ] {
        d.write(f, &read(f));
    }
    // proxy (front) -> app (front, back) -> db (back): a count from Redis through nginx.
    let first = d.wait_for("the proxy answers", Duration::from_secs(180), || {
        hits(&http_get(port)?)
    });
    assert_eq!(first.1, "1", "{first:?}");
    d.wait_for("db and app healthy", Duration::from_secs(60), || {
        (d.try_ps_row("db")?["health"] == "healthy" && d.try_ps_row("app")?["health"] == "healthy")
            .then_some(())
    });
    // The image's device nodes were skipped, not refused: the runtime's /dev is there.
    let out = Command::new(agent_e2e::agent_bin())
        .args(["exec", "--state-dir"])
        .arg(&d.state)
        .args([
            "app",
            "--",
            "python3",
            "-c",
            "open('/dev/null','w').write('x')",
        ])
        .output()
        .expect("agent exec");
    assert!(out.status.success(), "{out:?}");

    // Update the app: a new version, recreated; the count lives on in the database.
    d.write(
        "app.yaml",
        &read("app.yaml").replace("APP_VERSION: \"1\"", "APP_VERSION: \"2\""),
    );
    let second = d.wait_for(
        "version 2 behind the proxy",
        Duration::from_secs(90),
        || hits(&http_get(port)?).filter(|(_, v)| v == "2"),
    );
    assert!(second.0 > first.0, "count lost: {first:?} then {second:?}");

    // Update the database: an env edit recreates it; its data survives in the volume app-data.
    d.write(
        "db.yaml",
        &read("db.yaml").replace(
            "  networks: [back]",
            "  env: {NOTE: \"2\"}\n  networks: [back]",
        ),
    );
    d.wait_for("db recreated", Duration::from_secs(90), || {
        (!d.events_of("db", "container.recreate").is_empty()).then_some(())
    });
    let third = d.wait_for("count after db recreate", Duration::from_secs(90), || {
        hits(&http_get(port)?)
    });
    assert!(
        third.0 > second.0,
        "count lost in the db recreate: {second:?} then {third:?}"
    );
    docker.restore();

    // Tear-down: every container and both networks go; the volume (reclaim retain) stays.
    d.remove_all_and_wait(Duration::from_secs(90));
    d.wait_for("bridges removed", Duration::from_secs(30), || {
        let _ = d.cli(&["apply"]);
        let gone = |b: &str| {
            !Command::new("ip")
                .args(["link", "show", b])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        (gone(&bf) && gone(&bb)).then_some(())
    });
}
