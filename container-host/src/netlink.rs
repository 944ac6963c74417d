//! Interfaces over rtnetlink: a veth pair whose one end goes into a
//! container's network namespace and is set up there (its name, MAC, MTU,
//! addresses, routes, up, and the namespace's loopback up), the other
//! staying on the host for the switch; checked and removed again. No `ip`
//! command: every change is a netlink request, those inside the namespace
//! made from a thread that joined it.

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

mod ethtool;

/// Why an interface could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The namespace could not be opened or joined.
    #[error("network namespace {0}: {1}")]
    Netns(PathBuf, String),
    /// A netlink request failed (what was asked, and the kernel's answer).
    #[error("{0}: {1}")]
    Netlink(String, String),
    /// An interface of that name is there already.
    #[error("interface {0} exists already")]
    Exists(String),
    /// An interface expected is not there, or not as expected.
    #[error("{0}")]
    Mismatch(String),
}

/// A route to set in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination network and prefix length.
    pub dst: (IpAddr, u8),
    /// Next hop (none: on link).
    pub gw: Option<IpAddr>,
}

/// A veth attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The host end's name (what the switch takes as a port).
    pub host: String,
    /// The container end's name (CNI_IFNAME).
    pub ifname: String,
    /// Both ends' MTU.
    pub mtu: u32,
    /// The container end's MAC (none: the kernel's random one).
    pub mac: Option<[u8; 6]>,
    /// Addresses of the container end, with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Routes in the namespace.
    pub routes: Vec<RouteSpec>,
    /// Whether the container end finishes its own checksums (transmit
    /// checksum offload off): a veth hands the switch's AF_PACKET or
    /// AF_XDP socket frames whose TCP and UDP checksums are left to
    /// "hardware" otherwise, and nothing would finish them.
    pub finish_checksums: bool,
}

/// The transmit checksum offloads a veth has.
const TX_CHECKSUMS: [&str; 4] = ["tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-checksum-sctp"];

/// What an attachment made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The host end's interface index.
    pub host_index: u32,
    /// The container end's MAC.
    pub mac: [u8; 6],
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |e| NetError::Netlink(what, e.to_string())
}

/// Runs `f` with a netlink handle of the namespace at `netns` (None: this
/// process's), on a thread of its own (joining a namespace changes only
/// the calling thread's).
fn in_netns<T: Send + 'static>(
    netns: Option<&Path>,
    f: impl AsyncFnOnce(Handle) -> Result<T, NetError> + Send + 'static,
) -> Result<T, NetError> {
    let ns = match netns {
        Some(p) => {
            Some((std::fs::File::open(p).map_err(|e| NetError::Netns(p.into(), e.to_string()))?, p.to_path_buf()))
        }
        None => None,
    };
    let run = move || -> Result<T, NetError> {
        if let Some((file, path)) = &ns {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::Netns(path.clone(), e.to_string()))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| NetError::Netlink("runtime".into(), e.to_string()))?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| NetError::Netlink("netlink socket".into(), e.to_string()))?;
            let task = tokio::spawn(conn);
            let r = f(handle).await;
            task.abort();
            r
        })
    };
    std::thread::spawn(run).join().map_err(|_| NetError::Netlink("netlink thread".into(), "panicked".into()))?
}

async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(nl(format!("get link {name}"))(e)),
    }
}

fn mac_of(m: &LinkMessage) -> Option<[u8; 6]> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(v) => <[u8; 6]>::try_from(v.as_slice()).ok(),
        _ => None,
    })
}

fn mtu_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(v) => Some(*v),
        _ => None,
    })
}

/// The container end's name while it is still on the host (the host
/// end's with its first letter changed: unique as that one is).
fn peer_name(host: &str) -> String {
    format!("p{}", &host[host.char_indices().nth(1).map_or(host.len(), |(i, _)| i)..])
}

