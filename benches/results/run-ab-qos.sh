#!/usr/bin/env bash
# A/B of the unshaped paths: this build against the one before the shaping
# work (13bc407, built into /tmp/basewt), in one run each: p2p, l2 and
# of-3table at 1,000 flows. Run from the repository root.
set -u
cd "$(dirname "$0")/../.."
B=./target/release/vswitch-bench
R=benches/results
BASE=${BASE:-/tmp/basewt/target/release/vswitchd}
run() { echo "=== $(date +%T) $*"; "$@" 2>&1 | grep --line-buffered -vE "^(EAL|TELEMETRY):"; echo "=== $(date +%T)"; }
run $B compare --scenario p2p --forwarders vswitch,testpmd --baseline-vswitchd "$BASE" --rounds 5 --seconds 3 --latency-seconds 0 --json $R/ab-qos-p2p.json
run $B compare --scenario l2 --macs 1000 --forwarders vswitch,testpmd --baseline-vswitchd "$BASE" --rounds 5 --seconds 3 --latency-seconds 0 --json $R/ab-qos-l2.json
run $B compare --scenario of-3table --flows 1000 --forwarders vswitch,testpmd --baseline-vswitchd "$BASE" --rounds 5 --seconds 3 --latency-seconds 0 --json $R/ab-qos-of-3table.json
echo ALL-DONE
