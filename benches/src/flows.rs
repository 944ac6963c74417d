//! The flow files the OpenFlow scenarios load into both switches with
//! `ovs-ofctl -O OpenFlow13 add-flows`.

use crate::forwarders::Setup;

/// The upcall scenario's flows (see [`Scenario::Upcall`]).
pub fn upcall_flows() -> String {
    let mut t = String::new();
    for p in 1..=2 {
        t.push_str(&format!("table=0,priority=10,in_port={p},actions=goto_table:1\n"));
    }
    // A MAC no generated flow has (theirs are 02:dir:00:f>>16:f>>8:f);
    // Ethernet addresses get no prefix tracking in OVS either, so both
    // switches examine all 48 bits and make one megaflow per source.
    t.push_str("table=1,priority=20,dl_src=02:ff:ff:ff:ff:ff,actions=drop\n");
    t.push_str("table=1,priority=0,actions=goto_table:2\n");
    t.push_str("table=2,priority=10,in_port=1,actions=output:2\ntable=2,priority=10,in_port=2,actions=output:1\n");
    t
}

/// The of-3table scenario's flows for `flows` generated flows per
/// direction (the generator's source IPs, [`crate::gen::flow_ip`]).
pub fn of_3table_flows(flows: u32) -> String {
    of_3table_flows_with(flows, |_| "dec_ttl,".into())
}

/// The of-3table shape with `extra(f)` among table 1's actions of flow f
/// of each direction (after the eth_dst rewrite, before the goto).
pub fn of_3table_flows_with(flows: u32, extra: impl Fn(u32) -> String) -> String {
    let mut t = String::new();
    for p in 1..=2 {
        t.push_str(&format!("table=0,priority=10,in_port={p},actions=goto_table:1\n"));
    }
    for d in 0..2u32 {
        for f in 0..flows.max(1) {
            let ip = crate::gen::flow_ip(d, f);
            t.push_str(&format!(
                "table=1,priority=10,ip,nw_src={}.{}.{}.{},actions=set_field:02:00:00:00:00:{:02x}->eth_dst,{}goto_table:2\n",
                ip >> 24,
                (ip >> 16) & 0xff,
                (ip >> 8) & 0xff,
                ip & 0xff,
                d + 1,
                extra(f)
            ));
        }
    }
    t.push_str("table=1,priority=0,actions=goto_table:2\n");
    t.push_str("table=2,priority=10,in_port=1,actions=output:2\ntable=2,priority=10,in_port=2,actions=output:1\n");
    t
}

/// Where the remote endpoints of a many-remotes tunnel scenario are:
/// beyond the generator's address, which routes to them.
pub const REMOTES_PREFIX: &str = "198.19.0.0/16";

/// Remote endpoint `r` (of up to 65,534) in [`REMOTES_PREFIX`].
pub fn remote_ip(r: u32) -> [u8; 4] {
    let h = r % 65_534 + 1;
    [198, 19, (h >> 8) as u8, h as u8]
}

/// The tunnel scenarios' flows with many remotes: each of the `flows`
/// inner destination MACs (the MACs of the generator's flows from the
/// tunnel, `02:01:00:f`) to remote `f % remotes` by `set_field:...->tun_dst`
/// out of the tunnel (OpenFlow port 2); everything from the tunnel to
/// port 1.
pub fn remote_flows(flows: u32, remotes: u32) -> String {
    let mut t = String::from("priority=10,in_port=2,actions=output:1\n");
    for f in 0..flows.max(1) {
        let r = remote_ip(f % remotes.max(1));
        t.push_str(&format!(
            "priority=10,in_port=1,dl_dst=02:01:00:{:02x}:{:02x}:{:02x},actions=set_field:{}.{}.{}.{}->tun_dst,output:2\n",
            (f >> 16) & 0xff,
            (f >> 8) & 0xff,
            f & 0xff,
            r[0],
            r[1],
            r[2],
            r[3]
        ));
    }
    t
}

/// vswitchd's route to the remotes when there are many (the generator is
/// their router), else nothing.
pub fn remote_route(s: &Setup) -> String {
    match s.flow_remotes() {
        true => format!(
            "\n[[route]]\nprefix = \"{REMOTES_PREFIX}\"\nvia = \"{}\"\n",
            std::net::Ipv4Addr::from(crate::gen::VXLAN_REMOTE)
        ),
        false => String::new(),
    }
}
