//! Text forms of matches, actions and instructions, close to what
//! `ovs-ofctl dump-flows` prints, for `vswitchctl dump-flows`.

use super::action::{port, Action, Instruction};
use super::oxm::{Field, Match, Oxm};
use std::fmt;

fn value(f: Field, v: &[u8]) -> String {
    match f {
        Field::EthDst | Field::EthSrc | Field::ArpSha | Field::ArpTha | Field::Ipv6NdSll | Field::Ipv6NdTll => {
            v.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
        }
        Field::Ipv4Src | Field::Ipv4Dst | Field::ArpSpa | Field::ArpTpa | Field::TunSrc | Field::TunDst => {
            v.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
        }
        Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6NdTarget | Field::TunIpv6Src | Field::TunIpv6Dst => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&v[..16]);
            std::net::Ipv6Addr::from(a).to_string()
        }
        Field::EthType | Field::Metadata | Field::TunnelId | Field::TunFlags => {
            format!("0x{:x}", v.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
        }
        _ if f.variable() => {
            let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "0x{}",
                match hex.trim_start_matches('0') {
                    "" => "0",
                    h => h,
                }
            )
        }
        _ => v.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)).to_string(),
    }
}

fn port_name(p: u32) -> String {
    match p {
        port::IN_PORT => "IN_PORT".into(),
        port::TABLE => "TABLE".into(),
        port::NORMAL => "NORMAL".into(),
        port::FLOOD => "FLOOD".into(),
        port::ALL => "ALL".into(),
        port::CONTROLLER => "CONTROLLER".into(),
        port::LOCAL => "LOCAL".into(),
        port::ANY => "ANY".into(),
        n => n.to_string(),
    }
}

impl fmt::Display for Oxm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.field.name(), value(self.field, self.value()))?;
        if let Some(m) = self.mask() {
            write!(f, "/{}", value(self.field, m))?;
        }
        Ok(())
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.fields.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Output { port: p, max_len } if *p == port::CONTROLLER => write!(f, "CONTROLLER:{max_len}"),
            Action::Output { port: p, .. } => write!(f, "output:{}", port_name(*p)),
            Action::CopyTtlOut => f.write_str("copy_ttl_out"),
            Action::CopyTtlIn => f.write_str("copy_ttl_in"),
            Action::SetMplsTtl(t) => write!(f, "set_mpls_ttl:{t}"),
            Action::DecMplsTtl => f.write_str("dec_mpls_ttl"),
            Action::PushVlan(e) => write!(f, "push_vlan:0x{e:04x}"),
            Action::PopVlan => f.write_str("pop_vlan"),
            Action::PushMpls(e) => write!(f, "push_mpls:0x{e:04x}"),
            Action::PopMpls(e) => write!(f, "pop_mpls:0x{e:04x}"),
            Action::SetQueue(q) => write!(f, "set_queue:{q}"),
            Action::Group(g) => write!(f, "group:{g}"),
            Action::SetNwTtl(t) => write!(f, "set_nw_ttl:{t}"),
            Action::DecNwTtl => f.write_str("dec_ttl"),
            Action::SetField(o) => write!(f, "set_field:{}->{}", value(o.field, o.value()), o.field.name()),
            Action::PushPbb(e) => write!(f, "push_pbb:0x{e:04x}"),
            Action::PopPbb => f.write_str("pop_pbb"),
        }
    }
}

fn list(a: &[Action]) -> String {
    a.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instruction::GotoTable(t) => write!(f, "goto_table:{t}"),
            Instruction::WriteMetadata { metadata, mask } => write!(f, "write_metadata:0x{metadata:x}/0x{mask:x}"),
            Instruction::WriteActions(a) => write!(f, "write_actions({})", list(a)),
            Instruction::ApplyActions(a) if a.is_empty() => f.write_str("drop"),
            Instruction::ApplyActions(a) => f.write_str(&list(a)),
            Instruction::ClearActions => f.write_str("clear_actions"),
            Instruction::Meter(m) => write!(f, "meter:{m}"),
        }
    }
}

/// Instructions as `actions=` text: apply-actions first, as ovs-ofctl
/// prints them; "drop" for none.
pub fn instructions_text(ins: &[Instruction]) -> String {
    if ins.is_empty() {
        return "drop".into();
    }
    let mut v: Vec<&Instruction> = ins.iter().collect();
    v.sort_by_key(|i| i.exec_rank());
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        let m = Match::any()
            .with(Oxm::exact_u64(Field::InPort, 1))
            .with(Oxm::exact_u64(Field::EthType, 0x0800))
            .with(Oxm::masked(Field::Ipv4Dst, &[10, 1, 0, 0], &[255, 255, 0, 0]));
        assert_eq!(m.to_string(), "in_port=1,eth_type=0x800,ipv4_dst=10.1.0.0/255.255.0.0");
        let ins = vec![
            Instruction::GotoTable(2),
            Instruction::ApplyActions(vec![Action::Output { port: port::NORMAL, max_len: 0 }, Action::DecNwTtl]),
        ];
        assert_eq!(instructions_text(&ins), "output:NORMAL,dec_ttl,goto_table:2");
        assert_eq!(instructions_text(&[]), "drop");
    }
}
