//! Compiled decisions: the common shape of a megaflow's steps turned into
//! the datapath's own operations at install time.

/// A decision of the common shape (Ethernet rewrites, TTL decrement,
/// one output to a port) compiled at install time into the datapath's
/// own operations, with the output port resolved, so that its replay
/// neither interprets OpenFlow actions nor looks a port number up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastOp {
    /// Overwrite the 6 bytes at `at` (an Ethernet address).
    SetMac {
        /// 0: destination, 6: source.
        at: u8,
        /// The address.
        mac: [u8; 6],
    },
    /// Decrement the IP TTL or hop limit; at expiry the packet is dropped
    /// and the replay counts `done` steps.
    DecTtl {
        /// Steps the replay reached.
        done: u32,
    },
    /// Choose the output port's queue (OpenFlow `set_queue`).
    SetQueue {
        /// The queue id.
        queue: u32,
    },
    /// Send to the datapath's port `slot` (the last operation).
    Output {
        /// The port's slot.
        slot: u32,
    },
}

/// Compiled operations a megaflow holds at most (inline: its replay
/// reads no other memory; four keep everything a hit touches in one line,
/// see [`Megaflow::HIT`]).
pub const FAST_OPS: usize = 4;

/// A compiled decision: up to [`FAST_OPS`] operations, stored inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPlan {
    ops: [FastOp; FAST_OPS],
    len: u8,
}

impl FastPlan {
    /// The plan of `ops`; None when they are too many.
    pub fn new(ops: &[FastOp]) -> Option<FastPlan> {
        let mut p = FastPlan { ops: [FastOp::DecTtl { done: 0 }; FAST_OPS], len: u8::try_from(ops.len()).ok()? };
        p.ops.get_mut(..ops.len())?.copy_from_slice(ops);
        Some(p)
    }

    /// Its operations.
    #[inline]
    pub fn ops(&self) -> &[FastOp] {
        &self.ops[..usize::from(self.len).min(FAST_OPS)]
    }
}
