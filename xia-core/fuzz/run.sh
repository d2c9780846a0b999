#!/usr/bin/env bash
# Fuzzes every target (or those named) for SECONDS each, one after the other, from seeds made of
# the sample frames. Prints one summary line per target.
#   xia-core/fuzz/run.sh 600            # the 10-minute runs of the closing notes
#   xia-core/fuzz/run.sh 30 xip stream  # a quick look
set -euo pipefail
secs=${1:-60}; shift || true
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame xip xcmp dgram stream chunk control xarp ipc dag_text key_file router names)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz build >/dev/null 2>&1
cargo run -q -p xia-core --example samples -- --seeds "$here/corpus" 2>/dev/null
# Run copies of the binaries so that rebuilding the crate meanwhile does not disturb the runs.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cp "$here"/target/x86_64-unknown-linux-gnu/release/{$(IFS=,; echo "${targets[*]}")} "$bin"/ 2>/dev/null ||
  for t in "${targets[@]}"; do cp "$here/target/x86_64-unknown-linux-gnu/release/$t" "$bin/"; done
mkdir -p "$here/logs" "$here/artifacts"
for t in "${targets[@]}"; do
  mkdir -p "$here/corpus/$t"
  log="$here/logs/$t.log"
  mkdir -p "$here/artifacts/$t"
  if "$bin/$t" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$here/artifacts/$t/" \
      "$here/corpus/$t" >"$log" 2>&1; then status=ok
  elif grep -q "run interrupted" "$log"; then status="interrupted (see $log)"
  else status="CRASH (see $log and $here/artifacts/$t/)"; fi
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
  echo "$t: $status, ${runs:-?} executions in ${secs}s, coverage ${cov:-?} edges"
done
