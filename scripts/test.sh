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

# Dependency policy (deny.toml): advisories, licenses, bans, sources.
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny@0.20.2
# The advisories come from the RustSec database, a git repository that cargo-deny fetches. When
# it cannot be fetched, a copy an earlier fetch left is used (cargo-deny refuses one older than
# 90 days); without one the advisories are not checked, and this says so.
advisory_dbs=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
# cargo-deny reads `cargo metadata` for every target platform, and with --offline that needs the
# crates of the other platforms (windows-sys, …) on disk, which building for this host never
# downloads: fetch them all first, from crates.io, which this machine does reach.
cargo fetch --locked
if cargo deny fetch db; then
    cargo deny check --hide-inclusion-graph
elif compgen -G "$advisory_dbs/*/.git" >/dev/null; then
    for db in "$advisory_dbs"/*/.git; do
        echo "test.sh: advisory database not fetched; using the copy in ${db%/.git}, last commit $(git -C "${db%/.git}" log -1 --format=%cs)" >&2
    done
    cargo deny --offline check --hide-inclusion-graph
else
    echo "test.sh: ADVISORIES NOT CHECKED: the RustSec advisory database could not be fetched and no earlier copy is in $advisory_dbs; licenses, bans and sources are checked" >&2
    cargo deny --offline check --hide-inclusion-graph licenses bans sources
fi

# The suite takes about a quarter of an hour on two cores; a test that hangs should fail the run
# with its name on screen, not outlast the CI's own limit.
timeout --foreground --kill-after=30s 50m cargo test --workspace --locked
