#!/usr/bin/env bash
# Host-to-host goodput through an impaired link, in one run on one topology: two namespaces
# joined through a third running `xia-impair` (the relay that replaces netem here), and through
# it XIA STREAM (`xia stream-send/recv`), XIA CHUNK (`xia chunk-serve/fetch`, 1 MiB chunks) and
# Linux TCP (iperf3, CUBIC), for each impairment and MTU. Prints every run, then the medians
# and the ratios to TCP as a Markdown table (for BENCHMARKS.md).
#
#   bench/impaired_goodput.sh                       # 3 runs of 128 MiB per figure
#   RUNS=5 BYTES=268435456 MTUS=1500 bench/impaired_goodput.sh
#   BIN=/elsewhere/target/release bench/impaired_goodput.sh   # another build's xiad and xia
#
# Needs root. The machine should be otherwise idle: every figure shares its two cores.
set -euo pipefail
RUNS=${RUNS:-3}
BYTES=${BYTES:-134217728}
MTUS=${MTUS:-"1500 9000"}
cd "$(dirname "$0")/.."
. testbed/lib.sh
. bench/lib.sh
testbed/deps.sh
cargo build --release -q -p xia-testbed --bin xia-impair
RELAY=$PWD/target/release/xia-impair
if [ -n "${BIN:-}" ]; then
  B=$BIN
else
  cargo build --release -q -p xia-core --bins
  B=$PWD/target/release
fi
AD=AD:$(printf 'ad%.0s' {1..20})
IMPAIRMENTS=(
  "clean|"
  "loss 2%, reorder 5%, duplicate 1%|--loss 0.02 --reorder 0.05 --duplicate 0.01"
  "loss 10%|--loss 0.10"
)

tag=ig$$
na=${tag}a nb=${tag}b nr=${tag}r
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "$na" "$nb" "$nr"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

for n in "$na" "$nb" "$nr"; do
  ip netns add "$n"
  ip -n "$n" link set lo up
done
ip link add va netns "$na" type veth peer name ra netns "$nr"
ip link add vb netns "$nb" type veth peer name rb netns "$nr"
ip -n "$na" addr add 10.78.0.1/24 dev va
ip -n "$nb" addr add 10.78.0.2/24 dev vb
# The relay copies frames one by one: no segmentation offloads on its path.
for pair in "$na va" "$nb vb" "$nr ra" "$nr rb"; do
  set -- $pair
  ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
  ip -n "$1" link set "$2" up
done

start_relay() { # ARGS...
  : >"$dir/relay.out"
  # shellcheck disable=SC2068
  ip netns exec "$nr" "$RELAY" --a ra --b rb --seed 7 $@ >"$dir/relay.out" 2>"$dir/relay.err" &
  pr=$!
  pids+=("$pr")
  await_line "$dir/relay.out" "xia-impair ready"
}

stop_relay() {
  kill "$pr" 2>/dev/null || true
  wait "$pr" 2>/dev/null || true
}

declare -A result
for mtu in $MTUS; do
  for dev in "$na va" "$nb vb" "$nr ra" "$nr rb"; do
    set -- $dev
    ip -n "$1" link set "$2" mtu "$mtu"
  done
  for imp in "${IMPAIRMENTS[@]}"; do
    name=${imp%%|*} args=${imp#*|}
    # shellcheck disable=SC2086
    start_relay $args
    tcp_runs "mtu $mtu, $name" 10.78.0.2 5400 tcp
    start_xiads
    stream_runs "mtu $mtu, $name" stream
    chunk_runs "mtu $mtu, $name" chunk
    stop_xiads
    stop_relay
    result[$mtu,$name,tcp]=$(printf '%s\n' "${tcp[@]}" | median)
    result[$mtu,$name,stream]=$(printf '%s\n' "${stream[@]}" | median)
    result[$mtu,$name,chunk]=$(printf '%s\n' "${chunk[@]}" | median)
  done
done

echo
echo "Medians of $RUNS runs of $BYTES bytes through xia-impair, $(nproc) CPUs, $(uname -r), $(date -u '+%F %H:%M') UTC"
echo
echo "| MTU | impairment | iperf3 TCP (Gbit/s) | XIA STREAM (Gbit/s) | STREAM / TCP | XIA CHUNK (Gbit/s) | CHUNK / TCP |"
echo "|---|---|---|---|---|---|---|"
for mtu in $MTUS; do
  for imp in "${IMPAIRMENTS[@]}"; do
    name=${imp%%|*}
    t=${result[$mtu,$name,tcp]} s=${result[$mtu,$name,stream]} c=${result[$mtu,$name,chunk]}
    awk -v m="$mtu" -v n="$name" -v t="$t" -v s="$s" -v c="$c" \
      'BEGIN { printf "| %s | %s | %s | %s | %.2f | %s | %.2f |\n", m, n, t, s, s / t, c, c / t }'
  done
done
