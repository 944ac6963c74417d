//! What the PMD threads run, one folder per datapath feature.
//!
//! A received batch enters through the [`dispatch`]er, which hands it to
//! the pipeline of the bridge its port belongs to: a cross-connect, the
//! bridge's OpenFlow tables ([`ofdp`]: flow keys, exact-match and megaflow
//! caches, upcalls, the replay of cached decisions) or its L2 switching
//! ([`l2`]: MAC learning, flooding, VLANs). Header rewrites that actions
//! make, with their checksum updates, are in [`rewrite`]. Tunnel ports
//! ([`tunnel`]) encapsulate what is sent to them and, on uplinks, the
//! switch's own underlay stack decapsulates before the bridges see a
//! batch. Port policers ([`qos`]) are gates of the PMD set on what a port
//! receives and sends; a port's egress scheduler (classes, queues) is a
//! shaper of the PMD set that one PMD thread runs. Connection tracking
//! gets a folder of its own here.
//!
//! Nothing here allocates, locks or makes a system call per packet; the
//! control thread changes what the PMD threads do only by publishing new
//! snapshots ([`dispatch::DpView`], the OpenFlow tables) that the threads
//! pick up between batches.

pub mod dispatch;
pub mod l2;
pub mod ofdp;
pub mod qos;
pub mod rewrite;
pub mod tunnel;

/// A small multiplicative hasher for the fast path's hash maps (keys are a
/// few integers: SipHash would cost more than the lookup).
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Eight bytes at a time: an IPv4 address is one mix, IPv6 two.
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiplies carry a word's bits upwards only: fold the high
        // half down and mix once more, or keys that differ in their top
        // bytes (IPv4-mapped addresses) would share their low bits, which
        // pick the bucket.
        let h = (self.0 ^ (self.0 >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
}

/// [`FxHasher`] for `HashMap`s.
pub type FxBuildHasher = std::hash::BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests {
    use super::FxBuildHasher;
    use std::hash::BuildHasher;

    #[test]
    fn keys_that_differ_only_in_their_top_bytes_spread_over_buckets() {
        // 10,000 IPv4-mapped remotes (198.19.x.y): what a flow remote's
        // paths are keyed by. The low 14 bits pick a bucket of a map that
        // size: nearly every key must get its own.
        let b = FxBuildHasher::default();
        let low: std::collections::HashSet<u64> = (1..=10_000u32)
            .map(|h| {
                let [_, _, x, y] = h.to_be_bytes();
                let a = std::net::Ipv4Addr::new(198, 19, x, y).to_ipv6_mapped().octets();
                b.hash_one(a) & 0x3fff
            })
            .collect();
        assert!(low.len() > 5_000, "{} distinct buckets of 10,000 keys", low.len());
    }
}
