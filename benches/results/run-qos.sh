#!/usr/bin/env bash
# The QoS figures kept in benches/results/ (about 20 minutes on a 2-core
# host): the scheduler's cost at 1, 1,000 and 4,096 classes (all with
# traffic, and half idle) against ours unshaped, testpmd and OVS-DPDK in the
# same run; rate accuracy at 64 and 1518 bytes against OVS-DPDK's
# egress-policer and Linux HTB on a veth pair. Run from the repository root
# after `cargo build --release -p benches -p vswitch`.
set -u
cd "$(dirname "$0")/../.."
B=./target/release/vswitch-bench
R=benches/results
run() { echo "=== $(date +%T) $*"; "$@" 2>&1 | grep --line-buffered -vE "^(EAL|TELEMETRY):"; echo "=== $(date +%T)"; }
ALL=vswitch,vswitch-unshaped,testpmd,ovs-dpdk
run $B compare --scenario qos --classes 1 --flows 4096 --forwarders $ALL --rounds 5 --seconds 3 --json $R/qos-1.json
run $B compare --scenario qos --classes 1000 --flows 4096 --forwarders $ALL --rounds 5 --seconds 3 --json $R/qos-1000.json
run $B compare --scenario qos --classes 4096 --flows 4096 --forwarders $ALL --rounds 5 --seconds 3 --json $R/qos-4096.json
run $B compare --scenario qos --classes 4096 --idle-half --flows 4096 --forwarders $ALL --rounds 5 --seconds 3 --json $R/qos-4096-half.json
run $B compare --scenario qos --classes 1 --flows 1000 --frame-size 64 --qos-rate 50000000 --forwarders vswitch,ovs-dpdk --rounds 3 --seconds 5 --latency-seconds 0 --json $R/qos-accuracy-64.json
run $B compare --scenario qos --classes 1 --flows 1000 --frame-size 1518 --qos-rate 500000000 --forwarders vswitch,ovs-dpdk --rounds 3 --seconds 5 --latency-seconds 0 --json $R/qos-accuracy-1518.json
run $B compare --scenario qos --classes 1000 --flows 4096 --frame-size 64 --qos-rate 50000000 --forwarders vswitch --rounds 3 --seconds 5 --latency-seconds 0 --json $R/qos-accuracy-64-1000classes.json
echo ALL-DONE
