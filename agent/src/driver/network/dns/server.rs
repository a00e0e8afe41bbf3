//! The DNS server process (`agent dns-server --dir <dir>`): UDP and TCP port 53 on each
//! network's gateway, answers from the records file ([`super::answer`]), everything else
//! forwarded upstream.
//!
//! Single-threaded (a current-thread tokio runtime): a query it answers itself costs one parse
//! and one lookup in a few hundred names; forwarded queries run as tasks, so a slow upstream
//! holds up nobody else. At most [`MAX_FORWARDS`] forwards are in flight (one more is answered
//! SERVFAIL at once) and [`MAX_TCP_CLIENTS`] TCP clients connected, so that a container
//! flooding it cannot take its file descriptors from everyone else. Signals: `SIGHUP` reloads the records file and `/etc/resolv.conf` and
//! binds or closes sockets to match the networks; `SIGTERM`/`SIGINT` end it. It also ends when
//! its directory is deleted (a state directory removed while it ran), so it never outlives its
//! state by more than that.
//!
//! Sockets are bound with `IP_FREEBIND`, so a gateway address that is missing for a moment (a
//! bridge being repaired or created after the records) does not stop the server from binding.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::answer::{self, Decision};
use super::{PID_FILE, Records};
use crate::driver::network::Error;

/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client may stay idle.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// At most this many forwarded queries (UDP and TCP) in flight, each holding a socket for up to
/// [`UPSTREAM_TIMEOUT`] per upstream; one more is answered SERVFAIL at once. A container that
/// floods the server with unknown names while the upstream is slow then cannot take all of its
/// file descriptors (and with them the service of every other container).
pub const MAX_FORWARDS: usize = 256;
/// At most this many TCP clients at a time; one more is closed when accepted.
pub const MAX_TCP_CLIENTS: usize = 64;

static FORWARDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_FORWARDS);
static TCP_CLIENTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_TCP_CLIENTS);

/// What the sockets answer from: the records, the host's search domains and the upstreams.
#[derive(Debug, Default)]
struct State {
    records: Records,
    search: Vec<String>,
    upstreams: Vec<SocketAddr>,
}

type Shared = Arc<RwLock<Arc<State>>>;

fn snapshot(shared: &Shared) -> Arc<State> {
    shared
        .read()
        .map(|s| s.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

fn failed<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::Dns {
        op,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Runs the server of `dir` until `SIGTERM`; the caller set up logging.
pub fn run(dir: &Path) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed("start the runtime", dir))?;
    rt.block_on(serve(dir.to_path_buf()))
}

async fn serve(dir: PathBuf) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).map_err(failed("install SIGHUP", &dir))?;
    let mut term = signal(SignalKind::terminate()).map_err(failed("install SIGTERM", &dir))?;
    let mut int = signal(SignalKind::interrupt()).map_err(failed("install SIGINT", &dir))?;
    watch_dir(&dir)?;
    let shared: Shared = Arc::default();
    let mut listeners: HashMap<Ipv4Addr, Vec<JoinHandle<()>>> = HashMap::new();
    reload(&dir, &shared, &mut listeners);
    // Only now: the agent signals the pid it finds here, and SIGHUP is handled from here on.
    write_pid(&dir)?;
    tracing::info!(pid = std::process::id(), dir = %dir.display(), "DNS server ready");
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&dir, &shared, &mut listeners),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let pid_file = dir.join(PID_FILE);
    if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == std::process::id().to_string())
    {
        let _ = std::fs::remove_file(&pid_file);
    }
    tracing::info!("DNS server stopped");
    Ok(())
}

