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
cargo test --workspace --locked
