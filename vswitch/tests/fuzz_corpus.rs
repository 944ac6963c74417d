//! Replays the decapsulation fuzz target's corpus (fuzz/corpus/decap) on
//! stable Rust: every input and every prefix of it is classified by an
//! uplink's underlay stack without a panic, a decapsulation never reaches
//! past the frame, answers are rewritten in place safely, and the seeds
//! get the verdicts their names promise.

use std::path::Path;
use vswitch::datapath::tunnel::underlay::{
    arp_reply_in_place, echo_reply_in_place, fuzz_uplink, Verdict, DROP_REASONS,
};

/// What the fuzz target does with one input.
fn run(data: &[u8]) -> Verdict {
    let u = fuzz_uplink();
    let v = u.classify(data, false, false);
    let mut copy = data.to_vec();
    match &v {
        Verdict::Decap { outer, inner_len, .. } => assert!(outer + inner_len <= data.len() && *inner_len >= 14),
        Verdict::ArpRequest(_) => arp_reply_in_place(&mut copy, u.mac),
        Verdict::Echo => echo_reply_in_place(&mut copy, u.mac),
        _ => {}
    }
    v
}

#[test]
fn corpus_replays_with_the_verdicts_its_names_promise() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decap");
    let mut n = 0;
    let drop = |r: &str| Verdict::Drop(DROP_REASONS.iter().position(|x| *x == r).unwrap());
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let v = run(&data);
        for cut in 0..data.len() {
            run(&data[..cut]);
        }
        match name.as_str() {
            "vxlan" | "vxlan_csum" | "vxlan_padded" | "geneve" => {
                assert!(matches!(v, Verdict::Decap { outer: 50, inner_len: 60, .. }), "{name}: {v:?}");
            }
            "geneve_option" => assert!(matches!(v, Verdict::Decap { outer: 58, inner_len: 60, .. }), "{name}: {v:?}"),
            "gre_key" => assert!(matches!(v, Verdict::Decap { outer: 42, inner_len: 60, .. }), "{name}: {v:?}"),
            "gre_csum" => assert!(matches!(v, Verdict::Decap { outer: 46, inner_len: 60, .. }), "{name}: {v:?}"),
            "geneve_bad_options" => assert_eq!(v, drop("bad_options"), "{name}"),
            "gre_routing" => assert_eq!(v, drop("bad_header"), "{name}"),
            "unknown_vni" => assert_eq!(v, drop("unknown_tunnel"), "{name}"),
            "no_i_flag" => assert_eq!(v, drop("bad_header"), "{name}"),
            "other_port" => assert_eq!(v, drop("not_tunnel"), "{name}"),
            "fragment" => assert_eq!(v, drop("fragment"), "{name}"),
            "bad_ip_checksum" | "bad_udp_checksum" => assert_eq!(v, drop("bad_checksum"), "{name}"),
            "truncated" => assert_eq!(v, drop("truncated"), "{name}"),
            "echo" => assert_eq!(v, Verdict::Echo, "{name}"),
            "arp_request" => assert!(matches!(v, Verdict::ArpRequest(_)), "{name}: {v:?}"),
            "arp_reply" => assert!(matches!(v, Verdict::ArpReply(_)), "{name}: {v:?}"),
            _ => {}
        }
        n += 1;
    }
    assert!(n >= 19, "corpus has only {n} inputs");
}
