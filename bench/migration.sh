#!/usr/bin/env bash
# Live migration of a real QEMU guest across the paper's Fig. 1b, three ways in one run on the
# same namespaces: xmigrate over XIA through both routers, QEMU's tcp: over IPv4 through the
# same two router namespaces (Linux forwarding), QEMU's exec:cat through a FIFO (a local pipe:
# the ceiling of any exec transport). Fresh guests every run, modes taking turns; prints every
# run, then medians as a Markdown table (for BENCHMARKS.md) and the ratios to the targets.
#
#   bench/migration.sh                           # 5 runs, 512 MiB guest, MTU 9000
#   RUNS=3 bench/migration.sh --downtime-limit-ms 20 --mtu 1500
#
# Needs root. The machine should be otherwise idle (a TCG guest takes a core by itself).
set -euo pipefail
cd "$(dirname "$0")/.."
testbed/deps.sh
cargo build --release --locked -q --workspace --bins
cargo run --release --locked -q -p qemu-hooks --features vm --bin qemu-hooks -- -q image >/dev/null
exec target/release/migration-bench --runs "${RUNS:-5}" "$@"
