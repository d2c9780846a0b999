#!/usr/bin/env bash
# The project's main job. Until the migration demo lands it shows the foundation: every kind of
# frame the stack puts on the wire, built by xia-core and decoded by Wireshark's own XIP
# dissector (tshark), with the DAGs in both of the prototype's text forms.
set -euo pipefail
cd "$(dirname "$0")/.."
testbed/deps.sh
cargo build --release --locked -p xia-core --example samples
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
target/release/examples/samples --pcap "$out/xia.pcap"
echo
echo "== tshark's reading of the frames (Wireshark's xip dissector) =="
tshark -r "$out/xia.pcap" -T fields -E header=y \
  -e frame.number -e xip.next_hdr -e xip.payload_len -e xip.hop_limit -e xip.num_dst -e xip.num_src -e xip.last_node
echo
echo "== destination DAG of the CHUNK request, as tshark prints it =="
tshark -r "$out/xia.pcap" -Y frame.number==9 -T fields -e xip.dst_dag_entry
