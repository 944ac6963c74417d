//! Typed zero-copy views over packet headers, in the style of smoltcp's
//! `wire` module.
//!
//! Every header has a view `Foo<T: AsRef<[u8]>>` over a byte buffer with
//! - the field layout in a private `field` module of named byte ranges, so
//!   no offset literal appears twice;
//! - `new_checked`, which refuses a buffer too short for the header or for
//!   the length the header claims ([`Error::Truncated`]) or one whose fields
//!   contradict themselves ([`Error::Malformed`]), and `new_unchecked` for
//!   the fast path after flow extraction already checked the bytes;
//! - `#[inline]` getters on `T: AsRef<[u8]>` and setters on `T: AsMut<[u8]>`,
//!   reading network byte order explicitly;
//! - a high-level `FooRepr` with `parse`, `emit` and `buffer_len`.
//!
//! Checksums live in [`checksum`]: partial sums that combine
//! (pseudo-header + data), and the RFC 1624 incremental update used after a
//! field rewrite.
//!
//! This crate does no I/O, has no `unsafe` and knows nothing of DPDK, so the
//! OpenFlow code and the fuzzers use it without an EAL. It never casts bytes
//! to packed structs: every field is read by offset.
#![forbid(unsafe_code)]
// Header fields are narrower than usize by design (a length field is 16
// bits, a header length 4 bits of words); every narrowing cast in the
// emitters writes a value bounded by the buffer, which an IP packet limits
// to 64 KiB, and the emitters document their panics for larger input.
#![allow(clippy::cast_possible_truncation)]

pub mod arp;
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod geneve;
pub mod gre;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use geneve::{GenevePacket, GeneveRepr};
pub use gre::{GrePacket, GreRepr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, NdiscOption, NdiscRepr};
pub use ipv4::{IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Address, Ipv6ExtHeader, Ipv6Packet, Ipv6Repr};
pub use tcp::{TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};
pub use vlan::{VlanRepr, VlanTag};
pub use vxlan::{VxlanPacket, VxlanRepr};

/// Why a buffer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than the length a header
    /// field claims.
    Truncated,
    /// A field holds a value the format forbids (bad version, header length
    /// below the minimum, reserved bits set where they must not be, ...).
    Malformed,
    /// A checksum does not verify.
    Checksum,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated header",
            Error::Malformed => "malformed header",
            Error::Checksum => "checksum mismatch",
        })
    }
}

impl std::error::Error for Error {}

/// Result of parsing a header.
pub type Result<T> = core::result::Result<T, Error>;

/// A named byte range inside a header.
pub(crate) type Field = core::ops::Range<usize>;

/// Big-endian accessors over byte slices; every view reads through these.
pub(crate) mod be {
    #[inline]
    pub fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    #[inline]
    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    #[inline]
    pub fn set_u16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    #[inline]
    pub fn set_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// Parses every header of a frame it recognises, the way flow extraction
/// walks a packet, refusing the first truncated or malformed one. Used by the
/// fuzz target and the ports' malformed-frame accounting in tests.
pub fn parse_frame(frame: &[u8]) -> Result<usize> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut ethertype = eth.ethertype();
    let mut off = ethernet::HEADER_LEN;
    let mut headers = 1;
    while ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        let tag = VlanTag::new_checked(&frame[off..])?;
        ethertype = tag.inner_ethertype();
        off += vlan::HEADER_LEN;
        headers += 1;
    }
    let rest = &frame[off..];
    let (proto, l4) = match ethertype {
        EtherType::ARP => {
            ArpRepr::parse(&ArpPacket::new_checked(rest)?)?;
            return Ok(headers + 1);
        }
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(rest)?;
            let repr = Ipv4Repr::parse(&ip, &checksum::Caps::check_all())?;
            if ip.is_fragment() && ip.frag_offset() != 0 {
                return Ok(headers + 1);
            }
            let hl = ip.header_len();
            (repr.protocol, &rest[hl..usize::from(ip.total_len())])
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(rest)?;
            let (proto, l4off) = ip.upper_layer()?;
            let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            (proto, &rest[l4off..end])
        }
        _ => return Ok(headers),
    };
    headers += 1;
    match proto {
        IpProtocol::TCP => {
            TcpPacket::new_checked(l4)?;
        }
        IpProtocol::UDP => {
            let udp = UdpPacket::new_checked(l4)?;
            let payload = udp.payload();
            match udp.dst_port() {
                vxlan::UDP_PORT => {
                    VxlanRepr::parse(&VxlanPacket::new_checked(payload)?)?;
                    headers += 1;
                }
                geneve::UDP_PORT => {
                    GeneveRepr::parse(&GenevePacket::new_checked(payload)?)?;
                    headers += 1;
                }
                _ => {}
            }
        }
        IpProtocol::ICMP => {
            Icmpv4Packet::new_checked(l4)?;
        }
        IpProtocol::ICMPV6 => {
            let icmp = Icmpv6Packet::new_checked(l4)?;
            if icmp.is_ndisc() {
                NdiscRepr::parse(&icmp)?;
            }
        }
        IpProtocol::GRE => {
            GreRepr::parse(&GrePacket::new_checked(l4)?)?;
        }
        _ => return Ok(headers),
    }
    Ok(headers + 1)
}
