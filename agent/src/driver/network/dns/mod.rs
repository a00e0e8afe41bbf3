//! Service names on the agent's networks: a small DNS server process that lives apart from the
//! agent, and the records file the agent keeps for it.
//!
//! Shape (as Podman's netavark and aardvark-dns): the network driver writes every network's
//! names into one file, `<dir>/records.json` (atomically: temporary file, fsync, rename), after
//! each change of the attachment records, and starts `agent dns-server --dir <dir>` when it does
//! not run yet, or sends it `SIGHUP` to reload. The server is its own session (`setsid`), so
//! killing or restarting the agent leaves it answering; the agent finds it again through
//! `<dir>/server.pid`, which the server writes itself once it has installed its signal handlers
//! (so a `SIGHUP` can never kill a server that is still starting), and adopts it rather than
//! start a second one. When no container is left on a network with names, the agent stops it
//! (`SIGTERM`); `agent system reset` does too.
//!
//! The server binds UDP and TCP port 53 on each network's gateway address, in the host's network
//! namespace; containers on those networks get `nameserver <gateway>` in their resolv.conf. What
//! it answers is in [`answer`]; names it does not know go to the upstream servers: those of
//! `[network] dns_upstreams` in the agent's config, else the host's `/etc/resolv.conf` (read at
//! every reload; loopback servers such as systemd-resolved's 127.0.0.53 work, since the server
//! lives in the host's namespace).
//!
//! The records file has a version; a server reading a version it does not know keeps its last
//! records and logs why.

pub mod answer;
pub mod server;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Error;
use super::config::NetworkConfig;
use super::types::AttachmentRecord;

/// The records file's format version.
pub const RECORDS_VERSION: u32 = 1;
/// The records file inside the DNS directory.
pub const RECORDS_FILE: &str = "records.json";
/// The server's pid file inside the DNS directory.
pub const PID_FILE: &str = "server.pid";
/// The server's log (its stderr) inside the DNS directory.
pub const LOG_FILE: &str = "server.log";
/// The subcommand of the agent binary that runs the server.
pub const SUBCOMMAND: &str = "dns-server";

/// Where the DNS server keeps its files and where it forwards names it does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    /// The directory of the records file, pid file and log (`<state_dir>/dns`).
    pub dir: PathBuf,
    /// Upstream servers; empty means the host's `/etc/resolv.conf`.
    pub upstreams: Vec<SocketAddr>,
    /// The agent binary (run as `<exe> dns-server --dir <dir>`).
    pub exe: PathBuf,
}

/// One address and its names on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsHost {
    pub ip: Ipv4Addr,
    /// The container's name first, then its aliases on this network.
    pub names: Vec<String>,
}

/// The names of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsNetwork {
    pub name: String,
    /// The bridge's address: where the server listens for this network.
    pub gateway: Ipv4Addr,
    pub hosts: Vec<DnsHost>,
}

/// The records file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Records {
    pub version: u32,
    /// Upstream servers; empty: the host's resolv.conf.
    #[serde(default)]
    pub upstreams: Vec<SocketAddr>,
    pub networks: Vec<DnsNetwork>,
}