/// Makes the pair, moves the container end into `netns` and sets it up
/// there, sets the host end up. On any failure the pair is removed: a
/// failed attachment leaves nothing behind.
pub fn attach_veth(netns: &Path, spec: &VethSpec) -> Result<Attached, NetError> {
    let ns_file = std::fs::File::open(netns).map_err(|e| NetError::Netns(netns.into(), e.to_string()))?;
    let (host, peer, mtu) = (spec.host.clone(), peer_name(&spec.host), spec.mtu);
    let host_index = in_netns(None, async move |h: Handle| {
        if link_by_name(&h, &host).await?.is_some() {
            return Err(NetError::Exists(host));
        }
        h.link()
            .add(LinkVeth::new(&host, &peer).mtu(mtu).build())
            .execute()
            .await
            .map_err(nl(format!("add veth {host}")))?;
        let moved = async {
            let p = link_by_name(&h, &peer)
                .await?
                .ok_or_else(|| NetError::Mismatch(format!("veth peer {peer} vanished")))?;
            use std::os::fd::AsRawFd;
            let msg = LinkUnspec::new_with_index(p.header.index).setns_by_fd(ns_file.as_raw_fd()).build();
            h.link().set(msg).execute().await.map_err(nl(format!("move {peer} into the namespace")))?;
            let me = link_by_name(&h, &host).await?.ok_or_else(|| NetError::Mismatch(format!("{host} vanished")))?;
            h.link()
                .set(LinkUnspec::new_with_index(me.header.index).up().build())
                .execute()
                .await
                .map_err(nl(format!("set {host} up")))?;
            Ok(me.header.index)
        }
        .await;
        if moved.is_err() {
            if let Ok(Some(me)) = link_by_name(&h, &host).await {
                let _ = h.link().del(me.header.index).execute().await;
            }
        }
        moved
    })?;
    let (s, peer) = (spec.clone(), peer_name(&spec.host));
    let inside = in_netns(Some(netns), async move |h: Handle| {
        let p = link_by_name(&h, &peer)
            .await?
            .ok_or_else(|| NetError::Mismatch(format!("{peer} is not in the namespace")))?;
        let idx = p.header.index;
        let mut b = LinkUnspec::new_with_index(idx).name(s.ifname.clone()).mtu(s.mtu);
        if let Some(m) = s.mac {
            b = b.address(m.to_vec());
        }
        h.link().set(b.build()).execute().await.map_err(nl(format!("name {} and set its MTU, MAC", s.ifname)))?;
        for (a, len) in &s.addrs {
            h.address().add(idx, *a, *len).execute().await.map_err(nl(format!("add {a}/{len} to {}", s.ifname)))?;
        }
        if s.finish_checksums {
            let off: Vec<(&str, bool)> = TX_CHECKSUMS.iter().map(|f| (*f, false)).collect();
            ethtool::set_features(&s.ifname, &off)?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(nl(format!("set {} up", s.ifname)))?;
        if let Some(lo) = link_by_name(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo.header.index).up().build())
                .execute()
                .await
                .map_err(nl("set lo up"))?;
        }
        for r in &s.routes {
            let mut b = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(r.dst.0, r.dst.1)
                .map_err(|e| NetError::Mismatch(e.to_string()))?
                .output_interface(idx);
            if let Some(gw) = r.gw {
                b = b.gateway(gw).map_err(|e| NetError::Mismatch(e.to_string()))?;
            }
            h.route().add(b.build()).execute().await.map_err(nl(format!("add route {}/{}", r.dst.0, r.dst.1)))?;
        }
        let me =
            link_by_name(&h, &s.ifname).await?.ok_or_else(|| NetError::Mismatch(format!("{} vanished", s.ifname)))?;
        mac_of(&me).ok_or_else(|| NetError::Mismatch(format!("{} has no MAC", s.ifname)))
    });
    match inside {
        Ok(mac) => Ok(Attached { host_index, mac }),
        Err(e) => {
            let _ = remove_link(&spec.host);
            Err(e)
        }
    }
}

/// Removes the host's interface `name` (a veth takes its peer along);
/// false when it was not there (a DEL repeated succeeds).
pub fn remove_link(name: &str) -> Result<bool, NetError> {
    let name = name.to_string();
    in_netns(None, async move |h: Handle| match link_by_name(&h, &name).await? {
        Some(m) => {
            h.link().del(m.header.index).execute().await.map_err(nl(format!("delete {name}")))?;
            Ok(true)
        }
        None => Ok(false),
    })
}

/// Checks an attachment: the host end there and up, the container end in
/// `netns` with its name, MTU, MAC (if given) and addresses, up.
pub fn check_veth(netns: &Path, spec: &VethSpec) -> Result<(), NetError> {
    let host = spec.host.clone();
    let up = |m: &LinkMessage| m.header.flags.contains(LinkFlags::Up);
    in_netns(None, async move |h: Handle| match link_by_name(&h, &host).await? {
        Some(m) if up(&m) => Ok(()),
        Some(_) => Err(NetError::Mismatch(format!("host interface {host} is down"))),
        None => Err(NetError::Mismatch(format!("host interface {host} is missing"))),
    })?;
    let s = spec.clone();
    in_netns(Some(netns), async move |h: Handle| {
        let m = link_by_name(&h, &s.ifname)
            .await?
            .ok_or_else(|| NetError::Mismatch(format!("{} is missing in the namespace", s.ifname)))?;
        if !up(&m) {
            return Err(NetError::Mismatch(format!("{} is down", s.ifname)));
        }
        if mtu_of(&m) != Some(s.mtu) {
            return Err(NetError::Mismatch(format!("{} has MTU {:?}, not {}", s.ifname, mtu_of(&m), s.mtu)));
        }
        if s.mac.is_some() && mac_of(&m) != s.mac {
            return Err(NetError::Mismatch(format!("{}'s MAC changed", s.ifname)));
        }
        let mut have = Vec::new();
        let mut addrs = h.address().get().set_link_index_filter(m.header.index).execute();
        while let Some(a) = addrs.try_next().await.map_err(nl("list addresses"))? {
            let len = a.header.prefix_len;
            for at in a.attributes {
                if let rtnetlink::packet_route::address::AddressAttribute::Address(ip) = at {
                    have.push((ip, len));
                }
            }
        }
        for want in &s.addrs {
            if !have.contains(want) {
                return Err(NetError::Mismatch(format!("{} lacks {}/{}", s.ifname, want.0, want.1)));
            }
        }
        Ok(())
    })
}
