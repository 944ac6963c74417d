//! OpenFlow's side of the datapath: the switch as an agent's datapath
//! (ports, packet-out, port-mod), each bridge's tables published to the
//! PMD threads as snapshots, port and link changes told to controllers,
//! packet-ins from the PMD threads sent on.

use super::OpenFlow;
use crate::daemon::switch::Switch;
use crate::datapath::ofdp::{OfBridgeDp, PacketOutReq};
use mio::Registry;
use ofproto::agent::{Datapath, PortInfo, QueueInfo};
use ofproto::ofp::multipart::QueueStats;
use ofproto::ofp::{Action, OfpError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bridge's ports as OpenFlow describes them; `config` holds the
/// OFPPC_* bits PORT_MOD set.
fn port_infos(sw: &Switch, bridge: &str, config: &HashMap<u32, u32>) -> Vec<PortInfo> {
    sw.ports
        .iter()
        .filter(|p| p.bridge == bridge)
        .map(|p| {
            let s = p.port.stats();
            let l = p.port.link();
            PortInfo {
                port_no: p.ofport,
                name: p.name.clone(),
                hw_addr: p.port.mac().0,
                link_up: l.up,
                config: config.get(&p.ofport).copied().unwrap_or(0),
                counters: [
                    s.rx_packets,
                    s.tx_packets,
                    s.rx_bytes,
                    s.tx_bytes,
                    s.rx_dropped(),
                    s.tx_dropped,
                    s.rx_errors,
                    s.tx_errors,
                    0,
                    0,
                    0,
                    0,
                ],
                duration_sec: 0,
                speed_kbps: l.speed_mbps.saturating_mul(1000),
            }
        })
        .collect()
}

/// The switch as an OpenFlow bridge's datapath.
pub(super) struct SwitchDp<'a> {
    pub(super) sw: &'a Switch,
    pub(super) bridge: &'a str,
    pub(super) index: usize,
    pub(super) config: &'a mut HashMap<u32, u32>,
}

impl Datapath for SwitchDp<'_> {
    fn queues(&self) -> Vec<QueueInfo> {
        let mut out = Vec::new();
        for p in self.sw.ports.iter().filter(|p| p.bridge == self.bridge) {
            let (Some(st), Some(cfg)) = (&p.shaper, &p.cfg.shaper) else { continue };
            let snap = st.shaper.snapshot();
            let tenths = |bytes: u64| {
                u16::try_from(u128::from(bytes) * 8 * 1000 / u128::from(cfg.rate.max(1))).unwrap_or(1000).min(1000)
            };
            for c in &snap.classes {
                out.push(QueueInfo {
                    stats: QueueStats {
                        port_no: p.ofport,
                        queue_id: c.spec.id,
                        tx_bytes: c.stats.bytes,
                        tx_packets: c.stats.packets,
                        tx_errors: c.stats.drops.iter().sum(),
                        duration_sec: u32::try_from(st.since.elapsed().as_secs()).unwrap_or(u32::MAX),
                        duration_nsec: st.since.elapsed().subsec_nanos(),
                    },
                    min_rate: tenths(c.spec.rate),
                    max_rate: tenths(c.spec.ceil),
                });
            }
        }
        out
    }

    fn port_nos(&self) -> Vec<u32> {
        self.sw.ports.iter().filter(|p| p.bridge == self.bridge).map(|p| p.ofport).collect()
    }

    fn ports(&self) -> Vec<PortInfo> {
        port_infos(self.sw, self.bridge, self.config)
    }

    fn packet_out(&mut self, in_port: u32, actions: &[Action], data: &[u8]) -> Result<(), OfpError> {
        use ofproto::ofp::action::port;
        use ofproto::ofp::error::{BadAction, BadRequest};
        let is_port = |n: u32| self.sw.ports.iter().any(|p| p.bridge == self.bridge && p.ofport == n);
        if data.len() < 14 {
            return Err(OfpError::BadRequest(BadRequest::BadPacket));
        }
        if in_port != port::CONTROLLER && in_port != port::LOCAL && !is_port(in_port) {
            return Err(OfpError::BadRequest(BadRequest::BadPort));
        }
        for a in actions {
            if let Action::Output { port: p, .. } = a {
                if *p <= port::MAX && !is_port(*p) {
                    return Err(OfpError::BadAction(BadAction::BadOutPort));
                }
            }
        }
        // Run by PMD thread 0 (the control thread has no tx queue).
        self.sw
            .packet_out_tx
            .try_send(PacketOutReq { bridge: self.index, in_port, actions: actions.to_vec(), data: data.to_vec() })
            .map_err(|_| OfpError::BadRequest(BadRequest::Eperm))
    }

    fn port_mod(&mut self, port_no: u32, config: u32, mask: u32) -> bool {
        if !self.sw.ports.iter().any(|p| p.bridge == self.bridge && p.ofport == port_no) {
            return false;
        }
        let c = self.config.entry(port_no).or_insert(0);
        *c = (*c & !mask) | (config & mask);
        true
    }
}

