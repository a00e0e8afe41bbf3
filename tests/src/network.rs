//! Helpers for the network driver's end-to-end tests: a per-test network fixture with unique
//! names (bridge, subnet, firewall table/chains, veth prefix, namespaces, state directory) that
//! removes everything in `Drop`, "containers" that are busybox processes inside the driver's
//! namespaces, and host-side clients. All traffic goes to 127.0.0.0/8 or to addresses of the
//! namespaces the test created.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::driver::network::{
    AttachRequest, Attachment, DriverOptions, FileStore, FirewallChoice, FirewallDriver, IpamStore,
    NetworkConfig, NetworkDriver, NetworkMode, PortMapping, Protocol,
};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Whether we run as root and the firewall tool exists; prints why a test is skipped otherwise.
pub fn can_run(test: &str, fw: FirewallChoice) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("{test}: skipped: needs root (bridges, namespaces, firewall)");
        return false;
    }
    let tool = match fw {
        FirewallChoice::Iptables => "iptables",
        _ => "nft",
    };
    if Command::new(tool).arg("--version").output().is_err() {
        eprintln!("{test}: skipped: {tool} is not installed (scripts/apt/network.list)");
        return false;
    }
    true
}

fn base36(mut n: u32, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    for _ in 0..width {
        s.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// 10.x.y.0/24 subnets routed on this host right now.
fn routed_subnets() -> HashSet<(u8, u8)> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|d| d.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|ip| ip.octets()[0] == 10)
        .map(|ip| (ip.octets()[1], ip.octets()[2]))
        .collect()
}

/// One test's private network setup.
pub struct TestNet {
    pub driver: NetworkDriver,
    pub store: Arc<FileStore>,
    pub net: NetworkConfig,
    pub opts: DriverOptions,
    pub state: tempfile::TempDir,
    extra: Vec<NetworkConfig>,
    procs: Vec<Child>,
    stops: Vec<Arc<AtomicBool>>,
}

impl TestNet {
    /// A fresh network with its own names; `icc` as given.
    pub fn new(fw: FirewallChoice, icc: bool) -> TestNet {
        let state = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let (opts, net) = Self::names(fw, icc);
        Self::with(state, opts, net)
    }

