#!/usr/bin/env python3
"""Health checking at scale: TCP_CHECKs of many real servers, then 10 % of them dropping silently.

Runs bench/checkers/payload.sh either on this host (halb alone, at full scale: keepalived's
checker process exits without the kernel's IPVS, which this host lacks) or in the IPVS VM
(keepalived 2.2.7 and halb in turn, on the same file, at a scale TCG can carry). See README.md.

Usage (root):
  bench/checkers/run.py --where host --servers 10000 [--halb PATH]
  bench/checkers/run.py --where vm --servers 1000 [--rounds 2] [--halb PATH]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def config(servers, per_vs, delay_loop, connect_timeout, retry, delay_before_retry):
    out = ["global_defs {", "    router_id bench", "}"]
    addrs = []
    for i in range(servers):
        if i % per_vs == 0:
            if i:
                out.append("}")
            v = i // per_vs
            out += [
                f"virtual_server 10.76.{v // 250}.{v % 250 + 1} 3306 {{",
                f"    delay_loop {delay_loop}",
                "    lb_algo rr",
                "    lb_kind NAT",
                "    protocol TCP",
            ]
        a = f"10.77.{i // 250}.{i % 250 + 1}"
        addrs.append(a)
        out += [
            f"    real_server {a} 3306 {{",
            "        weight 1",
            "        TCP_CHECK {",
            f"            connect_timeout {connect_timeout}",
            f"            retry {retry}",
            f"            delay_before_retry {delay_before_retry}",
            "        }",
            "    }",
        ]
    out.append("}")
    return "\n".join(out) + "\n", addrs


def duration_s(text):
    """nft's `59m58s120ms` in seconds."""
    total = 0.0
    for n, unit in re.findall(r"(\d+)(ms|h|m|s|d)", text):
        total += int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def parse(lines):
    results, removed, seen, problems = [], {}, {}, []
    i = 0
    while i < len(lines):
        w = lines[i].split()
        if w[:1] == ["result"]:
            results.append({
                "daemon": w[1], "round": int(w[2]), "servers": int(w[3]), "ticks": int(w[4]),
                "measure_ms": int(w[5]), "rss": int(w[6]), "fault_ticks": int(w[7]),
                "fault_ms": int(w[8]), "fault_at": int(w[9]) / 1e6,
            })
        elif w[:1] == ["removed"]:
            removed.setdefault((w[1], int(w[2])), {}).setdefault(w[3], int(w[4]) / 1e6)
        elif w[:1] == ["@@seen"]:
            listed = int(w[3]) / 1e6
            j = i + 1
            block = []
            while j < len(lines) and lines[j] != "@@end":
                block.append(lines[j])
                j += 1
            first = {}
            for a, left in re.findall(r"(\d+\.\d+\.\d+\.\d+)(?: timeout \S+)? expires ([0-9hdms]+)",
                                      " ".join(block)):
                first[a] = listed - (3600 - duration_s(left))
            seen[(w[1], int(w[2]))] = first
            i = j
        elif lines[i].startswith("problem:"):
            problems.append(lines[i])
        i += 1
    return results, removed, seen, problems


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