impl OpenFlow {
    /// Publishes each bridge's OpenFlow pipeline to the PMD threads when it
    /// changed (flows, groups, ports) or when OpenFlow starts or stops
    /// ruling the bridge: with fail_mode secure whenever it has
    /// controllers configured; standalone only while one is connected
    /// (NORMAL switching otherwise).
    /// Changes that answer nothing (a storm of flow-mods) are published at
    /// most every 10 ms (longer when publishing takes more than 5 ms); [`OpenFlow::sync_now`] publishes at once (before
    /// an answer goes out).
    pub fn sync(&mut self, sw: &mut Switch) {
        if self.last_publish.elapsed() >= Duration::from_millis(10).max(self.publish_cost * 2) {
            self.sync_now(sw);
        }
    }

    /// Publishes every bridge whose pipeline changed, now.
    pub fn sync_now(&mut self, sw: &mut Switch) {
        let start = Instant::now();
        self.sync_bridges(sw);
        self.publish_cost = start.elapsed();
    }

    fn sync_bridges(&mut self, sw: &mut Switch) {
        self.last_publish = Instant::now();
        self.pending = false;
        for bi in 0..self.bridges.len() {
            let b = &self.bridges[bi];
            if b.removed {
                continue;
            }
            let connected = b.agent.connections().next().is_some();
            let active = b.has_controllers && (b.fail_secure || connected);
            let state = (active, b.agent.generation, sw.port_epoch, b.link_epoch, b.agent.group_meter_generation);
            if b.published == Some(state) || (b.published.is_none() && !active) {
                continue;
            }
            // Only flows changed since the last publication (and the
            // datapath was active then): the PMD threads may keep the
            // megaflows these changes cannot affect.
            let only_flows =
                b.published.is_some_and(|p| p.0 && active && (p.2, p.3, p.4) == (state.2, state.3, state.4));
            let changes = self.bridges[bi].agent.tables.take_changes();
            let delta = changes.filter(|_| only_flows).map(|c| (self.bridges[bi].published_seq, Arc::from(c)));
            self.bridges[bi].published_seq += 1;
            let dp = active.then(|| {
                let mut dp = self.snapshot(bi, sw);
                dp.seq = self.bridges[bi].published_seq;
                dp.delta = delta;
                Arc::new(dp)
            });
            let name = self.bridges[bi].bridge.clone();
            sw.set_openflow(&name, dp);
            self.bridges[bi].published = Some(state);
        }
    }

    fn snapshot(&self, bi: usize, sw: &Switch) -> OfBridgeDp {
        let b = &self.bridges[bi];
        let ports: Vec<&crate::daemon::switch::SwitchPort> = sw.ports.iter().filter(|p| p.bridge == b.bridge).collect();
        let slots = sw.ports.iter().map(|p| p.slot + 1).max().unwrap_or(0);
        let mut slot_ofport = vec![0u32; slots];
        let mut ofport_slot = std::collections::BTreeMap::new();
        let mut tunnels = vec![0u8; slots];
        for p in &ports {
            slot_ofport[p.slot] = p.ofport;
            ofport_slot.insert(p.ofport, (p.slot, p.port.link().up));
            tunnels[p.slot] = p.port.tunnel_class();
        }
        // The uplinks accept the critical Geneve options any bridge maps.
        let known: Vec<(u16, u8)> = self
            .bridges
            .iter()
            .flat_map(|b| b.agent.tlv.entries.iter().flatten().map(|e| (e.class, e.opt_type)))
            .collect();
        sw.underlay.geneve_known.set(&known);
        OfBridgeDp {
            bridge: bi,
            tables: b.agent.tables.snapshot(),
            groups: b.agent.groups.clone(),
            meters: b.agent.meters.clone(),
            slot_ofport,
            ofport_slot,
            tunnels,
            tlv: b.agent.tlv.clone(),
            miss_send_len: b.agent.config.miss_send_len,
            to_controller: sw.to_controller_tx.clone(),
            counters: b.counters.clone(),
            pool: sw.pool(),
            epoch_ms: 0,
            seq: 0,
            delta: None,
            folder: b.agent.folder.clone(),
        }
    }

