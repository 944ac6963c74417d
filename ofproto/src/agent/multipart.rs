//! Multipart (statistics and description) requests: each answered from
//! the tables, groups, meters and ports, split under 64 KB.

use super::{Agent, Datapath, MP_BUDGET, OFPG_ALL, OFPM_ALL};
use crate::ofp::action::port;
use crate::ofp::error::{BadRequest, OfpError};
use crate::ofp::msg::Message;
use crate::ofp::multipart::{
    Desc, FlowStats, GroupDesc, GroupFeatures, GroupStats, MeterConfig, MeterFeatures, MeterStats, MpReply, MpRequest,
    MultipartReply, TableFeatureProp, TableFeatures, TableStats, MORE,
};
use crate::ofp::oxm::Field;
use crate::ofp::port::{PortDesc, PortStats};
use crate::table::Tables;
use std::sync::atomic::{AtomicU64, Ordering};

fn mp(body: MpReply) -> Message {
    Message::MultipartReply(MultipartReply { flags: 0, body })
}

/// Instructions, actions and match fields the tables support, for
/// table-features replies.
fn table_features(tables: &Tables, id: u8) -> TableFeatures {
    let n = tables.n_tables();
    let next: Vec<u8> = (id.saturating_add(1)..n).collect();
    let ins: Vec<u16> = if id + 1 < n { vec![1, 2, 3, 4, 5, 6] } else { vec![2, 3, 4, 5, 6] };
    let acts = [0u16, 11, 12, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27];
    // OXM ids without the hasmask bit: OVS's ovs-ofctl refuses a
    // table-features reply whose match property has it (BAD_MASK).
    let fields: Vec<(Field, bool)> = Field::ALL.iter().map(|f| (*f, false)).collect();
    let set: Vec<(Field, bool)> = Field::ALL
        .iter()
        .filter(|f| !matches!(f, Field::InPort | Field::InPhyPort | Field::Metadata))
        .map(|f| (*f, false))
        .collect();
    let mut props = Vec::new();
    for miss in [false, true] {
        props.push(TableFeatureProp::instructions(miss, &ins));
        props.push(TableFeatureProp::next_tables(miss, &next));
        props.push(TableFeatureProp::actions(4 + u16::from(miss), &acts));
        props.push(TableFeatureProp::actions(6 + u16::from(miss), &acts));
        props.push(TableFeatureProp::oxms(12 + u16::from(miss), &set));
        props.push(TableFeatureProp::oxms(14 + u16::from(miss), &set));
    }
    props.push(TableFeatureProp::oxms(8, &fields));
    props.push(TableFeatureProp::oxms(10, &fields));
    TableFeatures {
        table_id: id,
        name: format!("table{id}"),
        metadata_match: u64::MAX,
        metadata_write: u64::MAX,
        config: 0,
        max_entries: u32::try_from(tables.max_entries).unwrap_or(u32::MAX),
        properties: props,
    }
}

impl Agent {
    /// QUEUE_GET_CONFIG_REPLY for `port` (OFPP_ANY: every port): each
    /// queue with its minimum and maximum rate properties (tenths of a
    /// percent of the port's rate).
    pub(super) fn queue_config(&self, p: u32, dp: &dyn Datapath) -> Result<Vec<Message>, OfpError> {
        if p != port::ANY && !dp.port_nos().contains(&p) {
            return Err(OfpError::QueueOpFailed(0));
        }
        let queues = dp
            .queues()
            .into_iter()
            .filter(|q| p == port::ANY || q.stats.port_no == p)
            .map(|q| {
                let mut props = Vec::with_capacity(32);
                for (kind, rate) in [(1u16, q.min_rate), (2u16, q.max_rate)] {
                    props.extend_from_slice(&kind.to_be_bytes());
                    props.extend_from_slice(&16u16.to_be_bytes());
                    props.extend_from_slice(&[0; 4]);
                    props.extend_from_slice(&rate.to_be_bytes());
                    props.extend_from_slice(&[0; 6]);
                }
                crate::ofp::msg::PacketQueue { queue_id: q.stats.queue_id, port: q.stats.port_no, properties: props }
            })
            .collect();
        Ok(vec![Message::QueueGetConfigReply { port: p, queues }])
    }

