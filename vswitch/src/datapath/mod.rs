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
//! batch. QoS and connection tracking get folders of their own here.
//!
//! Nothing here allocates, locks or makes a system call per packet; the
//! control thread changes what the PMD threads do only by publishing new
//! snapshots ([`dispatch::DpView`], the OpenFlow tables) that the threads
//! pick up between batches.

pub mod dispatch;
pub mod l2;
pub mod ofdp;
pub mod rewrite;
pub mod tunnel;