    /// Tells controllers about ports added and removed since last time
    /// (PORT_STATUS ADD / DELETE); call after run-time port changes.
    pub fn port_changes(&mut self, reg: &Registry, sw: &Switch) {
        for bi in 0..self.bridges.len() {
            let b = &mut self.bridges[bi];
            if b.removed {
                continue;
            }
            let now = port_infos(sw, &b.bridge, &b.port_config);
            let Some(before) = b.known_ports.replace(now.clone()) else { continue };
            let mut out = Vec::new();
            for p in now.iter().filter(|p| !before.iter().any(|q| q.port_no == p.port_no && q.name == p.name)) {
                out.extend(b.agent.port_status(0, p));
            }
            for p in before.iter().filter(|p| !now.iter().any(|q| q.port_no == p.port_no && q.name == p.name)) {
                out.extend(b.agent.port_status(1, p));
            }
            self.send(reg, out);
        }
    }

    /// Follows the links of the bridges' ports (call every 100-200 ms): a
    /// link that went up or down is announced to the controllers
    /// (PORT_STATUS MODIFY) and the pipeline is published again, so that
    /// fast-failover groups pick their buckets by the new liveness.
    pub fn link_changes(&mut self, reg: &Registry, sw: &Switch) {
        let mut out = Vec::new();
        for b in &mut self.bridges {
            let Some(known) = b.known_ports.as_mut() else { continue };
            for k in known.iter_mut() {
                let Some(p) = sw.ports.iter().find(|p| p.bridge == b.bridge && p.ofport == k.port_no) else { continue };
                let up = p.port.link().up;
                if up != k.link_up {
                    k.link_up = up;
                    out.extend(b.agent.port_status(2, k));
                    b.link_epoch += 1;
                    self.pending = true;
                }
            }
        }
        self.send(reg, out);
    }

    /// Whether any bridge's pipeline is OpenFlow now.
    pub fn any_active(&self) -> bool {
        self.bridges.iter().any(|b| b.published.is_some_and(|(active, ..)| active))
    }

    /// Sends the PMD threads' packet-ins to the controllers that want them.
    pub fn drain_packet_ins(&mut self, reg: &Registry, sw: &Switch) {
        for _ in 0..256 {
            let Ok(m) = sw.to_controller.try_recv() else { return };
            let Some(b) = self.bridges.get(m.bridge).filter(|b| !b.removed) else { continue };
            let mut match_ = ofproto::ofp::Match::any()
                .with(ofproto::ofp::Oxm::exact_u64(ofproto::ofp::Field::InPort, u64::from(m.in_port)));
            if m.metadata != 0 {
                match_ = match_.with(ofproto::ofp::Oxm::exact_u64(ofproto::ofp::Field::Metadata, m.metadata));
            }
            // A table-miss packet-in carries miss_send_len bytes.
            let mut data = m.data;
            if m.reason == 0 && b.agent.config.miss_send_len != 0xffff {
                data.truncate(usize::from(b.agent.config.miss_send_len));
            }
            let pi = ofproto::ofp::msg::PacketIn {
                buffer_id: ofproto::ofp::msg::NO_BUFFER,
                total_len: m.total_len,
                reason: m.reason,
                table_id: m.table_id,
                cookie: m.cookie,
                match_,
                data,
            };
            let out = b.agent.packet_in(&pi);
            self.send(reg, out);
        }
    }
}
