# Shared by the goodput benchmarks (sourced after testbed/lib.sh). They set, before calling:
#   na nb     the two hosts' namespaces, whose interfaces are va and vb
#   dir       a scratch directory;  B  the directory of xiad and xia;  AD  the hosts' AD
#   RUNS BYTES
#   pids      an array the caller's cleanup kills
# Every run prints one line "<label>, run <i>, <what>: <g> Gbit/s"; the runs' figures are left in
# the array named by the caller.

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
gbps_of() { grep -o '[0-9.]* Gbit/s' | head -1 | cut -d' ' -f1; }

# Waits until a TCP listener on PORT exists in namespace NS (iperf3 -D returns before it listens).
await_listen() { # NS PORT
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

# iperf3 from na to ADDR in nb, RUNS times, on ports PORT+1...; figures into array OUT.
tcp_runs() { # LABEL ADDR PORT OUT
  local -n out=$4
  out=()
  for i in $(seq 1 "$RUNS"); do
    ip netns exec "$nb" iperf3 -s -1 -D -p $(($3 + i)) >/dev/null 2>&1
    await_listen "$nb" $(($3 + i))
    local g
    g=$(ip netns exec "$na" iperf3 -c "$2" -p $(($3 + i)) -n "$BYTES" -J |
      python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    echo "$1, run $i, iperf3 TCP: $g Gbit/s"
    out+=("$g")
  done
}

# XIA STREAM from A to B (xiads running), RUNS times; figures into array OUT.
stream_runs() { # LABEL OUT
  local -n out=$2
  out=()
  for i in $(seq 1 "$RUNS"); do
    : >"$dir/recv.out"
    ip netns exec "$nb" "$B/xia" --socket "$dir/b.sock" stream-recv --no-sha >"$dir/recv.out" 2>&1 &
    local pr=$!
    await_line "$dir/recv.out" "^listening "
    local dag g
    dag=$(sed -n 's/^listening //p' "$dir/recv.out")
    # shellcheck disable=SC2086
    ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" stream-send --no-sha --bytes "$BYTES" $dag >/dev/null
    wait "$pr"
    g=$(grep '^received' "$dir/recv.out" | gbps_of)
    echo "$1, run $i, XIA STREAM: $g Gbit/s"
    out+=("$g")
  done
}

# XIA CHUNK: B serves BYTES in 1 MiB chunks, A fetches them RUNS times; figures into array OUT.
chunk_runs() { # LABEL OUT
  local -n out=$2
  out=()
  ip netns exec "$nb" "$B/xia" --socket "$dir/b.sock" chunk-serve --bytes "$BYTES" --chunk-size 1048576 \
    --manifest "$dir/manifest" >"$dir/serve.out" 2>&1 &
  local ps=$!
  pids+=("$ps")
  await_line "$dir/serve.out" "^sha256 "
  for i in $(seq 1 "$RUNS"); do
    local g
    g=$(ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" chunk-fetch --no-sha "$dir/manifest" | gbps_of)
    echo "$1, run $i, XIA CHUNK: $g Gbit/s"
    out+=("$g")
  done
  kill "$ps" 2>/dev/null || true
  wait "$ps" 2>/dev/null || true
}
