//! The ARP responder of an L2 bridge (VPP's arp-term, EVPN's ARP
//! suppression, Neutron's l2pop responder): ARP requests for addresses it
//! knows (IP and VLAN to MAC, from the configuration or the control
//! socket) are answered by the PMD thread at once, back out of the port
//! they came in on, and never flooded (over tunnels least of all);
//! requests for other addresses flood as usual.

use super::super::FxBuildHasher;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// A bridge's known addresses: (VLAN, IP) to MAC.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArpResponder {
    entries: HashMap<(u16, Ipv4Addr), [u8; 6], FxBuildHasher>,
}

impl ArpResponder {
    /// A responder for `entries` (VLAN, IP, MAC).
    pub fn new(entries: impl IntoIterator<Item = (u16, Ipv4Addr, [u8; 6])>) -> ArpResponder {
        ArpResponder { entries: entries.into_iter().map(|(v, ip, mac)| ((v, ip), mac)).collect() }
    }

    /// Whether it knows no address (the pipeline skips it then).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses it answers for.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether frame `d` (VLAN `vlan`, its ARP at `l3`) is an ARP
    /// request; `Some(answered)` when it is: true when the frame was turned
    /// into the reply, in place (to be sent back where it came from).
    /// Gratuitous requests (an address asking for itself) are not
    /// answered.
    #[inline]
    pub fn answer(&self, d: &mut [u8], l3: usize, vlan: u16) -> Option<bool> {
        let a = d.get(l3..l3 + 28)?;
        if d[l3 - 2..l3] != [0x08, 0x06] || a[..8] != [0, 1, 0x08, 0x00, 6, 4, 0, 1] {
            return None;
        }
        let (spa, tpa) = ([a[14], a[15], a[16], a[17]], [a[24], a[25], a[26], a[27]]);
        if spa == tpa {
            return Some(false);
        }
        let Some(mac) = self.entries.get(&(vlan, Ipv4Addr::from(tpa))) else { return Some(false) };
        let asker: [u8; 6] = a[8..14].try_into().unwrap_or_default();
        d[0..6].copy_from_slice(&asker);
        d[6..12].copy_from_slice(mac);
        let a = &mut d[l3..l3 + 28];
        a[7] = 2;
        a[8..14].copy_from_slice(mac);
        a[14..18].copy_from_slice(&tpa);
        a[18..24].copy_from_slice(&asker);
        a[24..28].copy_from_slice(&spa);
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tpa: [u8; 4], tagged: bool) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        if tagged {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f
    }

    #[test]
    fn known_addresses_are_answered_in_place() {
        let r = ArpResponder::new([
            (0, Ipv4Addr::new(10, 0, 0, 2), [2, 0, 0, 0, 0, 2]),
            (10, Ipv4Addr::new(10, 0, 0, 3), [2, 0, 0, 0, 0, 3]),
        ]);
        let mut f = request([10, 0, 0, 2], false);
        assert_eq!(r.answer(&mut f, 14, 0), Some(true));
        let a = wire::ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), wire::ArpOperation::REPLY);
        assert_eq!((a.sha().0, a.spa().0), ([2, 0, 0, 0, 0, 2], [10, 0, 0, 2]));
        assert_eq!((a.tha().0, a.tpa().0), ([2, 0, 0, 0, 0, 1], [10, 0, 0, 1]));
        assert_eq!((&f[..6], &f[6..12]), (&[2, 0, 0, 0, 0, 1][..], &[2, 0, 0, 0, 0, 2][..]));
        // Per VLAN: .3 is known on VLAN 10 only.
        let mut f = request([10, 0, 0, 3], true);
        assert_eq!(r.answer(&mut f, 18, 10), Some(true));
        let mut f = request([10, 0, 0, 3], false);
        assert_eq!(r.answer(&mut f, 14, 0), Some(false));
        // Unknown, gratuitous, or no ARP request: passed on.
        let mut f = request([10, 0, 0, 9], false);
        assert_eq!(r.answer(&mut f, 14, 0), Some(false));
        let mut f = request([10, 0, 0, 1], false);
        assert_eq!(r.answer(&mut f, 14, 0), Some(false), "gratuitous");
        let mut f = request([10, 0, 0, 2], false);
        f[21] = 2;
        assert_eq!(r.answer(&mut f, 14, 0), None, "a reply");
        assert_eq!(r.answer(&mut f[..30], 14, 0), None, "cut short");
    }
}
