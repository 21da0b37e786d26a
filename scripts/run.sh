#!/usr/bin/env bash
# Sets up and runs halb's main job on a fresh Debian machine: the seed's whole test plan
# (`halb lab run`): two directors running halb with the seed's keepalived.conf files, four
# MariaDB instances in two dual-master pairs, the seed's writer and reader, and its scenarios,
# with a live timeline on stderr and the report on stdout. Arguments go to `halb lab run`
# (scenario names, --json, --rate N).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --release --locked -p halb
exec ./target/release/halb lab run "$@"
