#!/usr/bin/env python3
"""Failover time: SIGKILL of the MASTER director -> the VIP answers from the BACKUP.

Both directors run the seed's VRRP part (MASTER 100 / BACKUP 90, VRRPv2, advert_int 1, PASS),
as keepalived + keepalived and as halb + halb, in the same run, on the same kind of segment:
three network namespaces (director A, director B, client) on a bridge in a fourth. Nothing
leaves the namespaces. The client connects to VIP:3306 every 10 ms; each director answers there
with its own name, so "answering from the backup" is seen at the client, after the gratuitous
ARPs moved it.

Usage (root): bench/failover/failover.py [--rounds N] [--halb PATH] [--advert-int S]
Prints per-round times and the medians, and halb's median as a ratio of keepalived's.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import netlab  # noqa: E402  (bench/netlab.py)

REPO = Path(__file__).resolve().parents[2]
SEED = REPO.parent / "shared" / "seed" / "keepalived-master.conf"
VIP = "192.168.66.251"
PORT = 3306


HOSTS = {"a": 11, "b": 12, "c": 100}


def new_lab():
    """Directors a and b, client c; each director answers on PORT with its name."""
    lab = netlab.Lab("vrrp-bench", HOSTS)
    for tag in ("a", "b"):
        netlab.start_banner(lab, tag, PORT)
    return lab


def probe(lab, want, timeout):
    """Connects from the client until director `want` answers; returns the instant it did."""
    return netlab.probe_banner(lab, "c", VIP, PORT, want, timeout)


def config(state, priority, advert_int):
    text = SEED.read_text().split("\nvirtual_server ")[0]
    out = []
    skip_block = False
    for line in text.splitlines():
        w = line.split()
        if skip_block:
            # VRRPv3 has no authentication: leave the seed's PASS block out.
            skip_block = w[:1] != ["}"]
            continue
        if w[:1] == ["state"]:
            line = f"    state {state}"
        elif w[:1] == ["priority"]:
            line = f"    priority {priority}"
        elif w[:1] == ["advert_int"]:
            line = f"    advert_int {advert_int}"
            if float(advert_int) < 1:
                # Sub-second adverts exist only in VRRPv3 (centiseconds); v2 rounds to seconds.
                out.append(line)
                line = "    version 3"
        elif w[:1] == ["authentication"] and float(advert_int) < 1:
            skip_block = True
            continue
        elif w[:1] == ["lvs_sync_daemon_interface"]:
            continue  # keepalived would start IPVS's sync daemon and exit without IPVS
        out.append(line)
    return "\n".join(out) + "\n"


def daemon_argv(kind, conf, tmp, tag, halb):
    if kind == "halb":
        # Each daemon its own control socket: /run is shared by the namespaces.
        return [halb, "run", "-f", str(conf), "--control-socket", f"{tmp}/{kind}-{tag}.sock"]
    return ["keepalived", "--dont-fork", "--log-console", "--vrrp", "-f", str(conf),
            "-p", f"{tmp}/{tag}.pid", "-r", f"{tmp}/{tag}-vrrp.pid", "-c", f"{tmp}/{tag}-chk.pid"]


def one_round(kind, halb, advert_int, tmp):
    # A directory per round: keepalived refuses to start ("daemon is already running") when a
    # pid file left by an earlier round names a pid that is alive again.
    tmp = tempfile.mkdtemp(dir=tmp)
    lab = new_lab()
    try:
        master = Path(tmp, "master.conf")
        backup = Path(tmp, "backup.conf")
        master.write_text(config("MASTER", 100, advert_int))
        backup.write_text(config("BACKUP", 90, advert_int))
        m = lab.spawn("a", daemon_argv(kind, master, tmp, "m", halb), f"{tmp}/{kind}-master.log")
        lab.spawn("b", daemon_argv(kind, backup, tmp, "b", halb), f"{tmp}/{kind}-backup.log")
        end = time.monotonic() + 15
        while not (lab.has_address("a", VIP) and not lab.has_address("b", VIP)):
            if time.monotonic() > end:
                raise RuntimeError(f"{kind}: no MASTER on A")
            time.sleep(0.05)
        if probe(lab, "a", 5) is None:
            raise RuntimeError(f"{kind}: the VIP does not answer from A")
        time.sleep(1.5 * float(advert_int))  # mid-interval, as a crash would be
        killed = time.time()
        lab.kill(m)
        answered = probe(lab, "b", 10 * float(advert_int) + 5)
        if answered is None:
            log = Path(tmp, f"{kind}-backup.log").read_text(errors="replace")
            tail = "\n".join(log.splitlines()[-15:])
            raise RuntimeError(f"{kind}: the VIP never answered from B; B's log ends:\n{tail}")
        return answered - killed
    finally:
        lab.close(grace=None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--halb", default=str(REPO / "target" / "dist" / "halb"))
    ap.add_argument("--advert-int", default="1")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, raw sockets)")
    if not Path(args.halb).exists():
        sys.exit(f"{args.halb} not found: cargo build --profile dist -p halb (or pass --halb)")
    results = {"keepalived": [], "halb": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind in ("keepalived", "halb"):  # interleaved, so drift hits both
                t = one_round(kind, args.halb, args.advert_int, tmp)
                results[kind].append(t)
                print(f"round {r + 1} {kind:>10}: {t * 1000:7.0f} ms", flush=True)
    k = statistics.median(results["keepalived"])
    h = statistics.median(results["halb"])
    print(f"median keepalived {k * 1000:.0f} ms, halb {h * 1000:.0f} ms, halb/keepalived = {h / k:.2f}")


if __name__ == "__main__":
    main()
