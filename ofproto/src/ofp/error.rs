//! OpenFlow 1.3 errors: one enum whose variants carry their `ofp_error_type`
//! and code (spec section 7.4.4), so a decode or validation failure becomes
//! the error reply the spec names.

/// An OpenFlow error: what a switch answers a bad message with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OfpError {
    /// OFPET_HELLO_FAILED / OFPHFC_INCOMPATIBLE: no common version.
    #[error("hello failed: no common version")]
    HelloIncompatible,
    /// OFPET_BAD_REQUEST with its code.
    #[error("bad request: {0:?}")]
    BadRequest(BadRequest),
    /// OFPET_BAD_ACTION with its code.
    #[error("bad action: {0:?}")]
    BadAction(BadAction),
    /// OFPET_BAD_INSTRUCTION with its code.
    #[error("bad instruction: {0:?}")]
    BadInstruction(BadInstruction),
    /// OFPET_BAD_MATCH with its code.
    #[error("bad match: {0:?}")]
    BadMatch(BadMatch),
    /// OFPET_FLOW_MOD_FAILED with its code.
    #[error("flow mod failed: {0:?}")]
    FlowModFailed(FlowModFailed),
    /// OFPET_GROUP_MOD_FAILED with its code.
    #[error("group mod failed: {0:?}")]
    GroupModFailed(GroupModFailed),
    /// OFPET_PORT_MOD_FAILED with its code (0 bad port, 1 bad hw addr, 2 bad
    /// config, 3 bad advertise, 4 eperm).
    #[error("port mod failed: code {0}")]
    PortModFailed(u16),
    /// OFPET_TABLE_MOD_FAILED with its code (0 bad table, 1 bad config, 2
    /// eperm).
    #[error("table mod failed: code {0}")]
    TableModFailed(u16),
    /// OFPET_QUEUE_OP_FAILED with its code (0 bad port, 1 bad queue, 2 eperm).
    #[error("queue op failed: code {0}")]
    QueueOpFailed(u16),
    /// OFPET_SWITCH_CONFIG_FAILED with its code (0 bad flags, 1 bad len, 2
    /// eperm).
    #[error("switch config failed: code {0}")]
    SwitchConfigFailed(u16),
    /// OFPET_ROLE_REQUEST_FAILED with its code (0 stale, 1 unsup, 2 bad role).
    #[error("role request failed: code {0}")]
    RoleRequestFailed(u16),
    /// OFPET_METER_MOD_FAILED with its code.
    #[error("meter mod failed: {0:?}")]
    MeterModFailed(MeterModFailed),
    /// OFPET_TABLE_FEATURES_FAILED with its code (0 bad table, 1 bad
    /// metadata, 2 bad type, 3 bad len, 4 bad argument, 5 eperm).
    #[error("table features failed: code {0}")]
    TableFeaturesFailed(u16),
    /// A Nicira extension error (OFPET_EXPERIMENTER, experimenter
    /// 0x00002320, as OVS sends them to OpenFlow 1.2+ connections).
    #[error("Nicira extension error: {0:?}")]
    Nx(NxError),
}

/// OFPET_EXPERIMENTER.
pub const ET_EXPERIMENTER: u16 = 0xffff;
/// Nicira's experimenter id.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;