/// The records the attachment records explain: per network with names on (`dns`), every
/// complete attachment's address with its name and its aliases on that network.
pub fn render(
    networks: &[NetworkConfig],
    attachments: &[AttachmentRecord],
    upstreams: &[SocketAddr],
) -> Records {
    let mut out = Records {
        version: RECORDS_VERSION,
        upstreams: upstreams.to_vec(),
        networks: Vec::new(),
    };
    let mut nets: Vec<&NetworkConfig> = networks.iter().filter(|n| n.dns).collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    for n in nets {
        let mut hosts: Vec<DnsHost> = attachments
            .iter()
            .filter(|r| r.complete)
            .flat_map(|r| {
                r.endpoints
                    .iter()
                    .filter(|e| e.network == n.name)
                    .map(move |e| {
                        let mut names = vec![r.name.clone()];
                        for a in r.aliases.get(&n.name).into_iter().flatten() {
                            if !names.contains(a) {
                                names.push(a.clone());
                            }
                        }
                        DnsHost { ip: e.ip, names }
                    })
            })
            .collect();
        hosts.sort_by_key(|h| h.ip);
        out.networks.push(DnsNetwork {
            name: n.name.clone(),
            gateway: n.gateway(),
            hosts,
        });
    }
    out
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::Dns {
        op,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes `records` into `dir` atomically (temporary file, fsync, rename, fsync of the dir).
pub fn write_records(dir: &Path, records: &Records) -> Result<(), Error> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join(RECORDS_FILE);
    let tmp = dir.join(format!(".{RECORDS_FILE}.tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(records).map_err(|e| Error::Dns {
        op: "encode",
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads the records file (`None` when there is none).
pub fn read_records(dir: &Path) -> Result<Option<Records>, Error> {
    let path = dir.join(RECORDS_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let r: Records = serde_json::from_slice(&text).map_err(|e| Error::Dns {
        op: "parse",
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if r.version != RECORDS_VERSION {
        return Err(Error::Dns {
            op: "parse",
            path,
            reason: format!(
                "format version {} is not the supported {RECORDS_VERSION} (written by another \
                 version of the agent)",
                r.version
            ),
        });
    }
    Ok(Some(r))
}

/// The pid of the server of `dir`, if one runs: the pid file names a live process whose
/// command line is `... dns-server --dir <dir>`.
pub fn server_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
    let dir = dir.as_os_str().as_encoded_bytes();
    let ours = args.iter().any(|a| *a == SUBCOMMAND.as_bytes())
        && args.windows(2).any(|w| w[0] == b"--dir" && w[1] == dir);
    // A zombie (exited, not yet reaped) has an empty command line, so it is not ours either.
    ours.then_some(pid)
}

/// Makes the server of `opts` serve `records`: writes them, then reloads the running server or
/// starts one; with no container left on any network (no name to answer), stops the server,
/// as Podman stops aardvark-dns with the last container.
pub fn sync(opts: &DnsOptions, records: &Records) -> Result<(), Error> {
    if records.networks.iter().all(|n| n.hosts.is_empty()) {
        write_records(&opts.dir, records)?;
        return stop(&opts.dir);
    }
    write_records(&opts.dir, records)?;
    if let Some(pid) = server_pid(&opts.dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        );
        return Ok(());
    }
    start(opts)
}

/// Starts the server (detached: own session, stdin null, output to its log) and waits until it
/// has written its pid file.
fn start(opts: &DnsOptions) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    let log_path = opts.dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("open", &log_path))?;
    let err = log.try_clone().map_err(io("open", &log_path))?;
    let _ = std::fs::remove_file(opts.dir.join(PID_FILE));
    let mut cmd = std::process::Command::new(&opts.exe);
    cmd.arg(SUBCOMMAND)
        .arg("--dir")
        .arg(&opts.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .env("RUST_LOG", "info");
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io("start the DNS server", &opts.exe))?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if server_pid(&opts.dir) == Some(pid) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Dns {
                op: "start the DNS server",
                path: log_path,
                reason: format!("it exited ({status}); see its log"),
            });
        }
        if Instant::now() > deadline {
            return Err(Error::Dns {
                op: "start the DNS server",
                path: log_path,
                reason: "it did not write its pid file within 5 s; see its log".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reap it when it exits while this process lives (after an agent restart, init does).
    std::thread::Builder::new()
        .name("dns-server-reaper".into())
        .spawn(move || {
            let _ = child.wait();
        })
        .map_err(io("start the DNS server", &opts.exe))?;
    tracing::info!(pid, dir = %opts.dir.display(), "DNS server started");
    Ok(())
}

/// Stops the server of `dir` if one runs (SIGTERM, then SIGKILL after 2 s), and removes its pid
/// file. Nothing running is success.
pub fn stop(dir: &Path) -> Result<(), Error> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Some(pid) = server_pid(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while server_pid(dir) == Some(pid) {
            if Instant::now() > deadline {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!(pid, dir = %dir.display(), "DNS server stopped");
    }
    match std::fs::remove_file(dir.join(PID_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", dir)(e)),
        _ => Ok(()),
    }
}

/// The resolv.conf of a container whose name server is the DNS server on `gateway`: that one
/// name server, then the host's `search` and `options` lines (as Docker keeps them), or
/// `search` from `dns_search` when the manifest sets it.
pub fn resolv_conf(gateway: Ipv4Addr, host_resolv: &str, dns_search: &[String]) -> String {
    let mut s = format!("nameserver {gateway}\n");
    for line in host_resolv.lines() {
        let first = line.split_whitespace().next();
        match first {
            Some("search") | Some("domain") if dns_search.is_empty() => {
                s.push_str(line.trim());
                s.push('\n');
            }
            Some("options") => {
                s.push_str(line.trim());
                s.push('\n');
            }
            _ => {}
        }
    }
    if !dns_search.is_empty() {
        s.push_str(&format!("search {}\n", dns_search.join(" ")));
    }
    s
}

/// The name servers and search domains of a resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> (Vec<SocketAddr>, Vec<String>) {
    let (mut servers, mut search) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(ip) = f.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
                    servers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search") | Some("domain") => {
                search = f.map(str::to_string).collect();
            }
            _ => {}
        }
    }
    (servers, search)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::network::types::{Endpoint, NetworkMode};

    fn rec(
        name: &str,
        ip: [u8; 4],
        net: &str,
        aliases: &[&str],
        complete: bool,
    ) -> AttachmentRecord {
        AttachmentRecord {
            container_id: format!("{name}-id"),
            name: name.into(),
            mode: NetworkMode::Bridge(vec![net.into()]),
            complete,
            owned_netns: None,
            endpoints: vec![Endpoint {
                network: net.into(),
                bridge: "br".into(),
                ip: ip.into(),
                prefix_len: 24,
                gateway: Ipv4Addr::new(ip[0], ip[1], ip[2], 1),
                host_veth: "v".into(),
                ifname: "eth0".into(),
            }],
            ports: Vec::new(),
            links: Vec::new(),
            aliases: [(
                net.to_string(),
                aliases.iter().map(|a| a.to_string()).collect(),
            )]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn render_takes_complete_attachments_of_dns_networks() {
        let front = NetworkConfig {
            name: "front".into(),
            bridge: "b1".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
            ..Default::default()
        };
        let quiet = NetworkConfig {
            name: "quiet".into(),
            bridge: "b2".into(),
            subnet: "10.2.0.0/24".parse().unwrap(),
            dns: false,
            ..Default::default()
        };
        let r = render(
            &[quiet, front],
            &[
                rec("web", [10, 1, 0, 3], "front", &["api", "web"], true),
                rec("half", [10, 1, 0, 4], "front", &[], false),
                rec("db", [10, 1, 0, 2], "front", &[], true),
                rec("q", [10, 2, 0, 2], "quiet", &[], true),
            ],
            &[],
        );
        assert_eq!(r.networks.len(), 1);
        let n = &r.networks[0];
        assert_eq!(n.gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(
            n.hosts,
            vec![
                DnsHost {
                    ip: Ipv4Addr::new(10, 1, 0, 2),
                    names: vec!["db".into()]
                },
                DnsHost {
                    ip: Ipv4Addr::new(10, 1, 0, 3),
                    names: vec!["web".into(), "api".into()]
                },
            ]
        );
    }

    #[test]
    fn records_round_trip_and_refuse_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_records(dir.path()).unwrap(), None);
        let r = Records {
            version: RECORDS_VERSION,
            upstreams: vec!["127.0.0.1:5353".parse().unwrap()],
            networks: Vec::new(),
        };
        write_records(dir.path(), &r).unwrap();
        assert_eq!(read_records(dir.path()).unwrap(), Some(r));
        std::fs::write(
            dir.path().join(RECORDS_FILE),
            r#"{"version": 9, "networks": []}"#,
        )
        .unwrap();
        let e = read_records(dir.path()).unwrap_err().to_string();
        assert!(e.contains("version 9") && e.contains(RECORDS_FILE), "{e}");
    }

    #[test]
    fn container_resolv_conf_keeps_search_and_options() {
        let host = "nameserver 127.0.0.53\nsearch lan example.com\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(Ipv4Addr::new(10, 1, 0, 1), host, &[]),
            "nameserver 10.1.0.1\nsearch lan example.com\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            resolv_conf(Ipv4Addr::new(10, 1, 0, 1), host, &["corp".into()]),
            "nameserver 10.1.0.1\noptions edns0 trust-ad\nsearch corp\n"
        );
        let (servers, search) = parse_resolv_conf(host);
        assert_eq!(servers, vec!["127.0.0.53:53".parse().unwrap()]);
        assert_eq!(search, vec!["lan", "example.com"]);
    }
}
