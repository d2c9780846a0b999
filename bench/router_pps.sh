#!/usr/bin/env bash
# Packets per second through xia-router, and through Linux IPv4 forwarding, on the same
# topology in the same run: sender ns -> router ns -> receiver ns, two veths (MTU 1500).
#
# `xia-pktgen` in the sender sends one frame over and over for SECS seconds to the router's MAC;
# the figure is what arrives at the receiver's veth (its rx_packets counter) per second. XIP
# DAGs whose first usable entry edge is the 1st (0 fallbacks), 2nd (1) or 4th (3); the router
# has a static route to the known AD and no entry for the others. Frames: the smallest each DAG
# allows, and 1514 bytes. The kernel baseline: IPv4/UDP, 60 and 1514 bytes, ip_forward on,
# with xia-router stopped (its sockets would see the frames too).
#
#   bench/router_pps.sh                  # 5 runs of 3 s per figure
#   RUNS=3 SECS=2 bench/router_pps.sh
#
# Needs root; the machine should be otherwise idle (sender, router and receiver share its cores).
set -euo pipefail
RUNS=${RUNS:-5}
SECS=${SECS:-3}
cd "$(dirname "$0")/.."
. testbed/lib.sh
testbed/deps.sh
cargo build --release -q -p xia-router -p xia-testbed --bins
B=$PWD/target/release