macro_rules! codes {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u16)]
        pub enum $name { $($(#[$vm])* $v = $n),* }
        impl $name {
            /// The code for `n`, if the spec names one.
            pub fn from_code(n: u16) -> Option<$name> {
                match n { $($n => Some($name::$v),)* _ => None }
            }
        }
    };
}

codes!(
    /// OFPET_BAD_REQUEST codes.
    BadRequest {
        /// OFPBRC_BAD_VERSION
        BadVersion = 0,
        /// OFPBRC_BAD_TYPE
        BadType = 1,
        /// OFPBRC_BAD_MULTIPART
        BadMultipart = 2,
        /// OFPBRC_BAD_EXPERIMENTER
        BadExperimenter = 3,
        /// OFPBRC_BAD_EXP_TYPE
        BadExpType = 4,
        /// OFPBRC_EPERM
        Eperm = 5,
        /// OFPBRC_BAD_LEN
        BadLen = 6,
        /// OFPBRC_BUFFER_EMPTY
        BufferEmpty = 7,
        /// OFPBRC_BUFFER_UNKNOWN
        BufferUnknown = 8,
        /// OFPBRC_BAD_TABLE_ID
        BadTableId = 9,
        /// OFPBRC_IS_SLAVE
        IsSlave = 10,
        /// OFPBRC_BAD_PORT
        BadPort = 11,
        /// OFPBRC_BAD_PACKET
        BadPacket = 12,
        /// OFPBRC_MULTIPART_BUFFER_OVERFLOW
        MultipartBufferOverflow = 13,
    }
);

codes!(
    /// OFPET_BAD_ACTION codes.
    BadAction {
        /// OFPBAC_BAD_TYPE
        BadType = 0,
        /// OFPBAC_BAD_LEN
        BadLen = 1,
        /// OFPBAC_BAD_EXPERIMENTER
        BadExperimenter = 2,
        /// OFPBAC_BAD_EXP_TYPE
        BadExpType = 3,
        /// OFPBAC_BAD_OUT_PORT
        BadOutPort = 4,
        /// OFPBAC_BAD_ARGUMENT
        BadArgument = 5,
        /// OFPBAC_EPERM
        Eperm = 6,
        /// OFPBAC_TOO_MANY
        TooMany = 7,
        /// OFPBAC_BAD_QUEUE
        BadQueue = 8,
        /// OFPBAC_BAD_OUT_GROUP
        BadOutGroup = 9,
        /// OFPBAC_MATCH_INCONSISTENT
        MatchInconsistent = 10,
        /// OFPBAC_UNSUPPORTED_ORDER
        UnsupportedOrder = 11,
        /// OFPBAC_BAD_TAG
        BadTag = 12,
        /// OFPBAC_BAD_SET_TYPE
        BadSetType = 13,
        /// OFPBAC_BAD_SET_LEN
        BadSetLen = 14,
        /// OFPBAC_BAD_SET_ARGUMENT
        BadSetArgument = 15,
    }
);

codes!(
    /// OFPET_BAD_INSTRUCTION codes.
    BadInstruction {
        /// OFPBIC_UNKNOWN_INST
        UnknownInst = 0,
        /// OFPBIC_UNSUP_INST
        UnsupInst = 1,
        /// OFPBIC_BAD_TABLE_ID
        BadTableId = 2,
        /// OFPBIC_UNSUP_METADATA
        UnsupMetadata = 3,
        /// OFPBIC_UNSUP_METADATA_MASK
        UnsupMetadataMask = 4,
        /// OFPBIC_BAD_EXPERIMENTER
        BadExperimenter = 5,
        /// OFPBIC_BAD_EXP_TYPE
        BadExpType = 6,
        /// OFPBIC_BAD_LEN
        BadLen = 7,
        /// OFPBIC_EPERM
        Eperm = 8,
    }
);

codes!(
    /// OFPET_BAD_MATCH codes.
    BadMatch {
        /// OFPBMC_BAD_TYPE
        BadType = 0,
        /// OFPBMC_BAD_LEN
        BadLen = 1,
        /// OFPBMC_BAD_TAG
        BadTag = 2,
        /// OFPBMC_BAD_DL_ADDR_MASK
        BadDlAddrMask = 3,
        /// OFPBMC_BAD_NW_ADDR_MASK
        BadNwAddrMask = 4,
        /// OFPBMC_BAD_WILDCARDS
        BadWildcards = 5,
        /// OFPBMC_BAD_FIELD
        BadField = 6,
        /// OFPBMC_BAD_VALUE
        BadValue = 7,
        /// OFPBMC_BAD_MASK
        BadMask = 8,
        /// OFPBMC_BAD_PREREQ
        BadPrereq = 9,
        /// OFPBMC_DUP_FIELD
        DupField = 10,
        /// OFPBMC_EPERM
        Eperm = 11,
    }
);

codes!(
    /// OFPET_FLOW_MOD_FAILED codes.
    FlowModFailed {
        /// OFPFMFC_UNKNOWN
        Unknown = 0,
        /// OFPFMFC_TABLE_FULL
        TableFull = 1,
        /// OFPFMFC_BAD_TABLE_ID
        BadTableId = 2,
        /// OFPFMFC_OVERLAP
        Overlap = 3,
        /// OFPFMFC_EPERM
        Eperm = 4,
        /// OFPFMFC_BAD_TIMEOUT
        BadTimeout = 5,
        /// OFPFMFC_BAD_COMMAND
        BadCommand = 6,
        /// OFPFMFC_BAD_FLAGS
        BadFlags = 7,
    }
);

codes!(
    /// OFPET_GROUP_MOD_FAILED codes.
    GroupModFailed {
        /// OFPGMFC_GROUP_EXISTS
        GroupExists = 0,
        /// OFPGMFC_INVALID_GROUP
        InvalidGroup = 1,
        /// OFPGMFC_WEIGHT_UNSUPPORTED
        WeightUnsupported = 2,
        /// OFPGMFC_OUT_OF_GROUPS
        OutOfGroups = 3,
        /// OFPGMFC_OUT_OF_BUCKETS
        OutOfBuckets = 4,
        /// OFPGMFC_CHAINING_UNSUPPORTED
        ChainingUnsupported = 5,
        /// OFPGMFC_WATCH_UNSUPPORTED
        WatchUnsupported = 6,
        /// OFPGMFC_LOOP
        Loop = 7,
        /// OFPGMFC_UNKNOWN_GROUP
        UnknownGroup = 8,
        /// OFPGMFC_CHAINED_GROUP
        ChainedGroup = 9,
        /// OFPGMFC_BAD_TYPE
        BadType = 10,
        /// OFPGMFC_BAD_COMMAND
        BadCommand = 11,
        /// OFPGMFC_BAD_BUCKET
        BadBucket = 12,
        /// OFPGMFC_BAD_WATCH
        BadWatch = 13,
        /// OFPGMFC_EPERM
        Eperm = 14,
    }
);

codes!(
    /// OFPET_METER_MOD_FAILED codes.
    MeterModFailed {
        /// OFPMMFC_UNKNOWN
        Unknown = 0,
        /// OFPMMFC_METER_EXISTS
        MeterExists = 1,
        /// OFPMMFC_INVALID_METER
        InvalidMeter = 2,
        /// OFPMMFC_UNKNOWN_METER
        UnknownMeter = 3,
        /// OFPMMFC_BAD_COMMAND
        BadCommand = 4,
        /// OFPMMFC_BAD_FLAGS
        BadFlags = 5,
        /// OFPMMFC_BAD_RATE
        BadRate = 6,
        /// OFPMMFC_BAD_BURST
        BadBurst = 7,
        /// OFPMMFC_BAD_BAND
        BadBand = 8,
        /// OFPMMFC_BAD_BAND_VALUE
        BadBandValue = 9,
        /// OFPMMFC_OUT_OF_METERS
        OutOfMeters = 10,
        /// OFPMMFC_OUT_OF_BANDS
        OutOfBands = 11,
    }
);

codes!(
    /// Nicira's error codes this switch sends (their OpenFlow 1.2+
    /// numbers).
    NxError {
        /// NXTTMFC_BAD_COMMAND: not a TLV table command.
        TlvBadCommand = 16,
        /// NXTTMFC_BAD_OPT_LEN: an option length the switch cannot map.
        TlvBadOptLen = 17,
        /// NXTTMFC_BAD_FIELD_IDX: no such `tun_metadata<n>`.
        TlvBadFieldIdx = 18,
        /// NXTTMFC_TABLE_FULL.
        TlvTableFull = 19,
        /// NXTTMFC_ALREADY_MAPPED: the index is mapped already.
        TlvAlreadyMapped = 20,
        /// NXTTMFC_DUP_ENTRY: the option is mapped to another index.
        TlvDupEntry = 21,
        /// NXFMFC_INVALID_TLV_FIELD: a flow names an unmapped
        /// `tun_metadata<n>`.
        InvalidTlvField = 37,
        /// NXTTMFC_INVALID_TLV_DEL: the mapping is used by a flow.
        TlvInvalidDel = 38,
    }
);

impl OfpError {
    /// The `ofp_error_type` and code on the wire.
    pub fn type_code(self) -> (u16, u16) {
        match self {
            OfpError::HelloIncompatible => (0, 0),
            OfpError::BadRequest(c) => (1, c as u16),
            OfpError::BadAction(c) => (2, c as u16),
            OfpError::BadInstruction(c) => (3, c as u16),
            OfpError::BadMatch(c) => (4, c as u16),
            OfpError::FlowModFailed(c) => (5, c as u16),
            OfpError::GroupModFailed(c) => (6, c as u16),
            OfpError::PortModFailed(c) => (7, c),
            OfpError::TableModFailed(c) => (8, c),
            OfpError::QueueOpFailed(c) => (9, c),
            OfpError::SwitchConfigFailed(c) => (10, c),
            OfpError::RoleRequestFailed(c) => (11, c),
            OfpError::MeterModFailed(c) => (12, c as u16),
            OfpError::TableFeaturesFailed(c) => (13, c),
            OfpError::Nx(c) => (ET_EXPERIMENTER, c as u16),
        }
    }

    /// The error for a type and code seen on the wire (None for a pair the
    /// spec does not name).
    pub fn from_type_code(t: u16, c: u16) -> Option<OfpError> {
        Some(match t {
            0 if c == 0 => OfpError::HelloIncompatible,
            1 => OfpError::BadRequest(BadRequest::from_code(c)?),
            2 => OfpError::BadAction(BadAction::from_code(c)?),
            3 => OfpError::BadInstruction(BadInstruction::from_code(c)?),
            4 => OfpError::BadMatch(BadMatch::from_code(c)?),
            5 => OfpError::FlowModFailed(FlowModFailed::from_code(c)?),
            6 => OfpError::GroupModFailed(GroupModFailed::from_code(c)?),
            7 if c <= 4 => OfpError::PortModFailed(c),
            8 if c <= 2 => OfpError::TableModFailed(c),
            9 if c <= 2 => OfpError::QueueOpFailed(c),
            10 if c <= 2 => OfpError::SwitchConfigFailed(c),
            11 if c <= 2 => OfpError::RoleRequestFailed(c),
            12 => OfpError::MeterModFailed(MeterModFailed::from_code(c)?),
            13 if c <= 5 => OfpError::TableFeaturesFailed(c),
            ET_EXPERIMENTER => OfpError::Nx(NxError::from_code(c)?),
            _ => return None,
        })
    }
}

/// Shorthands for the errors decoding raises most.
pub(crate) const BAD_LEN: OfpError = OfpError::BadRequest(BadRequest::BadLen);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_round_trips() {
        for t in 0..14u16 {
            for c in 0..20u16 {
                if let Some(e) = OfpError::from_type_code(t, c) {
                    assert_eq!(e.type_code(), (t, c));
                }
            }
        }
        assert_eq!(OfpError::BadMatch(BadMatch::BadPrereq).type_code(), (4, 9));
        assert_eq!(OfpError::from_type_code(4, 12), None);
        assert_eq!(OfpError::from_type_code(99, 0), None);
    }
}