def report(out, args, failing):
    lines = out.splitlines()
    results, removed, seen, problems = parse(lines)
    hz = 100
    for l in lines:
        if l.startswith("servers "):
            hz = int(l.split()[-1])
    bound = args.connect_timeout + args.delay_before_retry * args.retry + 1
    allowed = (args.retry + 1) * args.connect_timeout + args.retry * args.delay_before_retry + 1
    print(f"# {args.servers} real servers, TCP_CHECK delay_loop {args.delay_loop} connect_timeout "
          f"{args.connect_timeout} retry {args.retry} delay_before_retry {args.delay_before_retry}; "
          f"{len(failing)} dropping silently ({args.where})")
    print(f"# the issue's bound: connect_timeout + delay_before_retry x retry + 1 s = {bound} s; from the "
          f"first probe that meets the fault, every try waits its connect_timeout: "
          f"(retry + 1) x connect_timeout + retry x delay_before_retry + 1 s = {allowed} s")
    print(f"{'daemon':>10} {'rnd':>3} {'CPU s/min':>9} {'RSS KiB':>8} {'fault CPU s/min':>15} "
          f"{'removed':>8} {'wrong':>5} {'fault->removal p50/p99/max s':>28} "
          f"{'1st drop->removal p50/p99/max s':>31}")
    fig = {}
    for r in results:
        key = (r["daemon"], r["round"])
        rem = removed.get(key, {})
        fail = set(failing)
        ok = [a for a in rem if a in fail]
        wrong = len(rem) - len(ok)
        from_fault = [rem[a] - r["fault_at"] for a in ok]
        first = seen.get(key, {})
        from_first = [rem[a] - first[a] for a in ok if a in first]
        cpu_min = r["ticks"] / hz / (r["measure_ms"] / 60000)
        fault_cpu_min = r["fault_ticks"] / hz / (r["fault_ms"] / 60000) if r["fault_ms"] else 0
        print(f"{r['daemon']:>10} {r['round']:>3} {cpu_min:>9.2f} {r['rss']:>8} {fault_cpu_min:>15.2f} "
              f"{len(ok):>8} {wrong:>5} "
              f"{pct(from_fault, 50):>10.2f}/{pct(from_fault, 99):.2f}/{max(from_fault, default=float('nan')):.2f}"
              f"{pct(from_first, 50):>16.2f}/{pct(from_first, 99):.2f}/{max(from_first, default=float('nan')):.2f}")
        f = fig.setdefault(r["daemon"], {"cpu": [], "rss": [], "p99": []})
        f["cpu"].append(cpu_min)
        f["rss"].append(r["rss"])
        f["p99"].append(pct(from_first, 99))
        if len(ok) < len(failing):
            problems.append(f"problem: {r['daemon']} round {r['round']} removed {len(ok)} of {len(failing)} failing servers")
    med = statistics.median
    if "halb" in fig and "keepalived" in fig:
        h, k = fig["halb"], fig["keepalived"]
        print(f"halb/keepalived: CPU {med(h['cpu']) / med(k['cpu']):.2f}, RSS {med(h['rss']) / med(k['rss']):.2f} "
              f"(medians over rounds)")
    for d, f in fig.items():
        print(f"{d}: median CPU {med(f['cpu']):.2f} s/min, RSS {med(f['rss'])} KiB, "
              f"p99 first drop->removal {med(f['p99']):.2f} s (allowed {allowed} s)")
    for p in problems:
        print(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--where", choices=("host", "vm"), default="host")
    ap.add_argument("--servers", type=int, default=None, help="10000 on the host, 1000 in the VM")
    ap.add_argument("--per-vs", type=int, default=100)
    ap.add_argument("--fail-every", type=int, default=10, help="every Nth server fails (10 %%)")
    ap.add_argument("--delay-loop", type=int, default=5)
    ap.add_argument("--connect-timeout", type=int, default=3)
    ap.add_argument("--retry", type=int, default=1)
    ap.add_argument("--delay-before-retry", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--measure", type=int, default=60, help="seconds of healthy checking measured")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--halb", default=str(REPO / "target" / "release" / "halb"))
    ap.add_argument("--listener", default=str(REPO / "target" / "release" / "vm-conn-load"))
    ap.add_argument("--daemons", default=None, help="vm: 'keepalived halb' (default), host: halb")
    ap.add_argument("--halb-arg", action="append", default=[])
    ap.add_argument("--keep-output", default="/tmp/halb-bench-checkers.out")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py: needs root (network namespaces, nftables)")
    for p in (args.halb, args.listener):
        if not Path(p).exists():
            sys.exit(f"run.py: {p} not found: cargo build --release -p halb -p halb-ipvs-vm --bin halb "
                     f"--bin vm-conn-load (or pass --halb/--listener)")
    if args.servers is None:
        args.servers = 10000 if args.where == "host" else 1000
    daemons = args.daemons or ("halb" if args.where == "host" else "keepalived halb")
    warmup = args.warmup if args.warmup is not None else args.delay_loop + args.connect_timeout + 4
    fault_wait = args.delay_loop + (args.retry + 1) * args.connect_timeout + args.retry * args.delay_before_retry + 25
    text, addrs = config(args.servers, args.per_vs, args.delay_loop, args.connect_timeout, args.retry,
                         args.delay_before_retry)
    failing = addrs[args.fail_every - 1::args.fail_every]
    env_vars = {
        "DAEMONS": daemons, "ROUNDS": str(args.rounds), "WARMUP": str(warmup),
        "MEASURE": str(args.measure), "FAULT_WAIT": str(fault_wait),
        "HALB_ARGS": " ".join(args.halb_arg),
    }
    with tempfile.TemporaryDirectory(prefix="halb-bench-checkers.") as work:
        payload = Path(work, "payload")
        payload.mkdir()
        (payload / "checkers.conf").write_text(text)
        (payload / "fail.txt").write_text("\n".join(failing) + "\n")
        for tool in ("nft",):
            if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
                subprocess.run(["apt-get", "install", "-y", "nftables"], check=True, capture_output=True)
        if args.where == "host":
            env = dict(os.environ, **env_vars, DIR=str(payload), DATAPLANE="proxy", HALB=args.halb,
                       LISTENER=args.listener, TAG=f"chk{os.getpid()}")
            r = subprocess.run(["bash", str(HERE / "payload.sh")], env=env, capture_output=True, text=True)
            out = r.stdout + r.stderr
        else:
            header = "".join(f"export {k}='{v}'\n" for k, v in env_vars.items())
            header += "export DATAPLANE=ipvs HALB=halb LISTENER=vm-conn-load\n"
            (payload / "run.sh").write_text(header + (HERE / "payload.sh").read_text())
            bins = [args.halb, args.listener, subprocess.run(["sh", "-c", "command -v nft"], capture_output=True,
                                                             text=True).stdout.strip()]
            tmp_bins = Path(work, "bin")
            tmp_bins.mkdir()
            copies = []
            for b in bins:
                dst = tmp_bins / Path(b).name
                if subprocess.run(["objcopy", "--strip-debug", b, str(dst)], capture_output=True).returncode:
                    subprocess.run(["cp", b, str(dst)], check=True)
                copies.append(str(dst))
            seconds = args.rounds * len(daemons.split()) * (warmup + args.measure + fault_wait + 30) + 300
            env = dict(os.environ, EXTRA_BINS=" ".join(copies), HALB_LAB_MEMORY="2048",
                       HALB_LAB_TIMEOUT=str(seconds))
            r = subprocess.run([str(REPO / "ipvs-vm" / "run.sh"), str(payload)], env=env, capture_output=True,
                               text=True)
            out = r.stdout + r.stderr
        Path(args.keep_output).write_text(out)
        if r.returncode != 0:
            print(out[-4000:])
            sys.exit(f"run.py: the payload failed (exit {r.returncode}); whole output in {args.keep_output}")
        report(out, args, failing)


if __name__ == "__main__":
    main()
