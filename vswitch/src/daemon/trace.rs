//! `vswitchctl trace BRIDGE FLOW` (the `ovs-appctl ofproto/trace` of this
//! switch): a flow written as `ovs-ofctl` writes one, or a real packet's
//! bytes, walked through the bridge's OpenFlow tables as the datapath's
//! upcall walks them ([`ofproto::trace`]), with the MAC table's decision
//! where the packet goes to NORMAL; on a bridge without OpenFlow, that
//! decision alone.

use super::openflow::OpenFlow;
use super::switch::Switch;
use crate::datapath::l2::{L2Bridge, PortVlan};
use config::rpc::{Request, RpcError};
use ofproto::flow::FlowKey;
use ofproto::ofp::oxm::{Field, VID_PRESENT};
use ofproto::trace::{key_string, parse_flow, trace, TraceEvent};
use serde_json::{json, Value};

/// The `trace` method: `bridge`, and either `flow` (text) or `packet`
/// (hex) with `in_port` (an OpenFlow port number or a port's name). In a
/// flow, `in_port` may name a port too.
pub fn rpc(sw: &Switch, of: &OpenFlow, req: &Request) -> Result<Value, RpcError> {
    use super::control::param_str;
    let invalid = |m: String| RpcError::new(RpcError::INVALID_PARAMS, m);
    let refused = |m: String| RpcError::new(RpcError::REFUSED, m);
    let bridge = param_str(req, "bridge")?.ok_or_else(|| invalid("`trace` needs `bridge`".into()))?;
    let b = sw.bridges.iter().find(|b| b.name == bridge).ok_or_else(|| refused(format!("no bridge `{bridge}`")))?;
    // A port of this bridge by name or OpenFlow number.
    let ofport = |p: &str| -> Result<u32, RpcError> {
        let by_name = sw.ports.iter().find(|q| q.bridge == bridge && q.name == p).map(|q| q.ofport);
        by_name.or_else(|| p.parse().ok()).ok_or_else(|| refused(format!("bridge `{bridge}` has no port `{p}`")))
    };
    let key = match (param_str(req, "flow")?, param_str(req, "packet")?) {
        (Some(flow), None) => {
            // in_port=NAME becomes its number.
            let mut parts = Vec::new();
            for p in flow.split(',') {
                match p.trim().split_once('=') {
                    Some(("in_port", v)) => parts.push(format!("in_port={}", ofport(v.trim())?)),
                    _ => parts.push(p.to_string()),
                }
            }
            parse_flow(&parts.join(",")).map_err(|e| invalid(format!("flow: {e}")))?
        }
        (None, Some(hex)) => {
            let bytes = from_hex(hex).map_err(|e| invalid(format!("packet: {e}")))?;
            if bytes.len() < 14 {
                return Err(invalid(format!("packet: {} bytes is shorter than an Ethernet header", bytes.len())));
            }
            let port = param_str(req, "in_port")?.ok_or_else(|| invalid("a packet needs `in_port`".into()))?;
            FlowKey::extract(&bytes, ofport(port)?)
        }
        _ => return Err(invalid("`trace` needs either `flow` or `packet`".into())),
    };
    match of.bridge(bridge).filter(|o| o.has_controllers) {
        Some(ob) => Ok(openflow_json(sw, bridge, &b.l2, &ob.agent.tables, &key)),
        None => Ok(normal_json(sw, bridge, &b.l2, &key)),
    }
}

