#!/usr/bin/env python3
"""VRRP under load: two directors with VRRPv3 advert_int 0.05, the MASTER carrying bulk and
connection-rate traffic through the VIP; transitions on the BACKUP, then SIGKILL of the MASTER
-> the VIP answering from the BACKUP.

halb + halb (the userspace proxy carries the traffic) and keepalived 2.2.7 + keepalived (VRRP
only: this host has no IPVS; HAProxy 2.6 on each director carries the same traffic, bound to
the VIP), one after the other in the same run, on the same segment: five network namespaces
(director A, director B, client, real server) on a bridge in a fifth. Nothing leaves them.

1. load: for --minutes, iperf3 (--streams parallel streams) and conn-bench's connection-rate
   client (--concurrency loops of connect, one exchange, close) through the VIP to the real
   server; counted: every "Entering MASTER STATE" of the BACKUP and every "Entering BACKUP
   STATE" of the MASTER after its start (goal: none), the machine's idle CPU share.
2. failover, --failovers times with the load still running: SIGKILL of the MASTER, the time
   until the VIP answers from B (a banner on VIP:3307 in each director names it; a client
   connects every 10 ms, 50 ms connect timeout); then A is started again, takes the VIP back
   (preemption) and the next round begins.

Usage (root): bench/vrrp-load/run.py [--minutes 2] [--failovers 10] [--only halb|keepalived]
  [--halb PATH] [--conn-bench PATH] [--halb-arg ARG]...
The full run is --minutes 10.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import netlab  # noqa: E402  (bench/netlab.py)

REPO = Path(__file__).resolve().parents[2]
VIP = "192.168.66.251"
RS = "192.168.66.21"
BANNER = 3307


HOSTS = {"a": 11, "b": 12, "c": 100, "r": 21}


def new_lab():
    """Directors a and b, client c (its connections leave from 32 addresses, so that the rate
    does not run out of ephemeral ports toward one pair), real server r."""
    lab = netlab.Lab("vl", HOSTS)
    for i in range(150, 182):
        lab.add_address("c", f"192.168.66.{i}")
    for tag in ("a", "b"):
        # HAProxy binds the VIP before it arrives (halb uses IP_FREEBIND); both directors
        # reuse TIME_WAIT ports toward the real server at this connection rate.
        lab.sysctl(tag, "net.ipv4.ip_nonlocal_bind=1", "net.ipv4.tcp_tw_reuse=1",
                   "net.ipv4.ip_local_port_range=10000 65000")
        netlab.start_banner(lab, tag, BANNER)
    return lab


def probe(lab, want, timeout):
    """Connects from the client until director `want` answers; returns the instant it did."""
    return netlab.probe_banner(lab, "c", VIP, BANNER, want, timeout)


def vrrp_section(state, priority, advert_int, rt_priority):
    g = "global_defs {\n    router_id " + state.lower() + "\n"
    if rt_priority:
        g += f"    vrrp_rt_priority {rt_priority}\n"
    g += "}\n"
    return g + f"""vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {advert_int}
    version 3
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""


def halb_config(state, priority, advert_int, rt_priority):
    vs = ""
    for port in (5201, 9000):
        vs += f"""virtual_server {VIP} {port} {{
    delay_loop 5
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {RS} {port} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
}}
"""
    return vrrp_section(state, priority, advert_int, rt_priority) + vs


def haproxy_config():
    # maxconn within the 20,000 descriptors a process may have here: asked for more, HAProxy
    # 2.6 refuses to start ("Cannot raise FD limit"), and the load met refusals instead.
    out = ["global", "    nbthread 2", "    maxconn 4000", "    maxpipes 32",
           "defaults", "    mode tcp", "    maxconn 4000", "    timeout connect 5s",
           "    timeout client 1h", "    timeout server 1h", "    option splice-auto",
           "    option splice-request", "    option splice-response"]
    for port in (5201, 9000):
        out += [f"frontend f{port}", f"    bind {VIP}:{port}", f"    default_backend b{port}",
                f"backend b{port}", f"    server s1 {RS}:{port} check inter 5s"]
    return "\n".join(out) + "\n"


def cpu_sample():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)


def count(log, words):
    try:
        return Path(log).read_text(errors="replace").count(words)
    except FileNotFoundError:
        return 0