tag=rp$$
ns_s=${tag}s ns_r=${tag}r ns_d=${tag}d
dir=$(mktemp -d)
router_pid=
cleanup() {
  [ -n "$router_pid" ] && kill "$router_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  for n in "$ns_s" "$ns_r" "$ns_d"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

for n in "$ns_s" "$ns_r" "$ns_d"; do
  ip netns add "$n"
  ip -n "$n" link set lo up
done
ip link add s0 netns "$ns_s" type veth peer name r0 netns "$ns_r"
ip link add r1 netns "$ns_r" type veth peer name d0 netns "$ns_d"
for x in "$ns_s s0" "$ns_r r0" "$ns_r r1" "$ns_d d0"; do
  set -- $x
  ip -n "$1" link set "$2" mtu 1500 up
done
mac() { ip netns exec "$1" cat "/sys/class/net/$2/address"; }
r0_mac=$(mac "$ns_r" r0)
d0_mac=$(mac "$ns_d" d0)
rx() { ip netns exec "$ns_d" cat /sys/class/net/d0/statistics/rx_packets; }

hex() { printf "$1%.0s" {1..20}; }
X=AD:$(hex 0a) U1=AD:$(hex 01) U2=AD:$(hex 02) U3=AD:$(hex 03) H=HID:$(hex 0b) S=SID:$(hex 0c)
echo "$X via r1 $d0_mac" >"$dir/routes"
ip netns exec "$ns_r" "$B/xia-router" --admin "$dir/r.sock" run -p r0 -p r1 \
  --ad-key "$dir/ad.key" -k "$dir/r.key" --routes "$dir/routes" --beacon-ms 1000 \
  >"$dir/r.out" 2>"$dir/r.log" &
router_pid=$!
await_line "$dir/r.out" "xia-router ready" "$router_pid"

# CPU time of the router process so far, in clock ticks (user + system).
cpu() { [ -n "$router_pid" ] && awk '{ print $14 + $15 }' "/proc/$router_pid/stat" || echo 0; }
TCK=$(getconf CLK_TCK)
# Busy CPU time of the whole machine so far, in clock ticks (user, nice, system, irq, softirq).
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# One measurement: prints packets per second arriving at the receiver, the router's CPU time
# per forwarded packet in ns (0 without the router), and the whole machine's (sender, forwarder
# and receiver together: what compares the two forwarders when the sender limits both).
measure() { # measure PKTGEN-ARGS...
  local before after out secs c0 c1 b0 b1
  before=$(rx)
  c0=$(cpu)
  b0=$(busy)
  out=$(ip netns exec "$ns_s" "$B/xia-pktgen" -i s0 --dst-mac "$r0_mac" --seconds "$SECS" "$@")
  c1=$(cpu)
  b1=$(busy)
  after=$(rx)
  echo "  offered: $out" >&2
  secs=$(echo "$out" | sed -n 's/.* in \([0-9.]*\) s:.*/\1/p')
  echo "$after $before $secs $c0 $c1 $TCK $b0 $b1" |
    awk '{ n = $1 - $2; printf "%.0f %.0f %.0f\n", n / $3, (n > 0 ? ($5 - $4) / $6 * 1e9 / n : 0), (n > 0 ? ($8 - $7) / $6 * 1e9 / n : 0) }'
}

declare -A result cost total
run() { # run NAME PKTGEN-ARGS...
  local name=$1
  shift
  local pps=() ns=() all=() m
  for i in $(seq 1 "$RUNS"); do
    read -r -a m <<<"$(measure "$@")"
    pps+=("${m[0]}")
    ns+=("${m[1]}")
    all+=("${m[2]}")
    echo "$name run $i: ${m[0]} pps, router CPU ${m[1]} ns/packet, machine CPU ${m[2]} ns/packet" >&2
  done
  result[$name]=$(printf '%s\n' "${pps[@]}" | median)
  cost[$name]=$(printf '%s\n' "${ns[@]}" | median)
  total[$name]=$(printf '%s\n' "${all[@]}" | median)
}

DAG0="RE $X $H $S"
DAG1="RE ( $X ) $U1 $H $S"
DAG3="DAG 0 1 2 3 - $U1 4 - $U2 4 - $U3 4 - $X 4 - $H 5 - $S"
for size in small 1514; do
  sz=()
  [ "$size" = 1514 ] && sz=(--size 1514)
  run "xip0-$size" --dag "$DAG0" "${sz[@]}"
  run "xip1-$size" --dag "$DAG1" "${sz[@]}"
  run "xip3-$size" --dag "$DAG3" "${sz[@]}"
done
ip netns exec "$ns_r" "$B/xia-router" --admin "$dir/r.sock" stats >"$dir/r.stats"
kill "$router_pid"
wait "$router_pid" 2>/dev/null || true
router_pid=

# Linux IPv4 forwarding through the same namespace.
ip -n "$ns_s" addr add 10.88.1.2/24 dev s0
ip -n "$ns_r" addr add 10.88.1.1/24 dev r0
ip -n "$ns_r" addr add 10.88.2.1/24 dev r1
ip -n "$ns_d" addr add 10.88.2.2/24 dev d0
ip netns exec "$ns_r" sysctl -qw net.ipv4.ip_forward=1
ip -n "$ns_r" neigh replace 10.88.2.2 lladdr "$d0_mac" dev r1 nud permanent
run ipv4-small --ipv4 10.88.1.2,10.88.2.2
run ipv4-1514 --ipv4 10.88.1.2,10.88.2.2 --size 1514

echo
echo "router: $(grep -E '^(forwarded|drop_unreachable|drop_malformed) ' "$dir/r.stats" | tr '\n' ' ')"
echo "Medians of $RUNS runs of ${SECS} s, $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%d)"
echo
echo "| frame | xia-router (pps) | Linux IPv4 (pps) | pps ratio | router CPU/packet (ns) | one router core (pps) | machine CPU/packet, XIA (ns) | machine CPU/packet, Linux (ns) |"
echo "|---|---|---|---|---|---|---|---|"
for size in small 1514; do
  k=${result[ipv4-$size]}
  kt=${total[ipv4-$size]}
  for f in 0 1 3; do
    v=${result[xip$f-$size]}
    c=${cost[xip$f-$size]}
    t=${total[xip$f-$size]}
    echo "| $size, $f fallbacks | $v | $k | $(echo "$v $k" | awk '{ printf "%.2f", $1 / $2 }') | $c | $(echo "$c" | awk '{ printf "%.0f", ($1 > 0 ? 1e9 / $1 : 0) }') | $t | $kt |"
  done
done
for size in small 1514; do
  echo "3 fallbacks / 0 fallbacks, $size frames: router CPU per packet ratio $(echo "${cost[xip3-$size]} ${cost[xip0-$size]}" | awk '{ printf "%.2f", $1 / $2 }')x"
done
