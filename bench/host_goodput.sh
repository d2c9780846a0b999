#!/usr/bin/env bash
# Host-to-host goodput over one veth between two network namespaces, in one run on one veth:
# XIA STREAM (xiad + `xia stream-send/recv`), XIA CHUNK (`xia chunk-serve/fetch`, 1 MiB chunks)
# and Linux TCP (iperf3), at MTU 1500 and 9000. Prints every run, then the medians and the
# ratios to iperf3 as a Markdown table (for BENCHMARKS.md).
#
#   bench/host_goodput.sh                 # 5 runs of 1 GiB per figure
#   RUNS=3 BYTES=536870912 bench/host_goodput.sh
#   BIN=/elsewhere/target/release bench/host_goodput.sh   # binaries built elsewhere (another
#                                         # version, for a before/after comparison)
#
# Needs root. The machine should be otherwise idle: every figure shares its two cores.
set -euo pipefail
RUNS=${RUNS:-5}
BYTES=${BYTES:-1073741824}
MTUS=${MTUS:-"1500 9000"}
cd "$(dirname "$0")/.."
. testbed/lib.sh
. bench/lib.sh
testbed/deps.sh
if [ -n "${BIN:-}" ]; then
  B=$BIN
else
  cargo build --release -q -p xia-core --bins
  B=$PWD/target/release
fi
AD=AD:$(printf 'ad%.0s' {1..20})

tag=gp$$
na=${tag}a nb=${tag}b
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$na" 2>/dev/null || true
  ip netns del "$nb" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$na"
ip netns add "$nb"
ip link add va netns "$na" type veth peer name vb netns "$nb"
for n in "$na" "$nb"; do ip -n "$n" link set lo up; done
ip -n "$na" addr add 10.77.0.1/24 dev va
ip -n "$nb" addr add 10.77.0.2/24 dev vb
ip -n "$na" link set va up
ip -n "$nb" link set vb up

declare -A result
for mtu in $MTUS; do
  ip -n "$na" link set va mtu "$mtu"
  ip -n "$nb" link set vb mtu "$mtu"

  # Linux TCP over the same veth, then STREAM and CHUNK between two xiads.
  tcp_runs "mtu $mtu" 10.77.0.2 5300 tcp
  start_xiads
  stream_runs "mtu $mtu" stream
  chunk_runs "mtu $mtu" chunk
  stop_xiads

  result[$mtu,tcp]=$(printf '%s\n' "${tcp[@]}" | median)
  result[$mtu,stream]=$(printf '%s\n' "${stream[@]}" | median)
  result[$mtu,chunk]=$(printf '%s\n' "${chunk[@]}" | median)
done

echo
echo "Medians of $RUNS runs of $BYTES bytes, $(nproc) CPUs, $(uname -r), $(date -u +%F)"
echo
echo "| MTU | iperf3 TCP (Gbit/s) | XIA STREAM (Gbit/s) | STREAM / TCP | XIA CHUNK (Gbit/s) | CHUNK / TCP |"
echo "|---|---|---|---|---|---|"
for mtu in $MTUS; do
  t=${result[$mtu,tcp]} s=${result[$mtu,stream]} c=${result[$mtu,chunk]}
  awk -v m="$mtu" -v t="$t" -v s="$s" -v c="$c" 'BEGIN { printf "| %s | %s | %s | %.2f | %s | %.2f |\n", m, t, s, s / t, c, c / t }'
done
