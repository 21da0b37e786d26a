#!/usr/bin/env bash
# Sets up and runs halb's whole test suite on a fresh Debian machine (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is needed (https://rustup.rs or Debian's cargo package)" >&2
    exit 1
fi

# shared/ (the seed and its configurations) sits beside the checkout.
if [ ! -d ../shared/seed ]; then
    echo "test.sh: ../shared/seed is missing: the tests read the seed's keepalived.conf from there" >&2
    exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The rust-version that Cargo.toml declares must really build the workspace, tests included:
# check it with exactly that toolchain (rustup installs it the first time).
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
if ! command -v rustup >/dev/null 2>&1; then
    echo "test.sh: rustup is needed to check the workspace with Rust $msrv, its declared rust-version" >&2
    exit 1
fi
rustup run "$msrv" cargo --version >/dev/null 2>&1 || rustup toolchain install "$msrv" --profile minimal
cargo "+$msrv" check --workspace --all-targets --locked

# The suite takes about a quarter of an hour on two cores; a test that hangs should fail the run
# with its name on screen, not outlast the CI's own limit.
timeout --foreground --kill-after=30s 50m cargo test --workspace --locked
