//! What the PMD threads run, one folder per datapath feature.
//!
//! A received batch enters through the [`dispatch`]er, which hands it to
//! the pipeline of the bridge its port belongs to: a cross-connect, the
//! bridge's OpenFlow tables ([`ofdp`]: flow keys, exact-match and megaflow
//! caches, upcalls, the replay of cached decisions) or its L2 switching
//! ([`l2`]: MAC learning, flooding, VLANs). Header rewrites that actions
//! make, with their checksum updates, are in [`rewrite`]. Tunnels, QoS and
//! connection tracking each get a folder of their own here, beside these.
//!
//! Nothing here allocates, locks or makes a system call per packet; the
//! control thread changes what the PMD threads do only by publishing new
//! snapshots ([`dispatch::DpView`], the OpenFlow tables) that the threads
//! pick up between batches.

pub mod dispatch;
pub mod l2;
pub mod ofdp;
pub mod rewrite;
