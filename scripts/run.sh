#!/usr/bin/env bash
# Sets up and runs halb's main job on a fresh Debian machine.
# Today that is reading the seed's keepalived.conf exactly as keepalived does and showing what
# halb understood; it grows into `halb lab run` (the seed's whole plan) as the issues land.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cargo build --release --locked -p halb

for conf in ../shared/seed/keepalived-master.conf ../shared/seed/keepalived-backup.conf; do
    echo "== halb check-config -f $conf"
    status=0
    ./target/release/halb check-config --no-interface-check -f "$conf" --dump summary || status=$?
    echo "(exit status $status: 0 clean, 5 warnings, 4 errors, as keepalived -t)"
done
