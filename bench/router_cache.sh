#!/usr/bin/env bash
# CHUNK goodput through xia-router with its chunk cache off and on, in the same run on the
# same topology: host A -- router R -- host B (two veths of MTU $MTU), one xiad per host, B
# serving BYTES of 1 MiB chunks and A fetching them (`xia chunk-fetch --no-sha`; xiad checks
# every chunk against its CID). Runs alternate off/on; before each, `xia-router cache` sets the
# cache's size and empties it, so no run is answered from the cache: the figure is what
# watching, assembling, hashing and storing the passing chunks costs. A last fetch with the
# cache full of them shows a repeated fetch answered by the router.
#
#   bench/router_cache.sh                      # 5 runs of 256 MiB each way, MTU 9000
#   RUNS=3 BYTES=134217728 MTU=1500 bench/router_cache.sh
#
# Needs root; the machine should be otherwise idle.
set -euo pipefail
RUNS=${RUNS:-5}
BYTES=${BYTES:-268435456}
MTU=${MTU:-9000}
cd "$(dirname "$0")/.."
. testbed/lib.sh
testbed/deps.sh
cargo build --release -q -p xia-router -p xia-core --bins
B=$PWD/target/release

tag=rc$$
na=${tag}a nr=${tag}r nb=${tag}b
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "$na" "$nr" "$nb"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT


for n in "$na" "$nr" "$nb"; do
  ip netns add "$n"
  ip -n "$n" link set lo up
done
ip link add eth0 netns "$na" mtu "$MTU" type veth peer name ra netns "$nr" mtu "$MTU"
ip link add eth0 netns "$nb" mtu "$MTU" type veth peer name rb netns "$nr" mtu "$MTU"
for x in "$na eth0" "$nr ra" "$nr rb" "$nb eth0"; do
  set -- $x
  ip -n "$1" link set "$2" up
done
ip netns exec "$nr" "$B/xia-router" --admin "$dir/r.sock" run -p ra -p rb --cache-mib 1024 \
  --ad-key "$dir/ad.key" -k "$dir/r.key" >"$dir/r.out" 2>"$dir/r.log" &
pids+=($!)
router_pid=$!
await_line "$dir/r.out" "xia-router ready"
for h in a b; do
  n=$tag$h
  ip netns exec "$n" "$B/xiad" -i eth0 -s "$dir/$h.sock" -k "$dir/$h.key" >"$dir/$h.out" 2>"$dir/$h.log" &
  pids+=($!)
  await_line "$dir/$h.out" "xiad ready"
  ip netns exec "$n" "$B/xia" --socket "$dir/$h.sock" wait registered --timeout 20 >/dev/null
done

ip netns exec "$nb" "$B/xia" --socket "$dir/b.sock" chunk-serve --bytes "$BYTES" --chunk-size 1048576 \
  --manifest "$dir/manifest" >"$dir/serve.out" 2>&1 &
pids+=($!)
await_line "$dir/serve.out" "^sha256"
want=$(sed -n 's/^sha256 //p' "$dir/serve.out")

router() { ip netns exec "$nr" "$B/xia-router" --admin "$dir/r.sock" "$@"; }
fetch() { # prints the goodput in Gbit/s; fails unless the bytes are the served ones
  local out
  out=$(ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" chunk-fetch "$dir/manifest")
  [ "$(echo "$out" | sed -n 's/^sha256 //p')" = "$want" ] || { echo "fetched bytes differ: $out" >&2; return 1; }
  echo "$out" | sed -n 's/.* s, \([0-9.]*\) Gbit\/s.*/\1/p'
}
stat() { router stats | sed -n "s/^$1 //p"; }
# The router's CPU time so far (user + system), in ms: less noisy than goodput on a shared machine.
TCK=$(getconf CLK_TCK)
cpu_ms() { awk -v t="$TCK" '{ print ($14 + $15) * 1000 / t }' "/proc/$router_pid/stat"; }

# The router faults its cache's memory in while idle after start; and one fetch, not counted,
# faults in the hosts' (else the first run pays for it, whichever it is).
for _ in $(seq 300); do
  [ "$(stat cache_memory_faulted_in)" = $((1024 << 20)) ] && break
  sleep 0.1
done
router cache 0 >/dev/null
fetch >/dev/null

off=() on=() coff=() con=()
for i in $(seq 1 "$RUNS"); do
  router cache 0 >/dev/null
  c=$(cpu_ms)
  off+=("$(fetch)")
  coff+=("$(echo "$(cpu_ms) $c" | awk '{ print $1 - $2 }')")
  echo "run $i cache off: ${off[-1]} Gbit/s, router CPU ${coff[-1]} ms" >&2
  router cache 1024 >/dev/null
  stored=$(stat cache_chunks_stored)
  c=$(cpu_ms)
  on+=("$(fetch)")
  con+=("$(echo "$(cpu_ms) $c" | awk '{ print $1 - $2 }')")
  echo "run $i cache on: ${on[-1]} Gbit/s, router CPU ${con[-1]} ms ($(($(stat cache_chunks_stored) - stored)) chunks cached on the way)" >&2
done
hits=$(stat cache_hits)
again=$(fetch)
hits=$(($(stat cache_hits) - hits))

m_off=$(printf '%s\n' "${off[@]}" | median)
m_on=$(printf '%s\n' "${on[@]}" | median)
mc_off=$(printf '%s\n' "${coff[@]}" | median)
mc_on=$(printf '%s\n' "${con[@]}" | median)
echo
echo "Medians of $RUNS runs of $BYTES bytes (1 MiB chunks), MTU $MTU, A -> R -> B, $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%d)"
echo
echo "| cache | CHUNK goodput (Gbit/s) | on / off | router CPU per run (ms) | on / off |"
echo "|---|---|---|---|---|"
echo "| off | $m_off | | $mc_off | |"
echo "| on (filled on the way, no hits) | $m_on | $(echo "$m_on $m_off" | awk '{ printf "%.2f", $1 / $2 }') | $mc_on | $(echo "$mc_on $mc_off" | awk '{ printf "%.2f", $1 / $2 }') |"
echo "| on, repeated fetch ($hits requests answered by the router) | $again | | | |"
