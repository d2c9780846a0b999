# Shell helpers shared by the testbed's and the benchmarks' scripts (source it).

# await_line FILE PATTERN [PID]: waits up to 20 s for a line matching PATTERN in FILE (a
# background tool announcing itself); fails at once if process PID has exited. On failure it
# shows FILE, and the tool's log next to it (FILE with .out replaced by .log) if there is one.
await_line() {
  for _ in $(seq 1 400); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then break; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1" >&2
  cat "$1" >&2 || true
  local log=${1%.out}.log
  if [ "$log" != "$1" ] && [ -f "$log" ]; then cat "$log" >&2; fi
  return 1
}

# median: the median of the numbers on stdin, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
