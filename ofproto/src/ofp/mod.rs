//! The OpenFlow 1.3 wire codec: messages decoded into plain Rust types and
//! encoded back, with the spec's error for every malformed input.
//!
//! Layout follows the spec's sections: [`msg`] (the header and every
//! message), [`multipart`], [`oxm`] (match fields), [`action`] (actions
//! and instructions), [`port`] (port descriptions and statistics),
//! [`error`] (error types and codes), over a bounds-checked [`bytes`]
//! reader so that decoding never panics on any input.

pub mod action;
pub mod bytes;
pub mod error;
pub mod msg;
pub mod multipart;
pub mod oxm;
pub mod port;

pub use action::{Action, Instruction};
pub use error::OfpError;
pub use msg::{frame_len, DecodeError, Message, VERSION};
pub use oxm::{Field, Match, Oxm};

pub mod display;
