//! Netlink (rtnetlink) operations, each run on a dedicated thread.
//!
//! [`run_in`] starts a fresh OS thread, enters the requested network namespace with `setns` (or
//! stays in the agent's own), builds a single-threaded tokio runtime and opens the rtnetlink
//! socket there, so the socket belongs to that namespace. No netlink socket for a container's
//! namespace is ever opened on a shared async worker thread, whose namespace would then be
//! unpredictable for every other task scheduled on it.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::Error;

fn nl_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let op = op.into();
    move |e| Error::Netlink {
        op,
        reason: e.to_string(),
    }
}

/// The errno of a netlink error reply, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

/// Runs `f` with an rtnetlink handle whose socket lives in the namespace at `netns` (the agent's
/// own namespace when `None`), on a new thread that entered that namespace.
pub fn run_in<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Error>>,
{
    let netns: Option<PathBuf> = netns.map(Path::to_path_buf);
    let label = netns
        .as_ref()
        .map_or_else(|| "host namespace".to_string(), |p| p.display().to_string());
    let thread = std::thread::Builder::new()
        .name("agent-netlink".into())
        .spawn(move || -> Result<T, Error> {
            if let Some(path) = &netns {
                let file = File::open(path).map_err(|e| Error::Netns {
                    path: path.clone(),
                    op: "opening",
                    reason: e.to_string(),
                })?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                    path: path.clone(),
                    op: "entering",
                    reason: e.to_string(),
                })?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| Error::Netlink {
                    op: "starting netlink runtime".into(),
                    reason: e.to_string(),
                })?;
            rt.block_on(async move {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|e| Error::Netlink {
                        op: "opening netlink socket".into(),
                        reason: e.to_string(),
                    })?;
                let task = tokio::spawn(conn);
                let out = f(handle).await;
                task.abort();
                out
            })
        })
        .map_err(|e| Error::Netlink {
            op: format!("starting netlink thread for {label}"),
            reason: e.to_string(),
        })?;
    thread.join().map_err(|_| Error::Netlink {
        op: format!("netlink thread for {label}"),
        reason: "panicked".into(),
    })?
}

/// The index of link `name`, if it exists.
pub async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, Error> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl_err(format!("looking up link {name}"))(e)),
    }
}

/// A link as listed: name and kind (`veth`, `bridge`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub controller: Option<u32>,
}

fn summarize(msg: &LinkMessage) -> LinkSummary {
    let mut s = LinkSummary {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        controller: None,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n.clone(),
            LinkAttribute::Controller(c) => s.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        s.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// Every link of the namespace.
pub async fn list_links(h: &Handle) -> Result<Vec<LinkSummary>, Error> {
    let mut out = Vec::new();
    let mut links = h.link().get().execute();
    while let Some(msg) = links.try_next().await.map_err(nl_err("listing links"))? {
        out.push(summarize(&msg));
    }
    Ok(out)
}

/// Deletes link `name`; returns false when it did not exist.
pub async fn delete_link(h: &Handle, name: &str) -> Result<bool, Error> {
    let Some(index) = link_index(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(nl_err(format!("deleting link {name}"))(e)),
    }
}

/// Adds `ip/prefix` to link `index`; an address that is already there is fine.
async fn add_address(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix: u8,
    on: &str,
) -> Result<(), Error> {
    match h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl_err(format!("adding address {ip}/{prefix} to {on}"))(e)),
    }
}

/// Creates bridge `name` if missing, sets its MTU, adds the gateway address and brings it up.
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    mtu: u32,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<u32, Error> {
    let index = match link_index(h, name).await? {
        Some(i) => i,
        None => {
            match h
                .link()
                .add(LinkBridge::new(name).mtu(mtu).build())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(nl_err(format!("creating bridge {name}"))(e)),
            }
            link_index(h, name).await?.ok_or_else(|| Error::Netlink {
                op: format!("creating bridge {name}"),
                reason: "the bridge is missing right after creation".into(),
            })?
        }
    };
    // A fixed MAC (`mac_for(gateway)`): a bridge without one takes the lowest MAC of its
    // ports and changes it when a container's veth with a lower one joins, and the containers'
    // neighbour entries for the gateway then point at the old MAC until they go stale (up to a
    // minute without the gateway: no DNS server, no way out). Docker sets one too.
    let mac = mac_for(gateway);
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .mtu(mtu)
                .address(mac.to_vec())
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!(
            "setting MTU {mtu}, MAC address and up on bridge {name}"
        )))?;
    add_address(h, index, gateway, prefix, name).await?;
    Ok(index)
}

/// The container-side MAC address for `ip`: `02:42` and the four address bytes, as Docker's
/// bridge driver does. A container recreated with the same address gets the same MAC, so the
/// neighbour caches of its peers and of the host stay valid (with a random MAC they would send to
/// the old one until their entry goes stale, up to a minute of lost traffic).
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// Creates the veth pair `host` (on bridge `bridge_index`, up) / `peer_ifname` (created directly
/// inside the namespace at `netns`, so no rename is needed, with MAC `peer_mac`), both with `mtu`.
pub async fn create_veth(
    h: &Handle,
    host: &str,
    (peer_ifname, peer_mac): (&str, [u8; 6]),
    netns: &Path,
    mtu: u32,
    bridge_index: u32,
) -> Result<(), Error> {
    let ns = File::open(netns).map_err(|e| Error::Netns {
        path: netns.to_path_buf(),
        op: "opening",
        reason: e.to_string(),
    })?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(peer_ifname.to_string())
        .mtu(mtu)
        .address(peer_mac.to_vec())
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let msg = LinkVeth::new(host, peer_ifname)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(mtu)
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(nl_err(format!("creating veth pair {host}/{peer_ifname}")))?;
    drop(ns);
    let index = link_index(h, host).await?.ok_or_else(|| Error::Netlink {
        op: format!("creating veth {host}"),
        reason: "the veth is missing right after creation".into(),
    })?;
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(bridge_index)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("attaching {host} to its bridge")))?;
    Ok(())
}

/// Brings loopback up (inside a namespace).
pub async fn loopback_up(h: &Handle) -> Result<(), Error> {
    let index = link_index(h, "lo").await?.ok_or_else(|| Error::Netlink {
        op: "bringing lo up".into(),
        reason: "no lo device".into(),
    })?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err("bringing lo up"))
}

/// Configures a container interface (inside its namespace): address, up, and the default route
/// via `gateway` when `default_route`.
pub async fn configure_interface(
    h: &Handle,
    ifname: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    default_route: bool,
) -> Result<(), Error> {
    let index = link_index(h, ifname).await?.ok_or_else(|| Error::Netlink {
        op: format!("configuring {ifname}"),
        reason: "the interface is not in the namespace".into(),
    })?;
    add_address(h, index, ip, prefix, ifname).await?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err(format!("bringing {ifname} up")))?;
    if default_route {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        match h.route().add(route).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(nl_err(format!("adding default route via {gateway}"))(e)),
        }
    }
    Ok(())
}

/// True for links of kind `veth`.
pub fn is_veth(l: &LinkSummary) -> bool {
    l.kind.as_deref() == Some(&InfoKind::Veth.to_string())
}