    pub(super) fn multipart(&self, req: &MpRequest, dp: &dyn Datapath, now_ms: u64) -> Result<Vec<Message>, OfpError> {
        let dur = |created: u64| {
            let age = now_ms.saturating_sub(created);
            (u32::try_from(age / 1000).unwrap_or(u32::MAX), u32::try_from((age % 1000) * 1_000_000).unwrap_or(0))
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        if matches!(req, MpRequest::Flow(_) | MpRequest::Aggregate(_) | MpRequest::Table) {
            self.folder.fold_for_stats();
        }
        Ok(match req {
            MpRequest::Desc => vec![mp(MpReply::Desc(Desc {
                mfr_desc: "vswitch project".into(),
                hw_desc: "userspace switch on DPDK".into(),
                sw_desc: format!("vswitchd {}", env!("CARGO_PKG_VERSION")),
                serial_num: "none".into(),
                dp_desc: self.dp_desc.clone(),
            }))],
            MpRequest::Flow(f) => {
                let stats: Vec<FlowStats> = self
                    .tables
                    .select(f.table_id, &f.match_, f.out_port, f.out_group, f.cookie, f.cookie_mask)
                    .map(|e| {
                        let (s, ns) = dur(e.created_ms);
                        FlowStats {
                            table_id: e.table_id,
                            duration_sec: s,
                            duration_nsec: ns,
                            priority: e.priority,
                            idle_timeout: e.idle_timeout,
                            hard_timeout: e.hard_timeout,
                            flags: e.flags,
                            cookie: e.cookie,
                            packet_count: ld(&e.stats.packets),
                            byte_count: ld(&e.stats.bytes),
                            match_: e.match_.clone(),
                            instructions: e.instructions.clone(),
                        }
                    })
                    .collect();
                // Split under 64 KB per message, REPLY_MORE on all but the
                // last.
                let mut parts: Vec<Vec<FlowStats>> = vec![Vec::new()];
                let mut size = 0;
                for s in stats {
                    let n = 56 + s.match_.fields.len() * 20 + s.instructions.len() * 64;
                    if size + n > MP_BUDGET && !parts.last().is_some_and(Vec::is_empty) {
                        parts.push(Vec::new());
                        size = 0;
                    }
                    size += n;
                    if let Some(p) = parts.last_mut() {
                        p.push(s);
                    }
                }
                let last = parts.len() - 1;
                parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        Message::MultipartReply(MultipartReply {
                            flags: if i < last { MORE } else { 0 },
                            body: MpReply::Flow(p),
                        })
                    })
                    .collect()
            }
            MpRequest::Aggregate(f) => {
                let (mut packet_count, mut byte_count, mut flow_count) = (0, 0, 0);
                for e in self.tables.select(f.table_id, &f.match_, f.out_port, f.out_group, f.cookie, f.cookie_mask) {
                    packet_count += ld(&e.stats.packets);
                    byte_count += ld(&e.stats.bytes);
                    flow_count += 1;
                }
                vec![mp(MpReply::Aggregate { packet_count, byte_count, flow_count })]
            }
            MpRequest::Table => vec![mp(MpReply::Table(
                self.tables
                    .tables
                    .iter()
                    .enumerate()
                    .zip(self.tables.counters.iter())
                    .map(|((i, t), c)| TableStats {
                        table_id: u8::try_from(i).unwrap_or(u8::MAX),
                        active_count: u32::try_from(t.entries.len()).unwrap_or(u32::MAX),
                        lookup_count: ld(&c.lookups),
                        matched_count: ld(&c.matches),
                    })
                    .collect(),
            ))],
            MpRequest::PortStats(p) => {
                let ports = dp.ports();
                if *p != port::ANY && !ports.iter().any(|x| x.port_no == *p) {
                    return Err(OfpError::BadRequest(BadRequest::BadPort));
                }
                vec![mp(MpReply::PortStats(
                    ports
                        .iter()
                        .filter(|x| *p == port::ANY || x.port_no == *p)
                        .map(|x| PortStats {
                            port_no: x.port_no,
                            counters: x.counters,
                            duration_sec: x.duration_sec,
                            duration_nsec: 0,
                        })
                        .collect(),
                ))]
            }
            MpRequest::PortDesc => vec![mp(MpReply::PortDesc(
                dp.ports()
                    .iter()
                    .map(|x| PortDesc {
                        port_no: x.port_no,
                        hw_addr: x.hw_addr,
                        name: x.name.clone(),
                        config: x.config,
                        state: if x.link_up { crate::ofp::port::STATE_LIVE } else { crate::ofp::port::STATE_LINK_DOWN },
                        curr_speed: x.speed_kbps,
                        max_speed: x.speed_kbps,
                        ..PortDesc::default()
                    })
                    .collect(),
            ))],
            MpRequest::Queue(p, q) => {
                let all = dp.queues();
                if *p != port::ANY && !dp.port_nos().contains(p) {
                    return Err(OfpError::QueueOpFailed(0));
                }
                let chosen: Vec<_> = all
                    .into_iter()
                    .map(|x| x.stats)
                    .filter(|x| (*p == port::ANY || x.port_no == *p) && (*q == super::OFPQ_ALL || x.queue_id == *q))
                    .collect();
                if *q != super::OFPQ_ALL && chosen.is_empty() {
                    return Err(OfpError::QueueOpFailed(1));
                }
                vec![mp(MpReply::Queue(chosen))]
            }
            MpRequest::Group(g) => vec![mp(MpReply::Group(
                self.groups
                    .iter()
                    .filter(|(id, _)| *g == OFPG_ALL || **id == *g)
                    .map(|(id, x)| {
                        let (s, ns) = dur(x.created_ms);
                        GroupStats {
                            group_id: *id,
                            ref_count: self
                                .tables
                                .select(0xff, &crate::ofp::Match::any(), port::ANY, *id, 0, 0)
                                .count()
                                .try_into()
                                .unwrap_or(u32::MAX),
                            packet_count: ld(&x.stats.packets),
                            byte_count: ld(&x.stats.bytes),
                            duration_sec: s,
                            duration_nsec: ns,
                            buckets: x.stats.buckets.iter().map(|(p, b)| (ld(p), ld(b))).collect(),
                        }
                    })
                    .collect(),
            ))],
            MpRequest::GroupDesc => vec![mp(MpReply::GroupDesc(
                self.groups
                    .iter()
                    .map(|(id, g)| GroupDesc { group_type: g.group_type, group_id: *id, buckets: g.buckets.clone() })
                    .collect(),
            ))],
            MpRequest::GroupFeatures => {
                let acts = (1 << 0)
                    | (1 << 11)
                    | (1 << 12)
                    | (1 << 15)
                    | (1 << 16)
                    | (1 << 17)
                    | (1 << 18)
                    | (1 << 19)
                    | (1 << 20)
                    | (1 << 21)
                    | (1 << 22)
                    | (1 << 23)
                    | (1 << 24)
                    | (1 << 25)
                    | (1 << 26)
                    | (1 << 27);
                vec![mp(MpReply::GroupFeatures(GroupFeatures {
                    types: 0b1111,
                    // SELECT_WEIGHT, SELECT_LIVENESS, CHAINING.
                    capabilities: 1 | 2 | 4,
                    max_groups: [65536; 4],
                    actions: [acts; 4],
                }))]
            }
            MpRequest::Meter(m) => vec![mp(MpReply::Meter(
                self.meters
                    .iter()
                    .filter(|(id, _)| *m == OFPM_ALL || **id == *m)
                    .map(|(id, x)| {
                        let (s, ns) = dur(x.created_ms);
                        MeterStats {
                            meter_id: *id,
                            flow_count: u32::try_from(
                                self.tables
                                    .tables
                                    .iter()
                                    .flat_map(|t| &t.entries)
                                    .filter(|e| e.uses_meter(*id))
                                    .count(),
                            )
                            .unwrap_or(u32::MAX),
                            packet_in_count: ld(&x.stats.packets),
                            byte_in_count: ld(&x.stats.bytes),
                            duration_sec: s,
                            duration_nsec: ns,
                            bands: x.stats.bands.iter().map(|(p, b)| (ld(p), ld(b))).collect(),
                        }
                    })
                    .collect(),
            ))],
            MpRequest::MeterConfig(m) => vec![mp(MpReply::MeterConfig(
                self.meters
                    .iter()
                    .filter(|(id, _)| *m == OFPM_ALL || **id == *m)
                    .map(|(id, x)| MeterConfig { flags: x.flags, meter_id: *id, bands: x.bands.clone() })
                    .collect(),
            ))],
            MpRequest::MeterFeatures => vec![mp(MpReply::MeterFeatures(MeterFeatures {
                max_meter: 65536,
                band_types: (1 << 1) | (1 << 2),
                capabilities: 0xf,
                max_bands: 8,
                max_color: 0,
            }))],
            MpRequest::TableFeatures(set) => {
                if !set.is_empty() {
                    // Changing the pipeline's features is not offered.
                    return Err(OfpError::TableFeaturesFailed(5));
                }
                // One table per message keeps each under 64 KB.
                let n = self.tables.n_tables();
                (0..n)
                    .map(|i| {
                        Message::MultipartReply(MultipartReply {
                            flags: if i + 1 < n { MORE } else { 0 },
                            body: MpReply::TableFeatures(vec![table_features(&self.tables, i)]),
                        })
                    })
                    .collect()
            }
        })
    }
}
