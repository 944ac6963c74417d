"""A MAC-learning switch for os-ken, with controller roles (vswitchd's tests).

Run: osken-manager --ofp-tcp-listen-port PORT learning_switch.py

Environment:
  LS_ROLE      master | slave: the role asked for when a switch connects.
  LS_COOKIE    cookie of the flows this instance installs (tells whose they are).
  LS_TAKEOVER  a file: when it appears, this instance asks to become master
               with a higher generation id, clears the flow table and
               starts learning afresh (what a standby does when told the
               master is gone).

Learns source MACs from packet-ins, floods unknown destinations with
packet-out, and installs in_port/eth_src/eth_dst flows once both ends are
known. Prints one line per event on stdout: "role MASTER gen 1",
"error type 1 code 0" (OpenFlow errors from the switch), "packet_in ...",
"flow ..." (flows it installs).
"""
import os

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.lib.packet import ethernet, packet
from os_ken.ofproto import ofproto_v1_3


def say(*words):
    print(*words, flush=True)


class LearningSwitch(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.role = os.environ.get("LS_ROLE", "master")
        self.cookie = int(os.environ.get("LS_COOKIE", "1"), 0)
        self.takeover = os.environ.get("LS_TAKEOVER")
        self.generation = 1
        self.macs = {}
        self.dp = None
        if self.takeover:
            hub.spawn(self._wait_for_takeover)

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev):
        self.dp = ev.msg.datapath
        say("connected dpid", self.dp.id)
        self._ask_role()
        # A slave's flow-mod is refused (IS_SLAVE): that is part of the test.
        self._start_over()

    def _ask_role(self):
        ofp, parser = self.dp.ofproto, self.dp.ofproto_parser
        role = ofp.OFPCR_ROLE_MASTER if self.role == "master" else ofp.OFPCR_ROLE_SLAVE
        self.dp.send_msg(parser.OFPRoleRequest(self.dp, role, self.generation))

    def _start_over(self):
        ofp, parser = self.dp.ofproto, self.dp.ofproto_parser
        self.macs = {}
        self.dp.send_msg(
            parser.OFPFlowMod(
                self.dp,
                table_id=ofp.OFPTT_ALL,
                command=ofp.OFPFC_DELETE,
                out_port=ofp.OFPP_ANY,
                out_group=ofp.OFPG_ANY,
            )
        )
        self._add_flow(0, parser.OFPMatch(), [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)])
        self.dp.send_msg(parser.OFPBarrierRequest(self.dp))

    def _add_flow(self, priority, match, actions):
        ofp, parser = self.dp.ofproto, self.dp.ofproto_parser
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        self.dp.send_msg(
            parser.OFPFlowMod(self.dp, cookie=self.cookie, priority=priority, match=match, instructions=inst)
        )
        say("flow", priority, match)

    def _wait_for_takeover(self):
        while not os.path.exists(self.takeover):
            hub.sleep(0.1)
        say("taking over")
        self.role = "master"
        self.generation += 1
        self._ask_role()
        self._start_over()

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def _role_reply(self, ev):
        ofp = ev.msg.datapath.ofproto
        names = {ofp.OFPCR_ROLE_MASTER: "MASTER", ofp.OFPCR_ROLE_SLAVE: "SLAVE", ofp.OFPCR_ROLE_EQUAL: "EQUAL"}
        say("role", names.get(ev.msg.role, ev.msg.role), "gen", ev.msg.generation_id)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        say("error type", ev.msg.type, "code", ev.msg.code)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        in_port = msg.match["in_port"]
        eth = packet.Packet(msg.data).get_protocol(ethernet.ethernet)
        if eth is None:
            return
        say("packet_in", in_port, eth.src, eth.dst)
        self.macs[eth.src] = in_port
        out = self.macs.get(eth.dst, ofp.OFPP_FLOOD)
        actions = [parser.OFPActionOutput(out)]
        if out != ofp.OFPP_FLOOD:
            self._add_flow(1, parser.OFPMatch(in_port=in_port, eth_src=eth.src, eth_dst=eth.dst), actions)
        data = msg.data if msg.buffer_id == ofp.OFP_NO_BUFFER else None
        dp.send_msg(
            parser.OFPPacketOut(datapath=dp, buffer_id=msg.buffer_id, in_port=in_port, actions=actions, data=data)
        )
