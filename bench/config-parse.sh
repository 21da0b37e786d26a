#!/usr/bin/env bash
# Parse time and peak memory of `halb check-config` against `keepalived -t` on the same
# generated configuration, measured in the same run. Not part of the test suite.
#
# Usage: bench/config-parse.sh [REAL_SERVERS (default 10000)] [RUNS (default 5)]
# HALB=PATH measures that halb binary instead of building the dist profile.
set -euo pipefail
cd "$(dirname "$0")/.."
real_servers=${1:-10000}
runs=${2:-5}

scripts/deps.sh
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
if [ -n "${HALB:-}" ]; then
    halb_bin=$HALB
else
    # The dist profile (Cargo.toml): the binary as packages ship it.
    cargo build --profile dist --locked -p halb >/dev/null 2>&1
    halb_bin=${CARGO_TARGET_DIR:-target}/dist/halb
fi

work=$(mktemp -d)
ns="halbb-parse-$$"
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 bench/gen-config.py "$real_servers" > "$work/keepalived.conf"
# Both programs check the interfaces: give them the same namespace with an eth0.
ip netns add "$ns"
ip netns exec "$ns" ip link add eth0 type veth peer name eth0p

# Runs a command RUNS times; prints the median wall time (ms) and the largest peak RSS (KiB).
measure() {
    local times=() rss=0
    for _ in $(seq "$runs"); do
        local start end kb
        start=$(date +%s%N)
        /usr/bin/time -f '%M' -o "$work/rss" ip netns exec "$ns" "$@" >/dev/null 2>"$work/err" || true
        end=$(date +%s%N)
        times+=($(( (end - start) / 1000000 )))
        kb=$(tail -1 "$work/rss")
        [ "$kb" -gt "$rss" ] && rss=$kb
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    echo "$median $rss"
}

read -r halb_ms halb_kb < <(measure "$halb_bin" check-config -f "$work/keepalived.conf")
read -r ka_ms ka_kb < <(measure keepalived -t -f "$work/keepalived.conf")

lines=$(wc -l < "$work/keepalived.conf")
echo "configuration: $real_servers real servers, $lines lines; median of $runs runs"
printf '%-22s %10s %12s\n' "" "time (ms)" "peak RSS (KiB)"
printf '%-22s %10s %12s\n' "halb check-config" "$halb_ms" "$halb_kb"
printf '%-22s %10s %12s\n' "keepalived -t" "$ka_ms" "$ka_kb"
awk -v h="$halb_ms" -v k="$ka_ms" -v hm="$halb_kb" -v km="$ka_kb" \
    'BEGIN { printf "ratio halb/keepalived: time %.2f, memory %.2f\n", (k ? h / k : 0), (km ? hm / km : 0) }'
