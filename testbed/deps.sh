#!/usr/bin/env bash
# Installs the system packages the project needs, only those missing.
#   testbed/deps.sh        what the tests need
# Debian/Ubuntu with apt; run as root.
set -euo pipefail

# command -> Debian package
declare -A pkgs=(
  [tshark]=tshark
  [nft]=nftables
  [ethtool]=ethtool
  [iperf3]=iperf3
  [busybox]=busybox-static
  [qemu-system-x86_64]=qemu-system-x86
  [cpio]=cpio
  [ip]=iproute2
)
missing=()
for cmd in "${!pkgs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkgs[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
