//! Replays the fuzz target's corpus (fuzz/corpus/wire) on stable Rust: every
//! input must parse or be refused, never panic, and the well-formed seeds
//! must parse to the depth their names promise.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)] // test data is small and known

use std::path::Path;

#[test]
fn corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wire");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let res = wire::parse_frame(&data);
        let _ = wire::Ipv6Packet::new_checked(&data[..]).and_then(|p| p.upper_layer());
        // Every prefix of every seed: the truncation paths of each parser.
        for cut in 0..data.len() {
            let _ = wire::parse_frame(&data[..cut]);
        }
        match name.as_str() {
            "truncated_ipv4" => assert_eq!(res, Err(wire::Error::Truncated)),
            "bad_ihl" => assert_eq!(res, Err(wire::Error::Malformed)),
            "udp4" | "tcp4_opts" | "icmp4" | "ipv6_ext_udp" | "ipv6_ns" | "gre_key" => assert_eq!(res, Ok(3), "{name}"),
            "vxlan" | "geneve" => assert_eq!(res, Ok(4), "{name}"),
            "vlan_qinq" => assert_eq!(res, Ok(5), "{name}"),
            "arp" => assert_eq!(res, Ok(2), "{name}"),
            _ => {}
        }
        n += 1;
    }
    assert!(n >= 12, "corpus has only {n} inputs");
}
