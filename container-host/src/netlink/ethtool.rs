//! Offload features over ethtool's generic netlink family (the crates of
//! rust-netlink read them but do not set them): one FEATURES_SET request,
//! its attributes written here as the kernel's uapi lays them out.

use super::NetError;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

const NLMSG_ERROR: u16 = 2;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_BITS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;

/// An attribute: length, type, value, padded to 4 bytes.
fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A generic netlink request: netlink header, generic header, attributes.
fn request(family: u16, cmd: u8, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let len = u32::try_from(16 + 4 + attrs.len()).unwrap_or(u32::MAX);
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[cmd, 1, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Sends `req` and reads the answers up to its ACK: the first non-ACK
/// message's attributes (after the generic header), if any.
fn exchange(sock: &Socket, req: &[u8], what: &str) -> Result<Vec<u8>, NetError> {
    let fail = |e: String| NetError::Netlink(what.to_string(), e);
    sock.send(req, 0).map_err(|e| fail(e.to_string()))?;
    let mut data = Vec::new();
    loop {
        let (buf, _) = sock.recv_from_full().map_err(|e| fail(e.to_string()))?;
        let mut at = 0;
        while let (Some(len), Some(kind)) = (u32_at(&buf, at), u16_at(&buf, at + 4)) {
            let len = len as usize;
            if len < 16 || at + len > buf.len() {
                return Err(fail("truncated answer".into()));
            }
            let body = &buf[at + 16..at + len];
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(body.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
                if code != 0 {
                    return Err(fail(std::io::Error::from_raw_os_error(-code).to_string()));
                }
                return Ok(data);
            }
            if data.is_empty() && body.len() > 4 {
                data = body[4..].to_vec();
            }
            at += len.next_multiple_of(4);
        }
    }
}

/// Sets the named offload features of interface `dev` on or off (in the
/// namespace of the calling thread). Features the device cannot change
/// are left as they are.
pub fn set_features(dev: &str, features: &[(&str, bool)]) -> Result<(), NetError> {
    let fail = |e: std::io::Error| NetError::Netlink("ethtool netlink socket".into(), e.to_string());
    let mut sock = Socket::new(NETLINK_GENERIC).map_err(fail)?;
    sock.bind_auto().map_err(fail)?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
    let mut attrs = Vec::new();
    nla(&mut attrs, CTRL_ATTR_FAMILY_NAME, &cstr("ethtool"));
    let reply =
        exchange(&sock, &request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, &attrs), "resolve ethtool's netlink family")?;
    let mut family = None;
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u16_at(&reply, at), u16_at(&reply, at + 2)) {
        if kind == CTRL_ATTR_FAMILY_ID {
            family = u16_at(&reply, at + 4);
        }
        at += usize::from(len.max(4)).next_multiple_of(4);
    }
    let family =
        family.ok_or_else(|| NetError::Netlink("resolve ethtool's netlink family".into(), "no family id".into()))?;
    let mut header = Vec::new();
    nla(&mut header, ETHTOOL_A_HEADER_DEV_NAME, &cstr(dev));
    let mut bits = Vec::new();
    for (name, on) in features {
        let mut bit = Vec::new();
        nla(&mut bit, ETHTOOL_A_BITSET_BIT_NAME, &cstr(name));
        if *on {
            nla(&mut bit, ETHTOOL_A_BITSET_BIT_VALUE, &[]);
        }
        nla(&mut bits, ETHTOOL_A_BITSET_BITS_BIT | NLA_F_NESTED, &bit);
    }
    let mut wanted = Vec::new();
    nla(&mut wanted, ETHTOOL_A_BITSET_BITS | NLA_F_NESTED, &bits);
    let mut attrs = Vec::new();
    nla(&mut attrs, ETHTOOL_A_FEATURES_HEADER | NLA_F_NESTED, &header);
    nla(&mut attrs, ETHTOOL_A_FEATURES_WANTED | NLA_F_NESTED, &wanted);
    exchange(&sock, &request(family, ETHTOOL_MSG_FEATURES_SET, 2, &attrs), &format!("set offloads of {dev}"))
        .map(|_| ())
}
