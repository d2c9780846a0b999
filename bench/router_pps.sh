#!/usr/bin/env bash
# Packets per second through xia-router, and through Linux IPv4 forwarding, on the same
# topology in the same run: sender ns -> router ns -> receiver ns, two veths (MTU 1500).
#
# `xia-pktgen` in the sender sends one frame over and over for SECS seconds to the router's MAC;
# the figure is what arrives at the receiver's veth (its rx_packets counter) per second. XIP
# DAGs whose first usable entry edge is the 1st (0 fallbacks), 2nd (1) or 4th (3); the router
# has a static route to the known AD and no entry for the others. Frames: the smallest each DAG
# allows, and 1514 bytes. Forwarders, one after the other:
#   - xia-router reading an AF_PACKET receive ring and sending with sendmmsg (the default);
#   - xia-router --xdp: packets of a DAG it has forwarded once are forwarded in the kernel at
#     the driver's hook; r0's NAPI runs in a kernel thread (`threaded`), so that the forwarding
#     runs on the core the sender does not use, and GRO on d0 lets a veth take XDP frames;
#   - Linux IPv4/UDP forwarding (ip_forward=1), 60 and 1514 bytes, with xia-router stopped;
#   - the same with r0's NAPI threaded as for XDP (GRO on r0 gives it NAPI): the same help.
# And the sender alone (frames into the router's namespace, nobody forwarding), which every
# forwarding figure includes: the machine's CPU per packet above it is what forwarding costs.
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
# Where arriving frames are counted: the receiver's veth (the sender-alone runs: the router's).
rx_ns=$ns_d rx_dev=d0
rx() { ip netns exec "$rx_ns" cat "/sys/class/net/$rx_dev/statistics/rx_packets"; }

hex() { printf "$1%.0s" {1..20}; }
X=AD:$(hex 0a) U1=AD:$(hex 01) U2=AD:$(hex 02) U3=AD:$(hex 03) H=HID:$(hex 0b) S=SID:$(hex 0c)
echo "$X via r1 $d0_mac" >"$dir/routes"
start_router() { # start_router [--xdp]
  ip netns exec "$ns_r" "$B/xia-router" --admin "$dir/r.sock" run -p r0 -p r1 \
    --ad-key "$dir/ad.key" -k "$dir/r.key" --routes "$dir/routes" --beacon-ms 1000 --cache-mib 0 "$@" \
    >"$dir/r.out" 2>"$dir/r.log" &
  router_pid=$!
  await_line "$dir/r.out" "xia-router ready" "$router_pid"
}
stop_router() {
  ip netns exec "$ns_r" "$B/xia-router" --admin "$dir/r.sock" stats >>"$dir/r.stats"
  kill "$router_pid"
  wait "$router_pid" 2>/dev/null || true
  router_pid=
}
threaded() { ip netns exec "$ns_r" sh -c "echo $1 > /sys/class/net/r0/threaded"; }
start_router

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
xip_runs() { # xip_runs PREFIX
  for size in small 1514; do
    sz=()
    [ "$size" = 1514 ] && sz=(--size 1514)
    run "${1}0-$size" --dag "$DAG0" "${sz[@]}"
    run "${1}1-$size" --dag "$DAG1" "${sz[@]}"
    run "${1}3-$size" --dag "$DAG3" "${sz[@]}"
  done
}
xip_runs xip
stop_router

start_router --xdp
threaded 1
ip netns exec "$ns_d" ethtool -K d0 gro on
xip_runs xdp
threaded 0
stop_router
ip netns exec "$ns_d" ethtool -K d0 gro off

# The sender alone: the same frames into the router's namespace, where nothing takes them
# (counted as they arrive on r0, then dropped: no socket wants them).
rx_ns=$ns_r rx_dev=r0
run alone-small --dag "$DAG0"
run alone-1514 --dag "$DAG0" --size 1514
rx_ns=$ns_d rx_dev=d0

# Linux IPv4 forwarding through the same namespace.
ip -n "$ns_s" addr add 10.88.1.2/24 dev s0
ip -n "$ns_r" addr add 10.88.1.1/24 dev r0
ip -n "$ns_r" addr add 10.88.2.1/24 dev r1
ip -n "$ns_d" addr add 10.88.2.2/24 dev d0
ip netns exec "$ns_r" sysctl -qw net.ipv4.ip_forward=1
ip -n "$ns_r" neigh replace 10.88.2.2 lladdr "$d0_mac" dev r1 nud permanent
run ipv4-small --ipv4 10.88.1.2,10.88.2.2
run ipv4-1514 --ipv4 10.88.1.2,10.88.2.2 --size 1514
ip netns exec "$ns_r" ethtool -K r0 gro on
threaded 1
run ipv4t-small --ipv4 10.88.1.2,10.88.2.2
run ipv4t-1514 --ipv4 10.88.1.2,10.88.2.2 --size 1514
threaded 0
ip netns exec "$ns_r" ethtool -K r0 gro off

echo
echo "router: $(grep -E '^(forwarded|xdp_forwarded|xdp_learned|drop_unreachable|drop_malformed) ' "$dir/r.stats" | tr '\n' ' ')"
echo "Medians of $RUNS runs of ${SECS} s, $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%d)"
echo
echo "Packets per second at the receiver:"
echo
echo "| frame | xia-router | xia-router --xdp | Linux IPv4 | Linux IPv4, NAPI threaded | --xdp / Linux threaded |"
echo "|---|---|---|---|---|---|"
for size in small 1514; do
  for f in 0 1 3; do
    echo "$size $f ${result[xip$f-$size]} ${result[xdp$f-$size]} ${result[ipv4-$size]} ${result[ipv4t-$size]}" |
      awk '{ printf "| %s, %s fallbacks | %s | %s | %s | %s | %.2f |\n", $1, $2, $3, $4, $5, $6, $4 / $6 }'
  done
done
echo
echo "The machine's CPU time per packet received (ns; sender, forwarder and receiver together), and"
echo "what forwarding adds to the sender alone (${total[alone-small]} ns small, ${total[alone-1514]} ns 1514 bytes):"
echo
echo "| frame | xia-router | xia-router --xdp | Linux IPv4 | Linux IPv4, threaded | forwarding: xia-router | --xdp | Linux | Linux, threaded | xia-router process CPU/packet |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for size in small 1514; do
  for f in 0 1 3; do
    echo "$size $f ${total[xip$f-$size]} ${total[xdp$f-$size]} ${total[ipv4-$size]} ${total[ipv4t-$size]} ${total[alone-$size]} ${cost[xip$f-$size]}" |
      awk '{ printf "| %s, %s fallbacks | %s | %s | %s | %s | %d | %d | %d | %d | %s |\n",
        $1, $2, $3, $4, $5, $6, $3 - $7, $4 - $7, $5 - $7, $6 - $7, $8 }'
  done
done
for size in small 1514; do
  echo "3 fallbacks / 0 fallbacks, $size frames: xia-router process CPU per packet $(echo "${cost[xip3-$size]} ${cost[xip0-$size]}" | awk '{ printf "%.2f", $1 / $2 }')x, machine CPU per packet with --xdp $(echo "${total[xdp3-$size]} ${total[xdp0-$size]}" | awk '{ printf "%.2f", $1 / $2 }')x"
done
echo "sender alone: ${result[alone-small]} pps small, ${result[alone-1514]} pps 1514 bytes (nothing forwarding)"
