//! Tracing a packet through a bridge's tables (what `ovs-appctl
//! ofproto/trace` shows for Open vSwitch): the key, each table looked up
//! with the entry that matched (priority, match, cookie, instructions),
//! the actions run and what they did to the key, and the megaflow the
//! datapath would install for it: its decision and the mask of every bit
//! the walk examined. The walk is the datapath's own ([`xlate::walk`] with
//! the translator the upcall uses), so a trace cannot drift from what
//! packets get.
//!
//! Flows are written as `ovs-ofctl` writes them
//! (`in_port=1,tcp,nw_dst=10.0.0.2,tp_dst=80`): [`parse_flow`] turns one
//! into the key [`FlowKey::extract`] gives a packet with those headers
//! (fields not named are zero, present as extraction makes them present);
//! a real packet's bytes go through extraction itself.

use crate::flow::{exthdr_flags, FlowKey};
use crate::megaflow::{match_string, steps_string};
use crate::ofp::display::instructions_text;
use crate::ofp::oxm::{Field, VID_PRESENT};
use crate::ofp::Action;
use crate::table::{FlowEntry, FlowTable, Tables};
use crate::xlate::{self, Origin, Translation, Translator, Walker};

/// The entry a lookup matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedEntry {
    /// Its priority.
    pub priority: u16,
    /// Its match, as `dump-flows` writes it.
    pub match_: String,
    /// Its cookie.
    pub cookie: u64,
    /// Its instructions, as `dump-flows` writes them.
    pub instructions: String,
}

/// One thing the walk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// Table `table` was looked up; `entry` matched (None: a miss
    /// without a table-miss entry, which drops the packet).
    Lookup {
        /// The table.
        table: u8,
        /// The entry that matched.
        entry: Option<TracedEntry>,
    },
    /// An apply-actions list (or the action set, at the end) ran.
    Actions {
        /// The actions, as `dump-flows` writes them.
        actions: String,
        /// The key fields they changed, `field=value` (headers pushed or
        /// popped are read from the frame again by the datapath).
        changed: Vec<String>,
    },
    /// Write-metadata: the metadata became this.
    Metadata(u64),
    /// A meter instruction (the datapath runs the meter per packet).
    Meter(u32),
}

/// A traced walk.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The key the walk started with.
    pub key: FlowKey,
    /// What the walk did, in order.
    pub events: Vec<TraceEvent>,
    /// The key at the end (after set-field and the like).
    pub final_key: FlowKey,
    /// The decision and the mask the datapath would cache.
    pub translation: Translation,
}

impl Trace {
    /// The megaflow's match: the key under the mask.
    pub fn megaflow(&self) -> String {
        let mut masked = FlowKey::default();
        for f in self.translation.mask.fields().filter(|&f| self.key.get(f).is_some()) {
            let i = f as usize;
            let (w, b) = (self.key.words(i), self.translation.mask.bits[i]);
            masked.set_words(i, [w[0] & b[0], w[1] & b[1]]);
        }
        match_string(&masked, &self.translation.mask)
    }

    /// The datapath actions: what a packet of this megaflow gets.
    pub fn actions(&self) -> String {
        steps_string(&self.translation.steps)
    }
}

impl std::fmt::Display for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Flow: {}", key_string(&self.key))?;
        for e in &self.events {
            match e {
                TraceEvent::Lookup { table, entry: Some(m) } => {
                    writeln!(f)?;
                    writeln!(
                        f,
                        "{table:>3}. priority {}{}{}, cookie 0x{:x}",
                        m.priority,
                        if m.match_.is_empty() { "" } else { ", " },
                        m.match_,
                        m.cookie
                    )?;
                    writeln!(f, "     {}", m.instructions)?;
                }
                TraceEvent::Lookup { table, entry: None } => {
                    writeln!(f)?;
                    writeln!(f, "{table:>3}. no match and no table-miss flow: the packet is dropped")?;
                }
                TraceEvent::Actions { actions, changed } => {
                    write!(f, "     -> {actions}")?;
                    if !changed.is_empty() {
                        write!(f, "  (key: {})", changed.join(","))?;
                    }
                    writeln!(f)?;
                }
                TraceEvent::Metadata(m) => writeln!(f, "     -> metadata=0x{m:x}")?,
                TraceEvent::Meter(m) => writeln!(f, "     -> meter:{m}")?,
            }
        }
        writeln!(f)?;
        writeln!(f, "Final flow: {}", key_string(&self.final_key))?;
        writeln!(f, "Megaflow: {}", self.megaflow())?;
        write!(f, "Datapath actions: {}", self.actions())?;
        if !self.translation.cacheable {
            write!(f, "\n(not cached: a header pushed or popped before a later table looked at the packet; such packets walk the tables every time)")?;
        }
        Ok(())
    }
}

