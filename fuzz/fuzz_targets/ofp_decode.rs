//! OpenFlow decoding of untrusted bytes: never a panic, and whatever
//! decodes re-encodes to something that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ofproto::ofp::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok((xid, m)) = Message::decode(data) {
        let again = m.encode(xid);
        assert_eq!(Message::decode(&again), Ok((xid, m)));
    }
});
