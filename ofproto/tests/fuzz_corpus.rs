//! Replays the fuzz target's corpus (fuzz/corpus/ofp: messages ovs-ofctl
//! sent and messages we encoded) on stable Rust, with every prefix and
//! every single-byte change of each seed, plus random messages: decoding
//! never panics, and what decodes re-encodes to the same message.

use ofproto::ofp::Message;
use proptest::prelude::*;
use std::path::Path;

fn check(data: &[u8]) -> bool {
    match Message::decode(data) {
        Ok((xid, m)) => {
            let again = m.encode(xid);
            assert_eq!(Message::decode(&again), Ok((xid, m)), "round trip of {data:02x?}");
            true
        }
        Err(_) => false,
    }
}

/// The header with its length field set to the buffer's length.
fn framed(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= 4 {
        let n = u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes();
        b[2..4].copy_from_slice(&n);
    }
    b
}

#[test]
fn corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ofp");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(check(&data), "every seed is a valid message: {data:02x?}");
        for cut in 0..data.len() {
            check(&framed(data[..cut].to_vec()));
        }
        for i in 8..data.len() {
            for x in [0x00, 0xff, data[i] ^ 0x01, data[i].wrapping_add(8)] {
                let mut d = data.clone();
                d[i] = x;
                check(&d);
            }
        }
        n += 1;
    }
    assert!(n >= 12, "corpus has only {n} inputs");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn random_messages_never_panic(t in 0u8..32, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = vec![4, t, 0, 0, 0, 0, 0, 1];
        b.extend(body);
        check(&framed(b));
    }
}
