#!/usr/bin/env bash
# halb against keepalived programming the kernel's IPVS, side by side in one boot of the kernel
# lab (Debian's cloud kernel under qemu TCG; see bench/ipvs/README.md). Not part of the test
# suite.
#
# Usage (root): bench/ipvs/run.sh [options]
#   -n N            rounds, the order of the two daemons alternating (default 3)
#   --services N    virtual servers in the apply benchmark (default 1000)
#   --dests N       real servers per virtual server (default 10)
#   --pps-time S    seconds per iperf3 run (default 8)
#   --only WHAT     apply or pps (default both)
#   --halb PATH     use this halb binary instead of building one (dist profile)
#   --halb-env VARS environment for halb in the machine, as "NAME=VALUE NAME=VALUE" (to try an
#                   allocator setting, e.g. "MIMALLOC_PURGE_DELAY=0")
# The machine's whole output is kept in /tmp/halb-bench-ipvs.out.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
rounds=3 services=1000 dests=10 pps_time=8 halb_bin="" only=apply,pps halb_env=""
while [ $# -gt 0 ]; do
    case $1 in
        -n) rounds=$2; shift 2 ;;
        --services) services=$2; shift 2 ;;
        --dests) dests=$2; shift 2 ;;
        --pps-time) pps_time=$2; shift 2 ;;
        --halb) halb_bin=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --halb-env) halb_env=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v iperf3 >/dev/null || { apt-get install -y iperf3 >/dev/null || { echo "run.sh: cannot install iperf3" >&2; exit 1; }; }
if [ -z "$halb_bin" ]; then
    cargo build --profile dist -p halb --bin halb >&2
    halb_bin=${CARGO_TARGET_DIR:-$repo/target}/dist/halb
fi
work=$(mktemp -d /tmp/halb-bench-ipvs.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/payload"
objcopy --strip-debug "$halb_bin" "$work/halb" 2>/dev/null || cp "$halb_bin" "$work/halb"
{
    echo "ROUNDS=$rounds PPS_TIME=$pps_time SERVICES=$services DESTS=$dests ONLY=$only"
    printf 'HALB_ENV=%q\n' "$halb_env"
    cat bench/ipvs/payload.sh
} >"$work/payload/run.sh"

# 1,000 x 10: VIPs 10.10.x.y:80, real servers 10.20.x.y:80, direct routing, no checkers (every
# real server is up from the start), no VRRP.
python3 - "$services" "$dests" >"$work/payload/big.conf" <<'PY'
import sys
services, dests = int(sys.argv[1]), int(sys.argv[2])
print("global_defs {\n    router_id bench\n}")
n = 0
for s in range(services):
    print(f"virtual_server 10.10.{s // 250}.{s % 250 + 1} 80 {{\n    lb_algo wlc\n    lb_kind DR\n    protocol TCP")
    for d in range(dests):
        n += 1
        print(f"    real_server 10.20.{n // 250}.{n % 250 + 1} 80 {{\n        weight 1\n    }}")
    print("}")
PY
cat >"$work/payload/pps.conf" <<'CONF'
global_defs {
    router_id bench
}
virtual_server 10.9.0.100 5201 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.9.0.21 5201 {
        weight 1
    }
}
virtual_server 10.9.0.100 5201 {
    lb_algo rr
    lb_kind DR
    protocol UDP
    real_server 10.9.0.21 5201 {
        weight 1
    }
}
CONF

echo "booting the IPVS VM (halb $("$work/halb" --version 2>/dev/null || echo ?)) ..." >&2
EXTRA_BINS="$work/halb $(command -v iperf3)" HALB_LAB_MEMORY=2048 HALB_LAB_TIMEOUT=3000 \
    ipvs-vm/run.sh "$work/payload" >"$work/out.txt" || {
    cp "$work/out.txt" /tmp/halb-bench-ipvs.out
    echo "run.sh: the lab failed; its output:" >&2
    cat "$work/out.txt" >&2
    exit 1
}
cp "$work/out.txt" /tmp/halb-bench-ipvs.out
python3 - "$work/out.txt" "$services" "$dests" <<'PY'
import json, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
services, dests = sys.argv[2], sys.argv[3]
apply, pps, problems = {}, {}, []
i = 0
while i < len(lines):
    l = lines[i]
    if l.startswith("result apply "):
        _, _, daemon, rnd, ms, rss, removed, digest = l.split()
        apply.setdefault(daemon, []).append((int(ms), int(rss), removed, digest))
    elif l.startswith("@@iperf3 "):
        _, daemon, rnd = l.split()
        j = i + 1
        while j < len(lines) and lines[j] != "@@end":
            j += 1
        try:
            report = json.loads("\n".join(lines[i + 1:j]))
            if "error" in report:
                raise ValueError(report["error"])
            s = report["end"]["sum"]
            pps.setdefault(daemon, []).append((s["packets"] - s["lost_packets"]) / s["seconds"])
        except Exception as e:
            problems.append(f"iperf3 {daemon} round {rnd}: {e}")
        i = j
    elif l.startswith(("apply:", "pps:")):
        problems.append(l)
    i += 1
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"# IPVS: halb against keepalived 2.2.7, IPVS VM (Debian cloud kernel, qemu TCG, 1 vCPU)\n")
print(f"apply {services} services x {dests} destinations, from process start to the whole table in the kernel (median of {len(apply.get('halb', []))}):")
print(f"{'':12}{'apply ms':>10}{'RSS KiB':>10}{'remove ms':>12}  digest")
for d in ("keepalived", "halb"):
    rows = apply.get(d, [])
    if rows:
        removed = [r[2] for r in rows]
        print(f"{d:12}{med([r[0] for r in rows]):>10.0f}{med([r[1] for r in rows]):>10.0f}{','.join(removed):>12}  {','.join(sorted(set(r[3] for r in rows)))}")
if apply.get("halb") and apply.get("keepalived"):
    print(f"ratio halb/keepalived: apply {med([r[0] for r in apply['halb']]) / med([r[0] for r in apply['keepalived']]):.2f}, RSS {med([r[1] for r in apply['halb']]) / med([r[1] for r in apply['keepalived']]):.2f}")
    same = {r[3] for r in apply["halb"]} == {r[3] for r in apply["keepalived"]} and len({r[3] for r in apply["halb"]}) == 1
    print(f"ipvsadm -S -n identical: {'yes' if same else 'NO'}")
print(f"\nUDP 64-byte datagrams/s through IPVS DR, received by the real server (median of {len(pps.get('halb', []))}):")
for d in ("keepalived", "halb"):
    if pps.get(d):
        print(f"{d:12}{med(pps[d]):>10.0f}   runs: {', '.join(f'{x:.0f}' for x in pps[d])}")
if pps.get("halb") and pps.get("keepalived"):
    print(f"ratio halb/keepalived: {med(pps['halb']) / med(pps['keepalived']):.2f}")
for p in problems:
    print("problem:", p)
PY