fn openflow_json(sw: &Switch, bridge: &str, l2: &L2Bridge, tables: &ofproto::table::Tables, key: &FlowKey) -> Value {
    let t = trace(tables, key);
    let steps: Vec<Value> = t
        .events
        .iter()
        .map(|e| match e {
            TraceEvent::Lookup { table, entry: Some(m) } => json!({"table": table, "priority": m.priority,
                "match": m.match_, "cookie": format!("0x{:x}", m.cookie), "instructions": m.instructions}),
            TraceEvent::Lookup { table, entry: None } => json!({"table": table, "miss": true}),
            TraceEvent::Actions { actions, changed } => json!({"actions": actions, "changed": changed}),
            TraceEvent::Metadata(m) => json!({"metadata": format!("0x{m:x}")}),
            TraceEvent::Meter(m) => json!({"meter": m}),
        })
        .collect();
    let mut text = format!("bridge(\"{bridge}\")\n{t}");
    let mut v = json!({"bridge": bridge, "pipeline": "openflow", "flow": key_string(key), "steps": steps,
           "final_flow": key_string(&t.final_key), "megaflow": t.megaflow(), "actions": t.actions(),
           "cacheable": t.translation.cacheable});
    // As OVS's trace does: where the decision hands the packet to NORMAL,
    // what the MAC table does with it (the key as the actions left it).
    let normal = t.translation.steps.iter().any(|s| {
        matches!(s, ofproto::xlate::Step::Apply { acts, .. }
            if acts.iter().any(|a| matches!(a, ofproto::ofp::Action::Output { port: ofproto::ofp::action::port::NORMAL, .. })))
    });
    if normal {
        let n = l2_decision(sw, bridge, l2, &t.final_key);
        text.push_str(&format!("\nNORMAL: VLAN {}: {}", n.vlan, n.decision));
        v["normal"] = json!({"vlan": n.vlan, "output": n.output, "decision": n.decision});
    }
    v["text"] = json!(text);
    v
}

/// What L2 switching (NORMAL) does with a frame.
struct L2Decision {
    vlan: u16,
    /// The port it leaves by (None: flooded).
    output: Option<String>,
    decision: String,
}

/// The MAC table's decision for a frame whose key is `key`: its VLAN (the
/// input port's access VLAN, or its tag), then the port its destination
/// was learned on, or a flood.
fn l2_decision(sw: &Switch, bridge: &str, l2: &L2Bridge, key: &FlowKey) -> L2Decision {
    let in_port = key.get_u64(Field::InPort).unwrap_or(0);
    let port = sw.ports.iter().find(|p| p.bridge == bridge && u64::from(p.ofport) == in_port);
    let tag = key
        .get_u64(Field::VlanVid)
        .filter(|v| v & u64::from(VID_PRESENT) != 0)
        .map(|v| u16::try_from(v & 0xfff).unwrap_or(0));
    let vlan = match port.map(|p| &p.vlan) {
        Some(PortVlan::Access(v)) => *v,
        _ => tag.unwrap_or(0),
    };
    let mut dst = [0u8; 6];
    dst.copy_from_slice(key.get(Field::EthDst).unwrap_or(&[0; 6]));
    let dst = wire::EthernetAddress(dst);
    let (decision, output) = if dst.0[0] & 1 != 0 {
        ("flood: broadcast or multicast".to_string(), None)
    } else {
        match l2.table.lookup(vlan, dst) {
            Some(slot) => {
                let name = sw.port_by_slot(slot).map_or("?", |p| p.name.as_str());
                (format!("output to {name}: {dst} was learned there"), Some(name.to_string()))
            }
            None => (format!("flood: {dst} is not learned on VLAN {vlan}"), None),
        }
    };
    L2Decision { vlan, output, decision }
}

/// A bridge without OpenFlow switches by its MAC table.
fn normal_json(sw: &Switch, bridge: &str, l2: &L2Bridge, key: &FlowKey) -> Value {
    let n = l2_decision(sw, bridge, l2, key);
    let text = format!(
        "bridge(\"{bridge}\"): MAC learning (NORMAL), no OpenFlow controllers\nFlow: {}\nVLAN {}: {}",
        key_string(key),
        n.vlan,
        n.decision
    );
    json!({"bridge": bridge, "pipeline": "normal", "flow": key_string(key), "vlan": n.vlan, "output": n.output,
           "decision": n.decision, "text": text})
}

/// Bytes written as hex (spaces, colons and a 0x prefix allowed).
fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim().trim_start_matches("0x");
    let digits: String = s.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
    if !digits.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| format!("`{}` is not hex", &digits[i..i + 2])))
        .collect()
}
