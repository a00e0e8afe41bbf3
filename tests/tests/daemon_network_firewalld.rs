//! Issue 16 item 1, firewalld: where firewalld runs, the agent puts its bridges into firewalld's
//! `trusted` zone (runtime) and takes them out with the bridge, and puts them back after a
//! firewalld reload; `agent status` then warns of nothing, and a container reaches a service on
//! its gateway, which firewalld's default zone would reject. An agent that cannot reach
//! firewalld names the bridge in `agent status`.
//!
//! The host's firewall is never touched: the test starts its own D-Bus system bus (a private
//! `dbus-daemon` on a socket in a temporary directory, `DBUS_SYSTEM_BUS_ADDRESS` pointing at it)
//! and `firewalld --nofork --nopid` inside a network namespace it creates, so firewalld's rules
//! live in that namespace only; the agent runs in the same namespace (`nsenter --net`), so its
//! bridges are there too. `Drop` stops both and deletes the namespace. Needs the `firewalld` and
//! `dbus` packages (scripts/apt/network.list).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agent_e2e::daemon::{BUSYBOX_IMAGE, Daemon, require_images, require_root};

const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=SOCKET</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#;

/// A private system bus and a firewalld in a network namespace of its own.
struct Firewalld {
    netns: String,
    dir: tempfile::TempDir,
    bus: Option<Child>,
    firewalld: Option<Child>,
}

