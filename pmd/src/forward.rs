//! The minimal port-to-port forwarder (`p2p`): every packet received on a
//! port leaves on its peer port. It is the foundation's stand-in for the
//! switch in the loop benchmark and the demo; the vswitch's pipeline
//! replaces it.

use crate::packet::Batch;
use crate::pmd::{Pipeline, RxqRef, TxBatches};
use crate::port::SwCounters;

/// How much a received frame is checked before it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// None: testpmd io-forward's behaviour, the I/O limit.
    None,
    /// Runts (shorter than an Ethernet header) and segmented frames whose
    /// first segment does not hold the header are dropped.
    Ethernet,
    /// Every header `wire` knows is parsed; a truncated, malformed or
    /// bad-checksum frame (also as the NIC flagged it) is dropped. Chained
    /// (multi-segment) frames get the Ethernet check only.
    Full,
}

/// Forwards port index i to `peer[i]`, dropping and counting (per port)
/// frames that fail validation.
#[derive(Debug, Clone)]
pub struct P2p {
    peer: Vec<usize>,
    validation: Validation,
}

impl P2p {
    /// `peer[i]` is the port index packets from port i go to.
    pub fn new(peer: Vec<usize>, validation: Validation) -> P2p {
        P2p { peer, validation }
    }
}

fn is_malformed(p: &mut crate::Packet, v: Validation) -> bool {
    match v {
        Validation::None => false,
        Validation::Ethernet => p.data().len() < wire::ethernet::HEADER_LEN,
        // A chained (jumbo) frame cannot be length-checked from its first
        // segment: it gets the Ethernet check, not a false "malformed".
        Validation::Full if !p.is_contiguous() => p.data().len() < wire::ethernet::HEADER_LEN,
        Validation::Full => crate::port::rx_cksum_bad(p.ol_flags()) || wire::parse_frame(p.data()).is_err(),
    }
}

impl Pipeline for P2p {
    #[inline]
    fn process(&mut self, rxq: &RxqRef, batch: &mut Batch, tx: &mut TxBatches) {
        let v = self.validation;
        // Scan first: good batches (the common case) are not rewritten.
        if v != Validation::None && batch.as_mut_slice().iter_mut().any(|p| is_malformed(p, v)) {
            let bad = batch.retain(|p| !is_malformed(p, v));
            if let (true, Some(Some(port))) = (bad > 0, tx.ports().get(rxq.port)) {
                SwCounters::bump(&port.sw_counters(tx.pmd_index()).rx_malformed, bad as u64);
            }
        }
        // A slot without a peer (a port added later that this forwarder was
        // not told about): its packets are left in the batch, which the
        // PMD thread frees.
        if let Some(&out) = self.peer.get(rxq.port) {
            tx.send_batch(out, batch);
        }
    }
}