/// Ends the process when `dir` is deleted or moved (a blocking inotify read on its own thread).
fn watch_dir(dir: &Path) -> Result<(), Error> {
    use inotify::{EventMask, Inotify, WatchMask};
    let mut ino = Inotify::init().map_err(failed("inotify", dir))?;
    ino.watches()
        .add(dir, WatchMask::DELETE_SELF | WatchMask::MOVE_SELF)
        .map_err(failed("watch", dir))?;
    let shown = dir.display().to_string();
    std::thread::Builder::new()
        .name("dns-dir-watch".into())
        .spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                let Ok(events) = ino.read_events_blocking(&mut buf) else {
                    return;
                };
                for e in events {
                    if e.mask.intersects(
                        EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED,
                    ) {
                        tracing::info!(dir = %shown, "DNS server: directory gone; exiting");
                        std::process::exit(0);
                    }
                }
            }
        })
        .map_err(failed("watch", dir))?;
    Ok(())
}

fn write_pid(dir: &Path) -> Result<(), Error> {
    let path = dir.join(PID_FILE);
    let tmp = dir.join(format!(".{PID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{}\n", std::process::id())).map_err(failed("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(failed("rename into place", &path))
}

/// Reads the records and the host's resolv.conf, and makes the sockets match the networks.
/// A records file that cannot be read keeps the last records.
fn reload(dir: &Path, shared: &Shared, listeners: &mut HashMap<Ipv4Addr, Vec<JoinHandle<()>>>) {
    let records = match super::read_records(dir) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "DNS server: keeping the last records");
            snapshot(shared).records.clone()
        }
    };
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (host_servers, search) = super::parse_resolv_conf(&host);
    let upstreams = if records.upstreams.is_empty() {
        host_servers
    } else {
        records.upstreams.clone()
    };
    let gateways: Vec<Ipv4Addr> = records.networks.iter().map(|n| n.gateway).collect();
    tracing::info!(
        networks = records.networks.len(),
        names = records.networks.iter().map(|n| n.hosts.len()).sum::<usize>(),
        upstreams = ?upstreams,
        "DNS server: records loaded"
    );
    let state = Arc::new(State {
        records,
        search,
        upstreams,
    });
    match shared.write() {
        Ok(mut s) => *s = state,
        Err(p) => *p.into_inner() = state,
    }
    listeners.retain(|gw, tasks| {
        let keep = gateways.contains(gw);
        if !keep {
            tracing::info!(%gw, "DNS server: closing");
            tasks.iter().for_each(JoinHandle::abort);
        }
        keep
    });
    for gw in gateways {
        if listeners.contains_key(&gw) {
            continue;
        }
        match bind(gw) {
            Ok((udp, tcp)) => {
                tracing::info!(%gw, "DNS server: listening on port 53 (udp, tcp)");
                let udp = Arc::new(udp);
                let tasks = vec![
                    tokio::spawn(serve_udp(udp, gw, shared.clone())),
                    tokio::spawn(serve_tcp(tcp, gw, shared.clone())),
                ];
                listeners.insert(gw, tasks);
            }
            // Tried again at the next reload.
            Err(e) => tracing::warn!(%gw, error = %e, "DNS server: cannot listen"),
        }
    }
}

/// A socket of `kind` bound to `gw:53` with `IP_FREEBIND` and `SO_REUSEADDR`.
fn socket(gw: Ipv4Addr, kind: nix::sys::socket::SockType) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{self as s, AddressFamily, SockFlag, SockaddrIn, sockopt};
    let fd = s::socket(
        AddressFamily::Inet,
        kind,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    s::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    s::setsockopt(&fd, sockopt::IpFreebind, &true)?;
    s::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(std::net::SocketAddrV4::new(gw, 53)),
    )?;
    Ok(fd)
}

fn bind(gw: Ipv4Addr) -> std::io::Result<(UdpSocket, TcpListener)> {
    use nix::sys::socket::{Backlog, SockType, listen};
    let udp = UdpSocket::from_std(std::net::UdpSocket::from(socket(gw, SockType::Datagram)?))?;
    let tcp_fd = socket(gw, SockType::Stream)?;
    listen(&tcp_fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))?;
    let tcp = TcpListener::from_std(std::net::TcpListener::from(tcp_fd))?;
    Ok((udp, tcp))
}

