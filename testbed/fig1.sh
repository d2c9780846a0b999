#!/usr/bin/env bash
# The paper's testbeds (Fig. 1) in network namespaces, with the project's daemons:
#
#   testbed/fig1.sh up 1a     one AD: hosts A, B, C, each linked to router R1
#   testbed/fig1.sh up 1b     two ADs: R1 (AD1) with A and C, R2 (AD2) with B; R1-R2 linked
#   testbed/fig1.sh status    what is up, with each node's DAG
#   testbed/fig1.sh down      stops the daemons this script started and removes the namespaces
#
# Namespaces are named fig-r1, fig-r2, fig-a, fig-b, fig-c; each host's interface is eth0.
# Run a command on a node with `ip netns exec fig-a ...`; the sockets are in $STATE:
#   ip netns exec fig-c xping --socket $STATE/c.sock -c 3 <A's DAG from status>
#   ip netns exec fig-r1 xia-router --admin $STATE/r1.sock route show
# `up` is idempotent (the same figure again does nothing; the other one replaces it) and takes
# everything down again if it fails; `down` leaves nothing behind. Needs root.
# XDP=1 starts the routers with their XDP fast path (`--xdp`), GRO on every veth end so that
# each takes the frames redirected to it.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
. testbed/lib.sh
STATE=${XIA_FIG1_STATE:-/run/xia-fig1}
B=${XIA_BIN:-$PWD/target/release}
MTU=${MTU:-1500}
XDP=${XDP:-0}
NODES="r1 r2 a b c"

ns() { echo "fig-$1"; }

down() {
  if [ -d "$STATE" ]; then
    for pidfile in "$STATE"/*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      # Only a process this script started: its command line names our state directory.
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$STATE/"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.02; done
        kill -9 "$pid" 2>/dev/null || true
      fi
    done
  fi
  for n in $NODES; do ip netns del "$(ns "$n")" 2>/dev/null || true; done
  rm -rf "$STATE"
}

link() { # link NODE1 IF1 NODE2 IF2
  ip link add "$2" netns "$(ns "$1")" mtu "$MTU" type veth peer name "$4" netns "$(ns "$3")" mtu "$MTU"
  ip -n "$(ns "$1")" link set "$2" up
  ip -n "$(ns "$3")" link set "$4" up
  if [ "$XDP" = 1 ]; then
    ip netns exec "$(ns "$1")" ethtool -K "$2" gro on >/dev/null
    ip netns exec "$(ns "$3")" ethtool -K "$4" gro on >/dev/null
  fi
}


start() { # start NAME NODE COMMAND...
  local name=$1 node=$2
  shift 2
  ip netns exec "$(ns "$node")" "$@" >"$STATE/$name.out" 2>"$STATE/$name.log" &
  echo $! >"$STATE/$name.pid"
}

router() { # router NAME AD-KEY PORT:ROLE... (role: access for hosts, peering for routers)
  local name=$1 adkey=$2
  shift 2
  local args=()
  for p in "$@"; do args+=(-p "${p%%:*}" "--${p##*:}" "${p%%:*}"); done
  [ "$XDP" = 1 ] && args+=(--xdp)
  start "$name" "$name" "$B/xia-router" --admin "$STATE/$name.sock" run "${args[@]}" \
    --ad-key "$STATE/$adkey.key" -k "$STATE/$name.key"
  await_line "$STATE/$name.out" "xia-router ready" "$(cat "$STATE/$name.pid")"
}

host() { # host NAME
  start "$1" "$1" "$B/xiad" -i eth0 -s "$STATE/$1.sock" -k "$STATE/$1.key"
  await_line "$STATE/$1.out" "xiad ready" "$(cat "$STATE/$1.pid")"
}

registered() { # waits until host NAME has its AD's receipt (its gateway confirmed it)
  ip netns exec "$(ns "$1")" "$B/xia" --socket "$STATE/$1.sock" wait registered --timeout 20 >/dev/null && return 0
  echo "fig1: host $1 did not register" >&2
  cat "$STATE/$1.log" >&2
  return 1
}

status() {
  [ -f "$STATE/figure" ] || { echo "down"; return 0; }
  echo "figure $(cat "$STATE/figure") (state in $STATE)"
  for n in r1 r2; do
    [ -e "$STATE/$n.sock" ] || continue
    echo "$n: $(ip netns exec "$(ns "$n")" "$B/xia-router" --admin "$STATE/$n.sock" info | grep '^re ' | cut -d' ' -f2-)"
  done
  for n in a b c; do
    [ -e "$STATE/$n.sock" ] || continue
    echo "$n: $(ip netns exec "$(ns "$n")" "$B/xia" --socket "$STATE/$n.sock" info | grep '^dag ' | cut -d' ' -f2-)"
  done
}

up() {
  local fig=$1
  case "$fig" in 1a | 1b) ;; *) echo "usage: $0 up 1a|1b" >&2; exit 2 ;; esac
  if [ -f "$STATE/figure" ]; then
    if [ "$(cat "$STATE/figure")" = "$fig" ]; then
      echo "fig $fig is already up"
      return 0
    fi
    down
  fi
  for bin in xiad xia xping xia-router; do
    [ -x "$B/$bin" ] || { cargo build --release -q -p xia-core -p xia-router --bins; break; }
  done
  for bin in xiad xia xping xia-router; do
    [ -x "$B/$bin" ] || { echo "fig1: $B/$bin is missing" >&2; exit 1; }
  done
  trap 'echo "fig1: up failed; taking it down" >&2; down' ERR
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  local nodes="r1 a b c"
  [ "$fig" = 1b ] && nodes="r1 r2 a b c"
  for n in $nodes; do
    ip netns add "$(ns "$n")"
    ip -n "$(ns "$n")" link set lo up
  done
  if [ "$fig" = 1a ]; then
    link a eth0 r1 r1-a
    link b eth0 r1 r1-b
    link c eth0 r1 r1-c
    router r1 ad1 r1-a:access r1-b:access r1-c:access
  else
    link a eth0 r1 r1-a
    link c eth0 r1 r1-c
    link r1 r1-r2 r2 r2-r1
    link b eth0 r2 r2-b
    router r1 ad1 r1-a:access r1-c:access r1-r2:peering
    router r2 ad2 r2-r1:peering r2-b:access
  fi
  for h in a b c; do host "$h"; done
  for h in a b c; do registered "$h"; done
  echo "$fig" >"$STATE/figure"
  trap - ERR
  status
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up 1a|1b | down | status" >&2; exit 2 ;;
esac
