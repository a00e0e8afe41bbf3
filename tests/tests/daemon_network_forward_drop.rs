//! Issue 16.1 through the running daemon (root): on a host with Docker's firewall settings
//! (`bridge-nf-call-iptables=1`, iptables' `FORWARD` policy `DROP`), a container reaches another
//! over its link, the agent's accept rules are in iptables, tagged with its instance, and the
//! agent warns of nothing; a cleanup of the stopped agent's leftovers removes them.
//!
//! The host-wide settings are on only for the checks (after both containers run) and restored
//! right after, and in `Drop`. Traffic goes only between the test's own containers.

use std::process::Command;
use std::time::Duration;

use agent::driver::network::firewall::host;
use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};
use agent_e2e::network::{DockerLikeHost, br_netfilter};

const SRV: &str = "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: srv\nspec:\n  image: busybox\n  entrypoint: [\"/bin/sh\", \"-c\"]\n  command: [\"mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n  restart: always\n  stopGracePeriod: 1s\n";

const CLI: &str = "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: cli\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  links: [{container: srv, alias: db}]\n  restart: always\n  stopGracePeriod: 1s\n";

/// `agent exec cli -- timeout 3 wget -q -O - http://db:8080/`: the body on success.
fn fetch(d: &Daemon) -> Option<String> {
    let out = Command::new(agent_e2e::agent_bin())
        .arg("exec")
        .arg("--state-dir")
        .arg(&d.state)
        .args(["cli", "--", "timeout", "3", "wget", "-q", "-O", "-"])
        .arg("http://db:8080/")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn running(d: &Daemon, name: &str) -> Option<()> {
    d.try_ps_row(name)
        .filter(|r| r["state"] == "running")
        .map(drop)
}

#[test]
fn linked_containers_talk_under_docker_forward_drop() {
    if !require_root("linked_containers_talk_under_docker_forward_drop") || !br_netfilter() {
        return;
    }
    require_images();
    let mut d = Daemon::prepare("fwdrop", "");
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write("srv.yaml", SRV);
    d.write("cli.yaml", CLI);
    d.wait_for("srv and cli running", Duration::from_secs(90), || {
        running(&d, "srv")?;
        running(&d, "cli")
    });
    d.wait_for("cli reaches db", Duration::from_secs(20), || fetch(&d));

    let mut docker = DockerLikeHost::set();
    let body = fetch(&d);
    docker.restore();
    assert_eq!(
        body.as_deref(),
        Some("hello\n"),
        "a link between two containers is dropped under iptables FORWARD policy DROP"
    );

    let instance = d.net.instance.clone();
    let accepts = host::list_accepts(&instance);
    assert!(
        accepts.contains(&format!("-i {}", d.bridge))
            && accepts.contains(&format!("-o {}", d.bridge)),
        "accept rules for {}:\n{accepts}",
        d.bridge
    );
    // The agent's log warns of nothing: the accepts are in place.
    assert!(
        !d.log_text()
            .contains("traffic of containers would be dropped"),
        "{}",
        d.log_tail()
    );
    // Leftovers of a stopped agent are found by their tag (what start-up cleanup does).
    d.stop();
    d.cleanup_network();
    assert_eq!(host::list_accepts(&instance), "", "accept rules left");
}