async fn serve_udp(sock: Arc<UdpSocket>, gw: Ipv4Addr, shared: Shared) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%gw, error = %e, "DNS server: udp receive");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let IpAddr::V4(client) = peer.ip() else {
            continue;
        };
        let query = buf[..n].to_vec();
        let state = snapshot(&shared);
        match answer::decide(&state.records, &state.search, gw, client, &query) {
            Decision::Reply(bytes) => {
                let _ = sock.send_to(&bytes, peer).await;
            }
            Decision::Forward => {
                let Ok(permit) = FORWARDS.try_acquire() else {
                    let reply = servfail(&query);
                    if !reply.is_empty() {
                        let _ = sock.send_to(&reply, peer).await;
                    }
                    continue;
                };
                let sock = sock.clone();
                tokio::spawn(async move {
                    let reply = match forward_udp(&state.upstreams, &query).await {
                        Some(r) => r,
                        None => servfail(&query),
                    };
                    drop(permit);
                    if !reply.is_empty() {
                        let _ = sock.send_to(&reply, peer).await;
                    }
                });
            }
            Decision::Drop => {}
        }
    }
}

/// The query sent to each upstream in turn over UDP; the first reply with the query's id.
async fn forward_udp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for up in upstreams {
        let local: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let attempt = async {
            let s = UdpSocket::bind(local).await.ok()?;
            s.connect(up).await.ok()?;
            s.send(query).await.ok()?;
            let mut buf = vec![0u8; 65535];
            loop {
                let n = s.recv(&mut buf).await.ok()?;
                if buf.get(..2) == Some(id) {
                    return Some(buf[..n].to_vec());
                }
            }
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            Ok(Some(r)) => return Some(r),
            _ => tracing::debug!(upstream = %up, "DNS server: no answer from upstream"),
        }
    }
    None
}

/// A SERVFAIL reply to `query` (empty when the query cannot be parsed).
fn servfail(query: &[u8]) -> Vec<u8> {
    let Ok(q) = Message::from_vec(query) else {
        return Vec::new();
    };
    let mut m = Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(q.queries);
    m.to_vec().unwrap_or_default()
}

async fn serve_tcp(listener: TcpListener, gw: Ipv4Addr, shared: Shared) {
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%gw, error = %e, "DNS server: tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let IpAddr::V4(client) = peer.ip() else {
            continue;
        };
        let Ok(permit) = TCP_CLIENTS.try_acquire() else {
            drop(conn);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            tcp_client(conn, gw, client, shared).await;
            drop(permit);
        });
    }
}

async fn read_msg(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let len = tokio::time::timeout(TCP_IDLE, conn.read_u16())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; usize::from(len)];
    tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

async fn write_msg(conn: &mut TcpStream, msg: &[u8]) -> Option<()> {
    let len = u16::try_from(msg.len()).ok()?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    conn.write_all(&out).await.ok()
}

async fn tcp_client(mut conn: TcpStream, gw: Ipv4Addr, client: Ipv4Addr, shared: Shared) {
    while let Some(query) = read_msg(&mut conn).await {
        let state = snapshot(&shared);
        let reply = match answer::decide(&state.records, &state.search, gw, client, &query) {
            Decision::Reply(bytes) => bytes,
            Decision::Forward => match FORWARDS.try_acquire() {
                Ok(_permit) => forward_tcp(&state.upstreams, &query)
                    .await
                    .unwrap_or_else(|| servfail(&query)),
                Err(_) => servfail(&query),
            },
            Decision::Drop => return,
        };
        if reply.is_empty() || write_msg(&mut conn, &reply).await.is_none() {
            return;
        }
    }
}

/// The query sent to each upstream in turn over TCP; the first reply.
async fn forward_tcp(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    for up in upstreams {
        let attempt = async {
            let mut s = TcpStream::connect(up).await.ok()?;
            write_msg(&mut s, query).await?;
            read_msg(&mut s).await
        };
        if let Ok(Some(r)) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            return Some(r);
        }
    }
    None
}
