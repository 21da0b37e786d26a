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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED = REPO.parent / "shared" / "seed" / "keepalived-master.conf"
VIP = "192.168.66.251"
PORT = 3306
PID = os.getpid()


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def ns_name(tag):
    return f"halbt-vrrp-bench-{tag}-{PID}"


class Lab:
    def __init__(self):
        self.names = [ns_name(t) for t in ("br", "a", "b", "c")]
        self.br, self.a, self.b, self.c = self.names
        self.procs = []
        for n in self.names:
            sh("ip", "netns", "del", n, check=False)
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", self.br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.br, "link", "set", "br0", "up")
        for ns, port, host in ((self.a, "a0", 11), (self.b, "b0", 12), (self.c, "c0", 100)):
            sh("ip", "-n", self.br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", self.br, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"192.168.66.{host}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        for ns in (self.a, self.b):
            # The banner: a tiny server in each director answering with its name.
            code = (
                "import socket,sys\n"
                "s=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                f"s.bind(('::',{PORT}));s.listen(64)\n"
                "while True:\n c,_=s.accept();c.sendall(sys.argv[1].encode());c.close()\n"
            )
            self.spawn([sys.executable, "-c", code, ns], ns, os.devnull)

    def spawn(self, argv, ns, log):
        out = open(log, "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=out,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def kill(self, p, sig=signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        p.wait()

    def has_vip(self, ns):
        return f" {VIP}/" in sh("ip", "-n", ns, "-o", "addr", "show", "dev", "eth0").stdout

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                self.kill(p)
        for n in reversed(self.names):
            sh("ip", "netns", "del", n, check=False)


def probe(lab, want, timeout):
    """Connects from the client until `want` answers; returns the instant it did."""
    code = (
        "import socket,sys,time\n"
        f"end=time.monotonic()+{timeout}\n"
        "while time.monotonic()<end:\n"
        " try:\n"
        f"  c=socket.create_connection(('{VIP}',{PORT}),timeout=0.05);d=c.recv(64);c.close()\n"
        "  if d.decode()==sys.argv[1]:\n   print(time.time());sys.exit(0)\n"
        " except OSError: pass\n"
        " time.sleep(0.01)\n"
        "sys.exit(1)\n"
    )
    r = subprocess.run(["ip", "netns", "exec", lab.c, sys.executable, "-c", code, want],
                       capture_output=True, text=True)
    return float(r.stdout) if r.returncode == 0 else None


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
    lab = Lab()
    try:
        master = Path(tmp, "master.conf")
        backup = Path(tmp, "backup.conf")
        master.write_text(config("MASTER", 100, advert_int))
        backup.write_text(config("BACKUP", 90, advert_int))
        m = lab.spawn(daemon_argv(kind, master, tmp, "m", halb), lab.a, f"{tmp}/{kind}-master.log")
        lab.spawn(daemon_argv(kind, backup, tmp, "b", halb), lab.b, f"{tmp}/{kind}-backup.log")
        end = time.monotonic() + 15
        while not (lab.has_vip(lab.a) and not lab.has_vip(lab.b)):
            if time.monotonic() > end:
                raise RuntimeError(f"{kind}: no MASTER on A")
            time.sleep(0.05)
        if probe(lab, lab.a, 5) is None:
            raise RuntimeError(f"{kind}: the VIP does not answer from A")
        time.sleep(1.5 * float(advert_int))  # mid-interval, as a crash would be
        killed = time.time()
        lab.kill(m)
        answered = probe(lab, lab.b, 10 * float(advert_int) + 5)
        if answered is None:
            log = Path(tmp, f"{kind}-backup.log").read_text(errors="replace")
            tail = "\n".join(log.splitlines()[-15:])
            raise RuntimeError(f"{kind}: the VIP never answered from B; B's log ends:\n{tail}")
        return answered - killed
    finally:
        lab.close()


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
