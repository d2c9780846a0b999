#!/usr/bin/env bash
# The project's main job. Until the migration demo lands, it shows the XIA host stack at work:
# two hosts in network namespaces joined by a veth, each running xiad on raw Ethernet; xping
# between them, a 256 MiB STREAM transfer and a 256 MiB CHUNK fetch checked by SHA-256, and
# Wireshark's own XIP dissector (tshark) reading the captured frames.
set -euo pipefail
cd "$(dirname "$0")/.."
. testbed/lib.sh
testbed/deps.sh
cargo build --release --locked -q -p xia-core --bins
B=$PWD/target/release
AD=AD:$(printf 'ad%.0s' {1..20})

tag=demo$$
na=${tag}a nb=${tag}b
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$na" 2>/dev/null || true
  ip netns del "$nb" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT


echo "== two hosts, A and B, on one veth (MTU 9000), AD $AD"
ip netns add "$na"
ip netns add "$nb"
ip link add va netns "$na" mtu 9000 type veth peer name vb netns "$nb" mtu 9000
for n in "$na" "$nb"; do ip -n "$n" link set lo up; done
ip -n "$na" link set va up
ip -n "$nb" link set vb up
ip netns exec "$na" "$B/xiad" -q -i va -s "$dir/a.sock" -k "$dir/a.key" --ad "$AD" >"$dir/a.out" 2>"$dir/a.err" &
pa=$!
ip netns exec "$nb" "$B/xiad" -q -i vb -s "$dir/b.sock" -k "$dir/b.key" --ad "$AD" >"$dir/b.out" 2>"$dir/b.err" &
pids+=("$pa" "$!")
await_line "$dir/a.out" "xiad ready"
await_line "$dir/b.out" "xiad ready"
sed 's/^/A: /' "$dir/a.out"
sed 's/^/B: /' "$dir/b.out"
hid_b=$(grep -o 'hid=[^ ]*' "$dir/b.out" | cut -d= -f2)

# An independent witness: tshark capturing on A's interface (the first 2000 frames).
ip netns exec "$na" tshark -q -i va -c 2000 -a duration:60 -w "$dir/a.pcap" >/dev/null 2>&1 &
pt=$!
pids+=("$pt")
sleep 1

echo
echo "== xping from A to B"
ip netns exec "$na" "$B/xping" --socket "$dir/a.sock" -c 5 -i 0.2 --gaps RE "$AD" "$hid_b"

echo
echo "== 256 MiB over STREAM, B listening, A sending"
ip netns exec "$nb" "$B/xia" --socket "$dir/b.sock" stream-recv >"$dir/recv.out" 2>&1 &
pr=$!
await_line "$dir/recv.out" "^listening "
dag=$(sed -n 's/^listening //p' "$dir/recv.out")
# shellcheck disable=SC2086
ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" stream-send --bytes 268435456 $dag | sed 's/^/A: /'
wait "$pr"
sed 's/^/B: /' "$dir/recv.out"

echo
echo "== 256 MiB as 1 MiB chunks, published by B, fetched by A"
ip netns exec "$nb" "$B/xia" --socket "$dir/b.sock" chunk-serve --bytes 268435456 --manifest "$dir/manifest" >"$dir/serve.out" 2>&1 &
pids+=("$!")
await_line "$dir/serve.out" "^sha256 "
sed 's/^/B: /' "$dir/serve.out"
ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" chunk-fetch "$dir/manifest" | sed 's/^/A: /'

echo
echo "== A's counters"
ip netns exec "$na" "$B/xia" --socket "$dir/a.sock" stats | grep -v ' 0$' | paste -sd' ' | fold -s -w 100

echo
echo "== what tshark captured on A's interface, through Wireshark's XIP dissector"
wait "$pt" 2>/dev/null || true
printf '%s XIP frames; by next header (1 XCMP, 3 STREAM): ' "$(tshark -r "$dir/a.pcap" -Y xip 2>/dev/null | wc -l)"
tshark -r "$dir/a.pcap" -Y xip -T fields -e xip.next_hdr 2>/dev/null | sort -n | uniq -c | awk '{printf "%s x%s  ", $2, $1}'
echo
errors=$(tshark -r "$dir/a.pcap" -Y 'xip.invalid.len || xip.bad_num_dst || xip.bad_num_src' 2>/dev/null | wc -l)
echo "frames tshark flags as malformed XIP: $errors"
echo "first XCMP echo request, as tshark decodes it:"
tshark -r "$dir/a.pcap" -Y 'xip.next_hdr == 1' -V 2>/dev/null | awk '/^Frame /{n++} n==1' | sed -n '/eXpressive Internet Protocol/,$p'