def run_pair(kind, args, tmp):
    tmp = tempfile.mkdtemp(dir=tmp, prefix=f"{kind}-")
    lab = new_lab()
    res = {"kind": kind}
    try:
        lab.spawn("r", [args.conn_bench, "serve", "--listen", f"{RS}:9000"], f"{tmp}/serve.log")
        lab.spawn("r", ["iperf3", "-s", "-p", "5201"], f"{tmp}/iperf3-server.log")
        confs = {}
        for name, state, prio in (("a", "MASTER", 100), ("b", "BACKUP", 90)):
            p = Path(tmp, f"{name}.conf")
            if kind == "halb":
                p.write_text(halb_config(state, prio, args.advert_int, args.rt_priority))
            else:
                p.write_text(vrrp_section(state, prio, args.advert_int, args.rt_priority))
                Path(tmp, f"haproxy-{name}.cfg").write_text(haproxy_config())
            confs[name] = p

        starts = iter(range(1000))

        def start(name):
            log = f"{tmp}/{kind}-{name}.log"
            # Fresh pid files each start: keepalived refuses to start over a pid file whose
            # pid is alive again.
            n = next(starts)
            if kind == "halb":
                argv = [args.halb, "run", "-f", str(confs[name]), "--control-socket", f"{tmp}/{name}.sock",
                        *args.halb_arg]
            else:
                argv = ["keepalived", "--dont-fork", "--log-console", "--vrrp", "-f", str(confs[name]),
                        "-p", f"{tmp}/{name}-{n}.pid", "-r", f"{tmp}/{name}-{n}-vrrp.pid"]
            return lab.spawn(name, argv, log)

        if kind == "keepalived":
            for name in ("a", "b"):
                lab.spawn(name, ["haproxy", "-db", "-f", f"{tmp}/haproxy-{name}.cfg"], f"{tmp}/haproxy-{name}.log")
        master = start("a")
        start("b")
        end = time.monotonic() + 20
        while not (lab.has_address("a", VIP) and not lab.has_address("b", VIP)):
            if time.monotonic() > end:
                raise RuntimeError(f"{kind}: no MASTER on A")
            time.sleep(0.05)
        if probe(lab, "a", 5) is None:
            raise RuntimeError(f"{kind}: the VIP does not answer from A")
        time.sleep(3)  # both checkers see the real server up
        b_master0 = count(f"{tmp}/{kind}-b.log", "Entering MASTER STATE")
        a_backup0 = count(f"{tmp}/{kind}-a.log", "Entering BACKUP STATE")
        seconds = int(args.minutes * 60)
        load_end = seconds + 60 * args.failovers  # the load goes on through the failovers
        load = [
            lab.spawn("c", ["sh", "-c", f"end=$(($(date +%s) + {load_end})); while [ $(date +%s) -lt $end ]; do "
                       f"iperf3 -c {VIP} -p 5201 -P {args.streams} -t {seconds} -J >>{tmp}/iperf3.json; "
                       "sleep 0.2; done"], f"{tmp}/iperf3-client.log"),
            lab.spawn("c", ["sh", "-c", f"end=$(($(date +%s) + {load_end})); while [ $(date +%s) -lt $end ]; do "
                       f"{args.conn_bench} rate --target {VIP}:9000 --concurrency {args.concurrency} "
                       f"--duration {seconds} --sources 192.168.66.150-181; sleep 0.2; done"],
                      f"{tmp}/rate.log"),
        ]
        idle0, total0 = cpu_sample()
        t0 = time.monotonic()
        print(f"{kind}: load for {seconds} s ...", flush=True)
        time.sleep(seconds)
        idle1, total1 = cpu_sample()
        res["idle"] = (idle1 - idle0) / max(1, total1 - total0)
        res["load_s"] = time.monotonic() - t0
        res["b_master"] = count(f"{tmp}/{kind}-b.log", "Entering MASTER STATE") - b_master0
        res["a_backup"] = count(f"{tmp}/{kind}-a.log", "Entering BACKUP STATE") - a_backup0
        # The rate client prints its line as its run ends, about now.
        rates = []
        for _ in range(50):
            rates = [l.split() for l in Path(f"{tmp}/rate.log").read_text().splitlines() if l.startswith("rate ")]
            if rates:
                break
            time.sleep(0.2)
        res["rate"] = float(rates[0][1]) if rates else float("nan")
        res["rate_errors"] = int(rates[0][5]) if rates else -1
        if not res["rate"] > 0:
            raise RuntimeError(f"{kind}: no connection got through {VIP}:9000 during the load "
                               f"(see {tmp}/rate.log and the proxies' logs)")
        print(f"{kind}: {res['b_master']} BACKUP->MASTER on B, {res['a_backup']} MASTER->BACKUP on A, "
              f"idle CPU {res['idle'] * 100:.1f} %, conn rate {res['rate']:.0f}/s", flush=True)
        times = []
        for i in range(args.failovers):
            time.sleep(1.5 * float(args.advert_int) + 1)
            killed = time.time()
            lab.kill(master)
            answered = probe(lab, "b", 10 * float(args.advert_int) + 10)
            if answered is None:
                raise RuntimeError(f"{kind}: the VIP never answered from B in failover {i + 1}")
            times.append(answered - killed)
            print(f"{kind}: failover {i + 1}: {times[-1] * 1000:.0f} ms", flush=True)
            # The killed MASTER's VIP stays on its link: remove it as a restart would.
            netlab.sh("ip", "-n", lab.ns["a"], "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)
            master = start("a")
            end = time.monotonic() + 30
            while not (lab.has_address("a", VIP) and not lab.has_address("b", VIP)):
                if time.monotonic() > end:
                    tail = "\n".join(Path(f"{tmp}/{kind}-a.log").read_text(errors="replace").splitlines()[-15:])
                    raise RuntimeError(f"{kind}: A did not take the VIP back; its log ends:\n{tail}")
                time.sleep(0.05)
            if probe(lab, "a", 10) is None:
                raise RuntimeError(f"{kind}: the VIP does not answer from A again")
        res["failovers"] = times
        for p in load:
            lab.kill(p)
        return res
    finally:
        lab.close(grace=None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--advert-int", default="0.05")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--only", choices=("halb", "keepalived"))
    ap.add_argument("--rt-priority", type=int, default=0, help="vrrp_rt_priority in both directors' global_defs")
    ap.add_argument("--halb", default=str(REPO / "target" / "release" / "halb"))
    ap.add_argument("--conn-bench", default=str(REPO / "target" / "conn-rate" / "release" / "conn-bench"))
    ap.add_argument("--halb-arg", action="append", default=[])
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py: needs root (network namespaces, raw sockets)")
    for tool, pkg in (("iperf3", "iperf3"), ("haproxy", "haproxy"), ("keepalived", "keepalived")):
        if netlab.sh("sh", "-c", f"command -v {tool}", check=False).returncode:
            netlab.sh("apt-get", "install", "-y", pkg)
    if not Path(args.conn_bench).exists():
        manifest = REPO / "bench" / "proxy" / "conn-rate" / "Cargo.toml"
        subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(manifest),
                        "--target-dir", str(Path(args.conn_bench).parents[1])], check=True)
    if not Path(args.halb).exists():
        sys.exit(f"run.py: {args.halb} not found: cargo build --release -p halb (or pass --halb)")
    kinds = [args.only] if args.only else ["keepalived", "halb"]
    results = []
    with tempfile.TemporaryDirectory(prefix="halb-bench-vrrp-load.") as tmp:
        for kind in kinds:
            results.append(run_pair(kind, args, tmp))
    print(f"\n# VRRPv3 advert_int {args.advert_int}, {args.minutes} min of iperf3 -P {args.streams} and "
          f"{args.concurrency} connection loops through the VIP, then {args.failovers} SIGKILLs of the MASTER")
    print(f"{'pair':>12} {'B->MASTER':>9} {'A->BACKUP':>9} {'idle CPU':>8} {'conn/s':>7} "
          f"{'failover median ms':>18} {'min':>5} {'max':>5}")
    for r in results:
        f = r["failovers"]
        print(f"{r['kind']:>12} {r['b_master']:>9} {r['a_backup']:>9} {r['idle'] * 100:>7.1f}% {r['rate']:>7.0f} "
              f"{statistics.median(f) * 1000:>18.0f} {min(f) * 1000:>5.0f} {max(f) * 1000:>5.0f}")
        print(f"{'':>12} failovers (ms): {', '.join(f'{x * 1000:.0f}' for x in f)}")
    if len(results) == 2:
        k, h = (statistics.median(r["failovers"]) for r in results)
        print(f"halb/keepalived failover median: {h / k:.2f}")


if __name__ == "__main__":
    main()
