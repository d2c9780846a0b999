#!/usr/bin/env bash
# The project's main job: the paper's Fig. 1b (two ADs, two routers) in network namespaces, a
# real QEMU guest (TCG, 512 MiB: 128 MiB checksummed, 1 MiB of another 256 MiB rewritten every
# 10 ms) booted on host A
# and live-migrated to host B across both routers by xmigrate over XIA, with its progress and
# the guest's console on both sides; then the same guest moved by QEMU's own tcp: (IPv4 through
# the same routers) and exec:cat (a local pipe), and the table: total time, QEMU's downtime,
# true downtime (destination RESUME - source STOP). A few minutes here; nothing left behind.
#
#   testbed/demo.sh                      # as root, from anywhere in the repository
#   MEM_MIB=128 testbed/demo.sh          # a smaller guest
set -euo pipefail
cd "$(dirname "$0")/.."
testbed/deps.sh
cargo build --release --locked -q --workspace --bins
# The guest: its workload built static, Debian's cloud kernel fetched, both cached under target/.
cargo run --release --locked -q -p qemu-hooks --features vm --bin qemu-hooks -- -q image >/dev/null
MEM_MIB=${MEM_MIB:-512}
if [ "$MEM_MIB" -ge 512 ]; then fill=128 dirty=256; else fill=32 dirty=16; fi
exec target/release/migration-bench --demo --mem-mib "$MEM_MIB" --fill-mib "$fill" --dirty-mib "$dirty"
