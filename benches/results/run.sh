#!/usr/bin/env bash
# The figures kept in benches/results/, one run after the other (about 50
# minutes on a 2-core host): zero-loss p2p, l2 and of-3table at 1 to 1M flows
# against testpmd and OVS-DPDK, VXLAN both ways and each way alone against
# OVS-DPDK's userspace tunnelling, the A/B against the build before the layout
# split, a 10-minute soak, and the charts. Run from the repository root after
# `cargo build --release -p benches -p vswitch`; BASE names the build to A/B.
set -u
cd "$(dirname "$0")/../.."
B=./target/release/vswitch-bench
R=benches/results
run() { echo "=== $(date +%T) $*"; "$@" 2>&1 | grep --line-buffered -vE "^(EAL|TELEMETRY):"; echo "=== $(date +%T)"; }
run $B compare --scenario p2p --rounds 3 --seconds 3 --zero-loss --json $R/p2p.json
run $B compare --scenario l2 --macs 1000 --rounds 3 --seconds 3 --zero-loss --json $R/l2.json
run $B compare --scenario of-3table --flows 1,1000,100000 --rounds 2 --seconds 3 --zero-loss --json $R/of-3table.json
run $B compare --scenario of-3table --flows 1000000 --rounds 1 --json $R/of-3table-1M.json
run $B compare --scenario of-3table --flows 1000000 --transport vhost --rounds 1 --json $R/of-3table-1M-vhost.json
run $B compare --scenario p2p --forwarders vswitch,testpmd --baseline-vswitchd "${BASE:-/tmp/base/vswitchd}" --rounds 5 --seconds 3 --latency-seconds 0 --json $R/ab-p2p.json
run $B compare --scenario of-3table --flows 1,100000 --forwarders vswitch,testpmd --baseline-vswitchd "${BASE:-/tmp/base/vswitchd}" --rounds 3 --seconds 3 --latency-seconds 0 --json $R/ab-of-3table.json
run $B compare --scenario vxlan --flows 1,100000 --rounds 3 --seconds 3 --zero-loss --json $R/vxlan.json
run $B compare --scenario vxlan --tunnel-direction encap --flows 1000 --rounds 3 --seconds 3 --json $R/vxlan-encap.json
run $B compare --scenario vxlan --tunnel-direction decap --flows 1000 --rounds 3 --seconds 3 --json $R/vxlan-decap.json
run $B compare --scenario geneve --flows 1000 --rounds 3 --seconds 3 --latency-seconds 0 --json $R/geneve.json
run $B compare --scenario gre --flows 1000 --rounds 3 --seconds 3 --latency-seconds 0 --json $R/gre.json
run $B compare --scenario vxlan --flows 1000 --rounds 3 --seconds 3 --latency-seconds 0 --json $R/vxlan-1000.json
run $B compare --scenario vxlan --flows 100000 --remotes 10000 --rounds 2 --seconds 3 --json $R/vxlan-10k-remotes.json
run $B soak --minutes 10 --json $R/soak-10min.json
run $B plot --out $R/of-3table $R/of-3table.json $R/of-3table-1M.json
echo ALL-DONE