    /// Unique options and network for this process and test.
    pub fn names(fw: FirewallChoice, icc: bool) -> (DriverOptions, NetworkConfig) {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst) as u32;
        let tag = format!("{}{}", base36(pid % 36u32.pow(4), 4), base36(n % 36, 1));
        let opts = DriverOptions {
            instance: format!("at{pid}_{n}"),
            veth_prefix: format!("{tag}v"),
            netns_dir: PathBuf::from("/run/netns"),
            firewall: fw,
            random_ports: (42000, 42999),
        };
        // 10.(214..=253).y.0/24, from the pid and the test number, skipping routed ones.
        let used = routed_subnets();
        let mut k = pid.wrapping_mul(7).wrapping_add(n * 131);
        let (a, b) = loop {
            let a = 214 + (k / 256 % 40) as u8;
            let b = (k % 256) as u8;
            if !used.contains(&(a, b)) {
                break (a, b);
            }
            k = k.wrapping_add(1);
        };
        let net = NetworkConfig {
            name: "testnet".into(),
            bridge: format!("{tag}br"),
            subnet: format!("10.{a}.{b}.0/24")
                .parse()
                .unwrap_or_else(|e| panic!("subnet: {e}")),
            gateway: None,
            mtu: 1500,
            icc,
            dns: true,
        };
        (opts, net)
    }

    /// A driver over `state/net.json` with the given names; sets up the network.
    pub fn with(state: tempfile::TempDir, opts: DriverOptions, net: NetworkConfig) -> TestNet {
        let store = Arc::new(
            FileStore::open(state.path().join("net.json"))
                .unwrap_or_else(|e| panic!("open store: {e}")),
        );
        let driver = NetworkDriver::new(opts.clone(), store.clone())
            .unwrap_or_else(|e| panic!("driver: {e}"));
        driver
            .ensure_network(&net)
            .unwrap_or_else(|e| panic!("ensure network: {e}"));
        TestNet {
            driver,
            store,
            net,
            opts,
            state,
            extra: Vec::new(),
            procs: Vec::new(),
            stops: Vec::new(),
        }
    }

    /// Sets up one more network (own bridge and subnet, name `name`), removed in `Drop`.
    pub fn add_network(&mut self, name: &str, icc: bool) -> NetworkConfig {
        let (_, mut net) = Self::names(self.opts.firewall, icc);
        net.name = name.to_string();
        self.driver
            .ensure_network(&net)
            .unwrap_or_else(|e| panic!("ensure network {name}: {e}"));
        self.extra.push(net.clone());
        net
    }

    /// A bridge-mode request on this test's network.
    pub fn req(&self, id: &str, ports: Vec<PortMapping>) -> AttachRequest {
        AttachRequest {
            container_id: id.to_string(),
            name: id.to_string(),
            mode: NetworkMode::Bridge(vec![self.net.name.clone()]),
            ports,
            links: Vec::new(),
            aliases: Default::default(),
        }
    }

    /// Attaches or panics.
    pub fn attach(&self, req: &AttachRequest) -> Attachment {
        self.driver
            .attach(req)
            .unwrap_or_else(|e| panic!("attach {}: {e}", req.name))
    }

    /// Starts `busybox <args>` inside the attachment's namespace (and, if given, with `hosts`
    /// as its /etc/hosts); killed when the fixture drops.
    pub fn spawn(&mut self, att: &Attachment, args: &[&str]) -> &mut Child {
        let child = in_container(att, None, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        self.procs.push(child);
        let last = self.procs.len() - 1;
        &mut self.procs[last]
    }

    /// Serves `body` over HTTP on `port` inside the container (busybox httpd).
    pub fn http_server(&mut self, att: &Attachment, port: u16, body: &str) {
        let dir = self
            .state
            .path()
            .join(format!("www-{}-{port}", att.container_id));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("www dir: {e}"));
        std::fs::write(dir.join("index.html"), body).unwrap_or_else(|e| panic!("index: {e}"));
        let p = port.to_string();
        let d = dir.display().to_string();
        self.spawn(att, &["httpd", "-f", "-p", &p, "-h", &d]);
        // Wait until it listens.
        let path = att.netns.clone().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let out = Command::new("nsenter")
                .arg(format!("--net={}", path.display()))
                .args(["busybox", "netstat", "-ltn"])
                .output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(":{port} ")))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("httpd on port {port} in {} did not start", att.container_id);
    }

    /// Runs a UDP echo server on `port` inside the container's namespace (a thread that entered
    /// it); stops when the fixture drops.
    pub fn udp_echo(&mut self, att: &Attachment, port: u16) {
        let stop = Arc::new(AtomicBool::new(false));
        self.stops.push(stop.clone());
        let ns = att.netns.clone().unwrap_or_default();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).unwrap_or_else(|e| panic!("open netns: {e}"));
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns: {e}"));
            let sock = UdpSocket::bind(("0.0.0.0", port)).unwrap_or_else(|e| panic!("bind: {e}"));
            let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = tx.send(());
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let mut reply = b"echo:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("udp echo did not start: {e}"));
    }

    /// Host veths with this test's prefix.
    pub fn host_veths(&self) -> Vec<String> {
        links_with_prefix(&self.opts.veth_prefix)
    }

    /// Namespaces of this test's instance.
    pub fn netns_files(&self) -> Vec<String> {
        netns_of_instance(&self.opts)
    }

    /// This instance's firewall rules as listed by the backend.
    pub fn firewall_listing(&self) -> String {
        self.driver
            .firewall()
            .list()
            .unwrap_or_else(|e| panic!("list firewall: {e}"))
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for s in &self.stops {
            s.store(true, Ordering::SeqCst);
        }
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
        if let Ok(ids) = self.driver.recorded_ids() {
            for id in ids {
                let _ = self.driver.release(&id);
            }
        }
        let _ = self.driver.remove_network(&self.net.name);
        for n in &self.extra {
            let _ = self.driver.remove_network(&n.name);
        }
        let _ = self.driver.firewall().remove_all();
        for b in std::iter::once(&self.net).chain(&self.extra) {
            let _ = Command::new("ip")
                .args(["link", "del", &b.bridge])
                .stderr(Stdio::null())
                .status();
        }
        for v in self.host_veths() {
            let _ = Command::new("ip").args(["link", "del", &v]).status();
        }
        for n in self.netns_files() {
            let _ = Command::new("ip").args(["netns", "del", &n]).status();
        }
        let hosts_prefix = format!("agent-nettest-hosts-{}-", self.opts.instance);
        if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&hosts_prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The network namespaces (in `netns_dir`) of the driver instance `opts.instance`, sorted.
pub fn netns_of_instance(opts: &DriverOptions) -> Vec<String> {
    let prefix = format!("{}-", opts.instance);
    let mut v: Vec<String> = std::fs::read_dir(&opts.netns_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Names of links starting with `prefix`.
pub fn links_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// A command running `busybox <args>` inside the attachment's namespace, with the attachment's
/// hosts file (or `hosts`) bind-mounted on /etc/hosts in a private mount namespace.
pub fn in_container(att: &Attachment, hosts: Option<&Path>, args: &[&str]) -> Command {
    let hosts_file = match hosts {
        Some(h) => h.to_path_buf(),
        None => {
            // Named after the namespace, which is unique per test instance.
            let ns = att.netns.as_ref().and_then(|p| p.file_name()).map_or_else(
                || format!("{}-host", att.container_id),
                |n| n.to_string_lossy().into_owned(),
            );
            let p = std::env::temp_dir().join(format!("agent-nettest-hosts-{ns}"));
            std::fs::write(&p, &att.hosts).unwrap_or_else(|e| panic!("hosts: {e}"));
            p
        }
    };
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("n=\"$1\"; shift; mount --bind \"$0\" /etc/hosts && exec nsenter --net=\"$n\" busybox \"$@\"")
        .arg(&hosts_file)
        .arg(
            att.netns
                .clone()
                .unwrap_or_else(|| PathBuf::from("/proc/1/ns/net")),
        )
        .args(args);
    for (k, v) in &att.env {
        c.env(k, v);
    }
    c
}

/// Runs `busybox <args>` in the container and waits (at most `secs` seconds plus slack).
pub fn run_in(att: &Attachment, args: &[&str]) -> Output {
    in_container(att, None, args)
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"))
}

/// `wget -q -O - URL` inside the container, killed after 3 seconds: Some(body) on success.
/// (Busybox 1.35's own `wget -T` crashes when the connection fails, hence `timeout`.)
pub fn wget_in(att: &Attachment, url: &str) -> Option<String> {
    let out = run_in(
        att,
        &["timeout", "3", "busybox", "wget", "-q", "-O", "-", url],
    );
    if !out.status.success() {
        eprintln!(
            "wget {url} in {}: {}",
            att.container_id,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// HTTP GET from the host (only to 127.0.0.0/8 or the test's own addresses); the body.
pub fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp
        .split_once("\r\n\r\n")
        .map_or(resp.clone(), |(_, b)| b.to_string()))
}

/// Sends one UDP datagram from the host and returns the reply.
pub fn udp_roundtrip(addr: SocketAddr, msg: &str) -> std::io::Result<String> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 1500];
    for _ in 0..6 {
        s.send_to(msg.as_bytes(), addr)?;
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// A port mapping.
pub fn port(host_ip: Option<Ipv4Addr>, host: u16, container: u16, proto: Protocol) -> PortMapping {
    PortMapping {
        host_ip,
        host_port: host,
        container_port: container,
        protocol: proto,
    }
}

/// Every recorded address, port and attachment in the fixture's store.
pub fn store_counts(store: &dyn IpamStore) -> (usize, usize, usize) {
    (
        store.ips().map(|v| v.len()).unwrap_or(usize::MAX),
        store.host_ports().map(|v| v.len()).unwrap_or(usize::MAX),
        store.attachments().map(|v| v.len()).unwrap_or(usize::MAX),
    )
}

/// br_netfilter's switch for IPv4.
pub const NF_CALL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Docker's firewall settings on this host (br_netfilter's `bridge-nf-call-iptables=1`,
/// iptables' `FORWARD` policy `DROP`) for as long as it lives; the old values back in
/// `restore` and in `Drop`. Host-wide: set it after all set-up and restore it right after the
/// checks, other tests run on this host at the same time.
pub struct DockerLikeHost {
    old_policy: Option<String>,
    old_nf_call: Option<String>,
    /// Held while set: two tests of one binary that overlapped would save each other's values
    /// and leave the host with `FORWARD DROP` (the second restores what the first set).
    _serial: std::sync::MutexGuard<'static, ()>,
}

static DOCKER_LIKE: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl DockerLikeHost {
    pub fn forward_policy() -> String {
        let out = Command::new("iptables")
            .args(["-w", "-S", "FORWARD"])
            .output()
            .unwrap_or_else(|e| panic!("iptables -S FORWARD: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("-P FORWARD "))
            .unwrap_or("ACCEPT")
            .trim()
            .to_string()
    }

    pub fn set() -> DockerLikeHost {
        let mut h = DockerLikeHost {
            old_policy: None,
            old_nf_call: None,
            _serial: DOCKER_LIKE.lock().unwrap_or_else(|p| p.into_inner()),
        };
        h.old_nf_call = Some(
            std::fs::read_to_string(NF_CALL)
                .unwrap_or_else(|e| panic!("{NF_CALL}: {e}"))
                .trim()
                .to_string(),
        );
        std::fs::write(NF_CALL, "1").unwrap_or_else(|e| panic!("{NF_CALL}: {e}"));
        h.old_policy = Some(Self::forward_policy());
        let ok = Command::new("iptables")
            .args(["-w", "-P", "FORWARD", "DROP"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "iptables -P FORWARD DROP failed");
        h
    }

    pub fn restore(&mut self) {
        if let Some(p) = self.old_policy.take() {
            let _ = Command::new("iptables")
                .args(["-w", "-P", "FORWARD", &p])
                .status();
        }
        if let Some(v) = self.old_nf_call.take() {
            let _ = std::fs::write(NF_CALL, v);
        }
    }
}

impl Drop for DockerLikeHost {
    fn drop(&mut self) {
        self.restore();
    }
}

/// br_netfilter loaded (modprobe when there is one); false with a reason when impossible.
pub fn br_netfilter() -> bool {
    if !Path::new(NF_CALL).exists() {
        let _ = Command::new("modprobe").arg("br_netfilter").status();
    }
    if !Path::new(NF_CALL).exists() {
        eprintln!("skipped: the br_netfilter module is not available");
        return false;
    }
    true
}
