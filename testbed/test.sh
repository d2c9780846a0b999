#!/usr/bin/env bash
# Runs every test of the project: installs what the tests need when missing, checks formatting
# and lints, then runs the whole workspace's tests (unit, property, tshark, and the netns/QEMU
# end-to-end tests, which need root). Under CI=true nothing may skip.
set -euo pipefail
cd "$(dirname "$0")/.."
testbed/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the project's binaries (xiad, xia-router, ...): build them all first
# (cargo test builds only the binaries of the package under test).
cargo build --workspace --bins --locked
# The QEMU tests boot a guest: build its workload static and fetch its kernel here, once (both
# cached: target/x86_64-unknown-linux-gnu/, target/qemu-guest/), so no test pays for them.
cargo run -q --locked -p qemu-hooks --features vm --bin qemu-hooks -- -q image >/dev/null
cargo test --workspace --locked
