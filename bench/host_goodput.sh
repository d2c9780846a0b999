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

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
gbps_of() { grep -o '[0-9.]* Gbit/s' | head -1 | cut -d' ' -f1; }


# Waits until a TCP listener on PORT exists in namespace NS (iperf3 -D returns before it listens).
await_listen() {
  for _ in $(seq 1 200); do
    [ -n "$(ip netns exec "$1" ss -Hltn "sport = :$2")" ] && return 0
    sleep 0.05
  done
  echo "nothing listens on port $2 in $1" >&2
  return 1
}

start_xiads() {
  rm -f "$dir"/*.sock
  ip netns exec "$na" "$B/xiad" -q -i va -s "$dir/a.sock" -k "$dir/a.key" --ad "$AD" >"$dir/a.out" 2>"$dir/a.err" &
  pa=$!
  ip netns exec "$nb" "$B/xiad" -q -i vb -s "$dir/b.sock" -k "$dir/b.key" --ad "$AD" >"$dir/b.out" 2>"$dir/b.err" &
  pb=$!
  pids+=("$pa" "$pb")
  await_line "$dir/a.out" "xiad ready"
  await_line "$dir/b.out" "xiad ready"
}

stop_xiads() {
  kill "$pa" "$pb" 2>/dev/null || true
  wait "$pa" "$pb" 2>/dev/null || true
}

declare -A result
for mtu in $MTUS; do
  ip -n "$na" link set va mtu "$mtu"
  ip -n "$nb" link set vb mtu "$mtu"

  # Linux TCP over the same veth.
  tcp=()
  for i in $(seq 1 "$RUNS"); do
    ip netns exec "$nb" iperf3 -s -1 -D -p $((5300 + i)) >/dev/null 2>&1
    await_listen "$nb" $((5300 + i))
    g=$(ip netns exec "$na" iperf3 -c 10.77.0.2 -p $((5300 + i)) -n "$BYTES" -J |
      python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    echo "mtu $mtu run $i iperf3 TCP: $g Gbit/s"
    tcp+=("$g")
  done

  start_xiads
  stream=()
  for i in $(seq 1 "$RUNS"); do
    : >"$dir/recv.out"
    ip netns exec "$nb" "$B/xia" --socket "$dir/b.sock" stream-recv --no-sha >"$dir/recv.out" 2>&1 &
    pr=$!
    await_line "$dir/recv.out" "^listening "
    dag=$(sed -n 's/^listening //p' "$dir/recv.out")
    # shellcheck disable=SC2086
    ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" stream-send --no-sha --bytes "$BYTES" $dag >/dev/null
    wait "$pr"
    g=$(grep '^received' "$dir/recv.out" | gbps_of)
    echo "mtu $mtu run $i XIA STREAM: $g Gbit/s"
    stream+=("$g")
  done

  ip netns exec "$nb" "$B/xia" --socket "$dir/b.sock" chunk-serve --bytes "$BYTES" --chunk-size 1048576 \
    --manifest "$dir/manifest" >"$dir/serve.out" 2>&1 &
  pids+=("$!")
  await_line "$dir/serve.out" "^sha256 "
  chunk=()
  for i in $(seq 1 "$RUNS"); do
    g=$(ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" chunk-fetch --no-sha "$dir/manifest" | gbps_of)
    echo "mtu $mtu run $i XIA CHUNK: $g Gbit/s"
    chunk+=("$g")
  done
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
