//! Feeds arbitrary bytes to every wire parser the fast path uses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::parse_frame(data);
    let _ = wire::Ipv6Packet::new_checked(data).and_then(|p| p.upper_layer());
    let _ = wire::GenevePacket::new_checked(data).and_then(|p| wire::GeneveRepr::parse(&p));
    let _ = wire::GrePacket::new_checked(data).and_then(|p| wire::GreRepr::parse(&p));
    let _ = wire::Icmpv6Packet::new_checked(data).and_then(|p| wire::NdiscRepr::parse(&p));
});
