//! A container flooding the agent's DNS server with names it does not know, while the upstream
//! (a socket of this test on 127.0.0.1 that never answers) is silent: every such query is
//! forwarded with a socket of its own, held until the upstream times out. The server holds at
//! most `MAX_FORWARDS` of them; before, one per query, until it ran out of file descriptors and
//! could forward nothing for anyone.
//!
//! Traffic: from the test's container to its gateway (the DNS server), and from the server to
//! the silent socket on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent::driver::network::dns::server::MAX_FORWARDS;
use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_dns_flood_holds_a_bounded_number_of_upstream_sockets() {
    if !require_root("a_dns_flood_holds_a_bounded_number_of_upstream_sockets") {
        return;
    }
    require_images();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the silent upstream");
    let port = silent.local_addr().expect("address").port();
    let mut d = Daemon::prepare("dnsflood", "");
    let text = std::fs::read_to_string(&d.config).expect("read config");
    let text = text.replacen(
        "[network]\n",
        &format!("[network]\ndns_upstreams = [\"127.0.0.1:{port}\"]\n"),
        1,
    );
    std::fs::write(&d.config, text).expect("write config");
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "flood.yaml",
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: flood\nspec:\n  image: busybox\n  \
         command: [\"/bin/sleep\", \"100000\"]\n  stopGracePeriod: 1s\n",
    );
    d.start();
    d.wait_for("flood running", Duration::from_secs(90), || {
        (d.try_ps_row("flood")?["state"] == "running").then_some(())
    });
    let pid: i32 = d.wait_for("the DNS server", Duration::from_secs(30), || {
        std::fs::read_to_string(d.state.join("dns/server.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    let baseline = open_fds(pid);

    // 800 lookups at once of names nobody has: all forwarded to the silent upstream.
    let done = Arc::new(AtomicBool::new(false));
    let flood = {
        let (state, done) = (d.state.clone(), done.clone());
        std::thread::spawn(move || {
            let o = std::process::Command::new(agent_e2e::agent_bin())
                .arg("exec")
                .arg("--state-dir")
                .arg(&state)
                .args([
                    "flood",
                    "--",
                    "/bin/sh",
                    "-c",
                    "for i in $(seq 800); do nslookup -type=a n$i.flood.invalid >/dev/null 2>&1 & done; wait",
                ])
                .env("RUST_LOG", "off")
                .output();
            done.store(true, Ordering::SeqCst);
            o
        })
    };
    let mut peak = baseline;
    while !done.load(Ordering::SeqCst) {
        peak = peak.max(open_fds(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = flood.join().expect("flood thread").expect("agent exec");
    println!(
        "DNS server fds: {baseline} before, peak {peak} during the flood; exec {:?}",
        out.status
    );
    assert!(
        peak <= baseline + MAX_FORWARDS + 16,
        "the DNS server held {peak} file descriptors ({baseline} before the flood)"
    );
    // It still answers: the container's own name is not forwarded.
    let o = std::process::Command::new(agent_e2e::agent_bin())
        .arg("exec")
        .arg("--state-dir")
        .arg(&d.state)
        .args(["flood", "--", "nslookup", "-type=a", "flood"])
        .env("RUST_LOG", "off")
        .output()
        .expect("agent exec");
    assert!(
        o.status.success(),
        "the server does not answer after the flood: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    drop(silent);
}