/// Every present field of `key`, `field=value`.
pub fn key_string(key: &FlowKey) -> String {
    Field::ALL
        .iter()
        .filter_map(|&f| key.get(f).map(|v| crate::ofp::oxm::Oxm::exact(f, v).to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

fn traced(e: &FlowEntry) -> TracedEntry {
    TracedEntry {
        priority: e.priority,
        match_: e.match_.to_string(),
        cookie: e.cookie,
        instructions: instructions_text(&e.instructions),
    }
}

/// The translator, recording what it does.
struct Tracer {
    inner: Translator,
    events: Vec<TraceEvent>,
}

impl<'t> Walker<'t> for Tracer {
    fn lookup(&mut self, table: u8, t: &'t FlowTable) -> Option<&'t FlowEntry> {
        let e = self.inner.lookup(table, t);
        self.events.push(TraceEvent::Lookup { table, entry: e.map(traced) });
        e
    }
    fn apply(&mut self, acts: &[Action], origin: Origin) -> bool {
        let before = self.inner.key.clone();
        let go_on = self.inner.apply(acts, origin);
        let changed = if go_on {
            Field::ALL
                .iter()
                .filter(|&&f| self.inner.key.get(f) != before.get(f))
                .map(|&f| match self.inner.key.get(f) {
                    Some(v) => crate::ofp::oxm::Oxm::exact(f, v).to_string(),
                    None => format!("!{}", f.name()),
                })
                .collect()
        } else {
            Vec::new()
        };
        let actions = acts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        self.events.push(TraceEvent::Actions { actions, changed });
        go_on
    }
    fn write_metadata(&mut self, metadata: u64, mask: u64) {
        self.inner.write_metadata(metadata, mask);
        self.events.push(TraceEvent::Metadata(self.inner.key.get_u64(Field::Metadata).unwrap_or(0)));
    }
    fn meter(&mut self, meter: u32) -> bool {
        self.events.push(TraceEvent::Meter(meter));
        self.inner.meter(meter)
    }
}

/// Walks `tables` with `key` as the datapath's upcall does, recording
/// each step.
pub fn trace(tables: &Tables, key: &FlowKey) -> Trace {
    let mut w = Tracer { inner: Translator::new(key), events: Vec::new() };
    xlate::walk(tables, &mut w);
    let final_key = w.inner.key.clone();
    Trace { key: key.clone(), events: w.events, final_key, translation: w.inner.finish() }
}

/// Why a flow could not be parsed.
pub type ParseError = String;

/// What the protocol shorthands set: (eth_type, ip_proto).
fn shorthand(s: &str) -> Option<(u16, Option<u8>)> {
    Some(match s {
        "ip" => (0x0800, None),
        "ipv6" => (0x86dd, None),
        "arp" => (0x0806, None),
        "mpls" => (0x8847, None),
        "tcp" => (0x0800, Some(6)),
        "udp" => (0x0800, Some(17)),
        "sctp" => (0x0800, Some(132)),
        "icmp" => (0x0800, Some(1)),
        "tcp6" => (0x86dd, Some(6)),
        "udp6" => (0x86dd, Some(17)),
        "sctp6" => (0x86dd, Some(132)),
        "icmp6" => (0x86dd, Some(58)),
        _ => return None,
    })
}

/// A name as `ovs-ofctl` or OXM writes it, before the protocol decides
/// which field it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Field(Field),
    /// `nw_src`/`nw_dst`: IPv4, or ARP's protocol addresses.
    NwSrc,
    NwDst,
    /// `nw_tos`: the TOS byte (DSCP in its upper 6 bits).
    NwTos,
    /// `tp_src`/`tp_dst`: TCP, UDP or SCTP by the protocol.
    TpSrc,
    TpDst,
    /// `icmp_type`/`icmp_code`: ICMPv4 or ICMPv6 by the protocol.
    IcmpType,
    IcmpCode,
    /// `dl_vlan`: the VID alone (a tag is present).
    DlVlan,
}

fn name(s: &str) -> Option<Name> {
    use Field::*;
    Some(Name::Field(match s {
        "dl_src" => EthSrc,
        "dl_dst" => EthDst,
        "dl_type" => EthType,
        "dl_vlan_pcp" => VlanPcp,
        "nw_proto" => IpProto,
        "nw_ecn" => IpEcn,
        "ip_src" => Ipv4Src,
        "ip_dst" => Ipv4Dst,
        "ipv6_label" => Ipv6Flabel,
        "nd_target" => Ipv6NdTarget,
        "nd_sll" => Ipv6NdSll,
        "nd_tll" => Ipv6NdTll,
        "tun_id" => TunnelId,
        "nw_src" => return Some(Name::NwSrc),
        "nw_dst" => return Some(Name::NwDst),
        "nw_tos" => return Some(Name::NwTos),
        "tp_src" => return Some(Name::TpSrc),
        "tp_dst" => return Some(Name::TpDst),
        "icmp_type" => return Some(Name::IcmpType),
        "icmp_code" => return Some(Name::IcmpCode),
        "dl_vlan" => return Some(Name::DlVlan),
        _ => return Field::ALL.iter().find(|f| f.name() == s).map(|f| Name::Field(*f)),
    }))
}

/// Field `f`'s value written as text: a number (decimal or 0x hex), a
/// MAC, an IPv4 or IPv6 address, by the field.
fn value(f: Field, v: &str) -> Result<Vec<u8>, ParseError> {
    let bad = || format!("`{v}` is not a value of {}", f.name());
    let w = f.width();
    match f {
        Field::EthSrc | Field::EthDst | Field::ArpSha | Field::ArpTha | Field::Ipv6NdSll | Field::Ipv6NdTll => {
            let b: Vec<u8> =
                v.split(':').map(|x| u8::from_str_radix(x, 16)).collect::<Result<_, _>>().map_err(|_| bad())?;
            (b.len() == 6).then_some(b).ok_or_else(bad)
        }
        Field::Ipv4Src | Field::Ipv4Dst | Field::ArpSpa | Field::ArpTpa | Field::TunSrc | Field::TunDst => {
            v.parse::<std::net::Ipv4Addr>().map(|a| a.octets().to_vec()).map_err(|_| bad())
        }
        Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6NdTarget | Field::TunIpv6Src | Field::TunIpv6Dst => {
            v.parse::<std::net::Ipv6Addr>().map(|a| a.octets().to_vec()).map_err(|_| bad())
        }
        _ if f.variable() => {
            // Hex, right-aligned in the field's bytes.
            let h = v.strip_prefix("0x").ok_or_else(bad)?;
            let h = if h.len() % 2 == 1 { format!("0{h}") } else { h.to_string() };
            let b: Vec<u8> = (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            if b.len() > w {
                return Err(format!("{v} does not fit {} ({w} bytes)", f.name()));
            }
            let mut out = vec![0u8; w - b.len()];
            out.extend(b);
            Ok(out)
        }
        _ => {
            let n = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse::<u64>(),
            }
            .map_err(|_| bad())?;
            if w < 8 && n >> (8 * w) != 0 {
                return Err(format!("{v} does not fit {} ({w} bytes)", f.name()));
            }
            Ok(n.to_be_bytes()[8 - w..].to_vec())
        }
    }
}

/// Parses a flow as `ovs-ofctl` writes one (`in_port=1,tcp,nw_dst=...`)
/// into the key a packet with those headers is extracted to: fields not
/// named are zero and present exactly where extraction makes them
/// present (the protocol decides which). `in_port` is required; a field
/// the protocol does not have is refused, as OVS refuses it.
pub fn parse_flow(text: &str) -> Result<FlowKey, ParseError> {
    let mut eth_type: Option<u16> = None;
    let mut proto: Option<u8> = None;
    let mut given: Vec<(Name, String)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((et, p)) = shorthand(part) {
            if eth_type.is_some_and(|e| e != et) {
                return Err(format!("`{part}` contradicts an earlier protocol"));
            }
            eth_type = Some(et);
            if p.is_some() {
                proto = p;
            }
            continue;
        }
        let (k, v) =
            part.split_once('=').ok_or_else(|| format!("`{part}`: write field=value or a protocol (ip, tcp, ...)"))?;
        let n = name(k.trim()).ok_or_else(|| format!("unknown field `{}`", k.trim()))?;
        match n {
            Name::Field(Field::EthType) => {
                eth_type = Some(u16::from_be_bytes(value(Field::EthType, v.trim())?.try_into().unwrap_or([0, 0])))
            }
            Name::Field(Field::IpProto) => proto = Some(value(Field::IpProto, v.trim())?[0]),
            _ => given.push((n, v.trim().to_string())),
        }
    }
    let et = eth_type.unwrap_or(0);
    let ip4 = et == 0x0800;
    let ip6 = et == 0x86dd;
    let arp = et == 0x0806;
    // The field a name stands for under this protocol.
    let resolve = |n: Name| -> Result<Field, ParseError> {
        let need = |ok: bool, f: Field, what: &str| if ok { Ok(f) } else { Err(format!("{} needs {what}", f.name())) };
        Ok(match n {
            Name::Field(f) => f,
            Name::NwSrc if arp => Field::ArpSpa,
            Name::NwDst if arp => Field::ArpTpa,
            Name::NwSrc => need(ip4, Field::Ipv4Src, "ip (or arp)")?,
            Name::NwDst => need(ip4, Field::Ipv4Dst, "ip (or arp)")?,
            Name::NwTos => need(ip4 || ip6, Field::IpDscp, "ip or ipv6")?,
            Name::TpSrc | Name::TpDst => {
                let src = n == Name::TpSrc;
                match proto {
                    Some(6) => {
                        if src {
                            Field::TcpSrc
                        } else {
                            Field::TcpDst
                        }
                    }
                    Some(17) => {
                        if src {
                            Field::UdpSrc
                        } else {
                            Field::UdpDst
                        }
                    }
                    Some(132) => {
                        if src {
                            Field::SctpSrc
                        } else {
                            Field::SctpDst
                        }
                    }
                    _ => return Err("tp_src and tp_dst need tcp, udp or sctp".into()),
                }
            }
            Name::IcmpType | Name::IcmpCode => {
                let ty = n == Name::IcmpType;
                match (ip4, ip6, proto) {
                    (true, _, Some(1)) => {
                        if ty {
                            Field::Icmpv4Type
                        } else {
                            Field::Icmpv4Code
                        }
                    }
                    (_, true, Some(58)) => {
                        if ty {
                            Field::Icmpv6Type
                        } else {
                            Field::Icmpv6Code
                        }
                    }
                    _ => return Err("icmp_type and icmp_code need icmp or icmp6".into()),
                }
            }
            Name::DlVlan => Field::VlanVid,
        })
    };
    let mut vals: Vec<(Field, Vec<u8>)> = Vec::new();
    for (n, v) in &given {
        let f = resolve(*n)?;
        let mut b = value(f, v)?;
        match n {
            Name::NwTos => b = vec![b[0] >> 2],
            Name::DlVlan => {
                let vid = u16::from_be_bytes([b[0], b[1]]);
                if vid > 0xfff {
                    return Err(format!("dl_vlan {vid} is not a VLAN id (0-4095)"));
                }
                b = (vid | VID_PRESENT).to_be_bytes().to_vec();
            }
            _ => {}
        }
        vals.push((f, b));
    }
    let given_of = |f: Field| vals.iter().rev().find(|(g, _)| *g == f).map(|(_, v)| v.clone());
    let Some(in_port) = given_of(Field::InPort) else {
        return Err("give in_port=N: the OpenFlow port the packet arrives on".into());
    };
    let mut k = FlowKey::default();
    // Field `f` present, with its given value or zero.
    let put = |k: &mut FlowKey, f: Field| k.set(f, &given_of(f).unwrap_or_else(|| vec![0; f.width()]));
    // As extraction: the pipeline fields and the Ethernet header always.
    for f in [Field::InPort, Field::Metadata, Field::TunnelId, Field::VlanVid, Field::EthDst, Field::EthSrc] {
        put(&mut k, f);
    }
    k.set(Field::InPhyPort, &in_port);
    if k.get_u64(Field::VlanVid).is_some_and(|v| v & u64::from(VID_PRESENT) != 0) {
        put(&mut k, Field::VlanPcp);
    }
    k.set_u64(Field::EthType, u64::from(et));
    let l4 = |k: &mut FlowKey, p: u8, v6: bool| {
        let fields: &[Field] = match p {
            6 => &[Field::TcpSrc, Field::TcpDst],
            17 => &[Field::UdpSrc, Field::UdpDst],
            132 => &[Field::SctpSrc, Field::SctpDst],
            1 if !v6 => &[Field::Icmpv4Type, Field::Icmpv4Code],
            58 if v6 => &[Field::Icmpv6Type, Field::Icmpv6Code],
            _ => &[],
        };
        for f in fields {
            put(k, *f);
        }
        // Neighbour discovery: the target and the link-layer address
        // option (zero when absent, as extraction makes it).
        let nd: &[Field] = match (v6 && p == 58, k.get_u64(Field::Icmpv6Type)) {
            (true, Some(135)) => &[Field::Ipv6NdTarget, Field::Ipv6NdSll],
            (true, Some(136)) => &[Field::Ipv6NdTarget, Field::Ipv6NdTll],
            _ => &[],
        };
        for f in nd {
            put(k, *f);
        }
    };
    match et {
        0x0806 => {
            for f in [Field::ArpOp, Field::ArpSpa, Field::ArpTpa, Field::ArpSha, Field::ArpTha] {
                put(&mut k, f);
            }
        }
        0x0800 => {
            for f in [Field::IpDscp, Field::IpEcn, Field::Ipv4Src, Field::Ipv4Dst] {
                put(&mut k, f);
            }
            let p = proto.unwrap_or(0);
            k.set_u64(Field::IpProto, u64::from(p));
            l4(&mut k, p, false);
        }
        0x86dd => {
            for f in [Field::IpDscp, Field::IpEcn, Field::Ipv6Src, Field::Ipv6Dst, Field::Ipv6Flabel] {
                put(&mut k, f);
            }
            // No next header (59) unless a protocol is named.
            let p = proto.unwrap_or(59);
            match given_of(Field::Ipv6Exthdr) {
                Some(v) => k.set(Field::Ipv6Exthdr, &v),
                None => k.set_u64(Field::Ipv6Exthdr, u64::from(exthdr_flags(p, &[]))),
            }
            if p != 59 {
                k.set_u64(Field::IpProto, u64::from(p));
            }
            l4(&mut k, p, true);
        }
        0x8847 | 0x8848 => {
            for f in [Field::MplsLabel, Field::MplsTc, Field::MplsBos] {
                put(&mut k, f);
            }
        }
        0x88e7 => put(&mut k, Field::PbbIsid),
        _ => {}
    }
    if proto.is_some() && !(ip4 || ip6) {
        return Err("nw_proto needs ip or ipv6".into());
    }
    // A named field the packet's headers do not have.
    if let Some((f, _)) = vals.iter().find(|(f, _)| k.get(*f).is_none()) {
        let hint = if et == 0 { " (name its protocol: ip, tcp, arp, ipv6, ...)" } else { "" };
        return Err(format!("{} does not apply to this packet{hint}", f.name()));
    }
    Ok(k)
}

#[cfg(test)]
mod tests;