impl Firewalld {
    fn start() -> Firewalld {
        for program in ["dbus-daemon", "firewalld", "firewall-cmd", "nsenter"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {program}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{program} missing: install the packages of scripts/apt/network.list"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("agent-firewalld-")
            .tempdir()
            .expect("tempdir");
        let netns = format!("agfw{}", std::process::id());
        let mut me = Firewalld {
            netns,
            dir,
            bus: None,
            firewalld: None,
        };
        let ok = Command::new("ip")
            .args(["netns", "add", &me.netns])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {}", me.netns);
        let _ = Command::new("ip")
            .args(["netns", "exec", &me.netns, "ip", "link", "set", "lo", "up"])
            .status();
        let socket = me.socket();
        let config = me.dir.path().join("bus.conf");
        std::fs::write(
            &config,
            BUS_CONFIG.replace("SOCKET", &socket.to_string_lossy()),
        )
        .expect("write bus config");
        me.bus = Some(
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--nopidfile"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dbus-daemon"),
        );
        let log = std::fs::File::create(me.dir.path().join("firewalld.log")).expect("log");
        me.firewalld = Some(
            Command::new("nsenter")
                .arg(format!("--net={}", me.netns_path().display()))
                .args(["firewalld", "--nofork", "--nopid"])
                .env("DBUS_SYSTEM_BUS_ADDRESS", me.address())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log)
                .spawn()
                .expect("spawn firewalld"),
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = me.cmd(&["--state"]);
            if String::from_utf8_lossy(&out.stdout).trim() == "running" {
                return me;
            }
            assert!(
                Instant::now() < deadline,
                "firewalld did not start: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(me.dir.path().join("firewalld.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("bus.sock")
    }

    fn address(&self) -> String {
        format!("unix:path={}", self.socket().display())
    }

    fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// `firewall-cmd ARGS` against this firewalld.
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("firewall-cmd")
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.address())
            .output()
            .expect("firewall-cmd")
    }

    fn trusted(&self) -> Vec<String> {
        let out = self.cmd(&["--zone=trusted", "--list-interfaces"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

impl Drop for Firewalld {
    fn drop(&mut self) {
        for child in [self.firewalld.take(), self.bus.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = nix_kill(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

fn nix_kill(pid: u32, sig: i32) -> i32 {
    // SAFETY: kill(2) on a child this test spawned.
    unsafe { libc::kill(pid as i32, sig) }
}

/// `agent exec web -- timeout 5 wget -q -O - URL`: the body on success.
fn wget_in(d: &Daemon, url: &str) -> Option<String> {
    let out = Command::new(agent_e2e::agent_bin())
        .arg("exec")
        .arg("--state-dir")
        .arg(&d.state)
        .args(["web", "--", "timeout", "5", "wget", "-q", "-O", "-", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bridges_join_firewalld_trusted_zone_and_leave_with_the_bridge() {
    if !require_root("bridges_join_firewalld_trusted_zone_and_leave_with_the_bridge") {
        return;
    }
    require_images();
    let fw = Firewalld::start();
    let mut d = Daemon::prepare("firewalld", "");
    d.wrapper = vec![
        "nsenter".into(),
        format!("--net={}", fw.netns_path().display()),
    ];
    d.env("DBUS_SYSTEM_BUS_ADDRESS", &fw.address());
    d.start();
    d.write("image.yaml", BUSYBOX_IMAGE);
    d.write(
        "web.yaml",
        "apiVersion: agent/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: busybox\n  command: [\"/bin/sleep\", \"100000\"]\n  stopGracePeriod: 1s\n",
    );
    d.wait_for("web running", Duration::from_secs(90), || {
        d.try_ps_row("web")
            .filter(|r| r["state"] == "running")
            .map(drop)
    });
    let bridge = d.bridge.clone();
    d.wait_for(
        "bridge in the trusted zone",
        Duration::from_secs(30),
        || fw.trusted().contains(&bridge).then_some(()),
    );

    // A service on the gateway (in the test's namespace): input from the bridge, which
    // firewalld's default zone (public) rejects unless the bridge is trusted.
    let gateway = {
        let net: Vec<&str> = d
            .subnet
            .split('/')
            .next()
            .unwrap_or("")
            .split('.')
            .collect();
        format!("{}.{}.{}.1", net[0], net[1], net[2])
    };
    let www = fw.dir.path().join("www");
    std::fs::create_dir_all(&www).expect("mkdir www");
    std::fs::write(www.join("index.html"), "gateway\n").expect("write index");
    let mut httpd = Command::new("nsenter")
        .arg(format!("--net={}", fw.netns_path().display()))
        .args(["busybox", "httpd", "-f", "-p"])
        .arg(format!("{gateway}:18080"))
        .arg("-h")
        .arg(&www)
        .spawn()
        .expect("spawn httpd");
    let url = format!("http://{gateway}:18080/");
    let mut body = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while body.is_none() && Instant::now() < deadline {
        body = wget_in(&d, &url);
        if body.is_none() {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // Control: out of the zone, firewalld rejects it (so the check above means something).
    let out = fw.cmd(&["--zone=trusted", &format!("--remove-interface={bridge}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rejected = wget_in(&d, &url);
    let _ = httpd.kill();
    let _ = httpd.wait();
    assert_eq!(
        body.as_deref(),
        Some("gateway\n"),
        "web could not reach its gateway"
    );
    assert_eq!(
        rejected, None,
        "firewalld did not reject an untrusted bridge's input"
    );
    let out = fw.cmd(&["--zone=trusted", &format!("--add-interface={bridge}")]);
    assert!(out.status.success());

    // No firewalld warning while the bridges are in a zone.
    let status = d.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(!text.contains("firewalld runs"), "{text}");

    // A Network's bridge joins with it and leaves with it.
    let (_, extra) =
        agent_e2e::network::TestNet::names(agent::driver::network::FirewallChoice::Auto, true);
    d.extra_bridges.push(extra.bridge.clone());
    d.write(
        "net.yaml",
        &format!(
            "apiVersion: agent/v1\nkind: Network\nmetadata:\n  name: side\nspec:\n  subnet: {}\n  bridge: {}\n",
            extra.subnet, extra.bridge
        ),
    );
    d.wait_for("side bridge trusted", Duration::from_secs(60), || {
        fw.trusted().contains(&extra.bridge).then_some(())
    });
    d.remove("net.yaml");
    d.wait_for("side bridge untrusted", Duration::from_secs(60), || {
        let _ = d.cli(&["apply"]);
        (!fw.trusted().contains(&extra.bridge)).then_some(())
    });
    assert!(fw.trusted().contains(&bridge), "{:?}", fw.trusted());

    // firewalld reloaded (its runtime zone members forgotten): the agent's next rescan
    // (`agent apply`, a resync) puts the bridge back.
    let out = fw.cmd(&["--reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fw.trusted().contains(&bridge));
    d.cli_ok(&["apply"]);
    d.wait_for("bridge trusted again", Duration::from_secs(30), || {
        fw.trusted().contains(&bridge).then_some(())
    });

    // An agent that cannot reach firewalld (no system bus for it) says so in `agent status`,
    // naming the bridge firewalld would drop.
    d.stop();
    d.clear_env();
    let out = fw.cmd(&["--zone=trusted", &format!("--remove-interface={bridge}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.start();
    d.wait_for("status names the bridge", Duration::from_secs(30), || {
        let _ = d.cli(&["apply"]);
        let out = d.cli(&["status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains("firewalld runs") && text.contains(&bridge)).then_some(())
    });
    assert!(!fw.trusted().contains(&bridge));
}
