//! Feeds arbitrary frames to an uplink's underlay stack (ARP, ping,
//! VXLAN checks and decapsulation), as its PMD thread runs it, with and
//! without the NIC's checksum verdicts; answers are rewritten in place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswitch::datapath::tunnel::underlay::{arp_reply_in_place, echo_reply_in_place, fuzz_uplink, Verdict};

fuzz_target!(|data: &[u8]| {
    let u = fuzz_uplink();
    for (ip_good, l4_good) in [(false, false), (true, true)] {
        let mut copy = data.to_vec();
        match u.classify(data, ip_good, l4_good) {
            Verdict::Decap { outer, inner_len, .. } => assert!(outer + inner_len <= data.len()),
            Verdict::ArpRequest(_) => arp_reply_in_place(&mut copy, u.mac),
            Verdict::Echo => echo_reply_in_place(&mut copy, u.mac),
            _ => {}
        }
    }
});
