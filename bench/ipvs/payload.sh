#!/bin/bash
# bench/ipvs's payload, run inside the IPVS VM as /payload/run.sh.
#
# 1. apply: keepalived and halb in turn (order alternating by round) load /payload/big.conf
#    (1,000 virtual servers x 10 real servers, no checkers) into an empty IPVS table. Measured:
#    time from the process start until the kernel holds every service and destination, the
#    daemon's RSS then (all its processes), the table's digest, and the time until SIGTERM has
#    emptied the table again.
# 2. pps: client -> VIP (director, IPVS direct routing) -> real server, on a bridge; the service
#    programmed by keepalived or by halb from /payload/pps.conf; iperf3 UDP with 64-byte
#    datagrams, unlimited rate, for PPS_TIME seconds; the real server's received datagrams/s.
# Lines "result apply DAEMON ROUND apply_ms rss_kib remove_ms digest" carry the first figures;
# iperf3's JSON report follows each "@@iperf3 DAEMON ROUND" line, up to "@@end".
set -u
ROUNDS="${ROUNDS:-3}"
PPS_TIME="${PPS_TIME:-8}"
SERVICES="${SERVICES:-1000}"
DESTS="${DESTS:-10}"
# /proc/net/ip_vs: three header lines, then one line per service and one per destination.
WANT_LINES=$((3 + SERVICES + SERVICES * DESTS))

now_ms() {
    local t="${EPOCHREALTIME/./}"
    echo $((t / 1000))
}

# A C program reads the 11,000-line table: a shell loop would take the machine's only CPU from
# the daemon being measured.
lines() {
    wc -l </proc/net/ip_vs
}

# rss_kib PID: VmRSS of PID and its children, in KiB.
rss_kib() {
    local root="$1" total=0 pid ppid rss
    for stat in /proc/[0-9]*/stat; do
        pid="${stat#/proc/}"
        pid="${pid%/stat}"
        ppid="$(awk '{print $4}' "$stat" 2>/dev/null)"
        if [ "$pid" = "$root" ] || [ "$ppid" = "$root" ]; then
            rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)"
            total=$((total + ${rss:-0}))
        fi
    done
    echo "$total"
}

# memory_detail DAEMON ROUND PID: where the RSS is, per process of the daemon: anonymous memory
# (the heap), file-backed pages (the binary and libraries), threads.
memory_detail() {
    local daemon="$1" round="$2" root="$3" pid ppid
    for stat in /proc/[0-9]*/stat; do
        pid="${stat#/proc/}"
        pid="${pid%/stat}"
        ppid="$(awk '{print $4}' "$stat" 2>/dev/null)"
        if [ "$pid" = "$root" ] || [ "$ppid" = "$root" ]; then
            echo "memory $daemon $round pid $pid $(awk '/^(VmRSS|RssAnon|RssFile|RssShmem|VmHWM|Threads):/ {printf "%s %s ", $1, $2}' "/proc/$pid/status" 2>/dev/null)"
        fi
    done
}

start() {
    local daemon="$1" conf="$2" tag="$3"
    if [ "$daemon" = keepalived ]; then
        keepalived -n -D -f "$conf" -p "/run/k-$tag.pid" -c "/run/kc-$tag.pid" \
            -r "/run/kv-$tag.pid" -b "/run/kb-$tag.pid" >"/tmp/$daemon-$tag.log" 2>&1 &
    else
        # shellcheck disable=SC2086 # HALB_ENV is a list of NAME=VALUE words
        env ${HALB_ENV:-} halb run -f "$conf" --dataplane ipvs --no-dr-path-check --control-socket "/run/halb-$tag.sock" \
            >"/tmp/$daemon-$tag.log" 2>&1 &
    fi
    echo $!
}

stop() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

apply_round() {
    local daemon="$1" round="$2" pid t0 applied rss digest removed limit
    ipvsadm -C
    t0="$(now_ms)"
    pid="$(start "$daemon" /payload/big.conf "big$round")"
    limit=$((t0 + 300000))
    until [ "$(lines)" -ge "$WANT_LINES" ]; do
        if [ "$(now_ms)" -gt "$limit" ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "apply: $daemon did not program the table (have $(lines) of $WANT_LINES lines)"
            tail -n 20 "/tmp/$daemon-big$round.log"
            stop "$pid"
            return
        fi
        sleep 0.05
    done
    applied=$(($(now_ms) - t0))
    # Let the daemon settle (keepalived's checker child finishes its start) before measuring.
    sleep 2
    rss="$(rss_kib "$pid")"
    memory_detail "$daemon" "$round" "$pid"
    digest="$(ipvsadm -S -n | sort | md5sum | cut -c1-12)"
    t0="$(now_ms)"
    kill -TERM "$pid"
    until [ "$(lines)" -le 3 ]; do
        if [ "$(($(now_ms) - t0))" -gt 60000 ]; then
            break
        fi
        sleep 0.05
    done
    removed=$(($(now_ms) - t0))
    [ "$(lines)" -le 3 ] || removed="left-$(($(lines) - 3))-lines"
    stop "$pid"
    echo "result apply $daemon $round $applied $rss $removed $digest"
}

host() {
    local ns="$1" addr="$2"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "v-$ns" type veth peer name eth0 netns "$ns"
    ip link set "v-$ns" master br0 up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
}

pps_setup() {
    ip link add br0 type bridge
    ip link set br0 up
    host cl 10.9.0.10
    host dir 10.9.0.2
    host rs 10.9.0.21
    ip -n dir addr add 10.9.0.100/24 dev eth0
    ip -n rs addr add 10.9.0.100/32 dev lo
    for k in all lo; do
        ip netns exec rs sysctl -qw "net.ipv4.conf.$k.arp_ignore=1"
        ip netns exec rs sysctl -qw "net.ipv4.conf.$k.arp_announce=2"
    done
    # Bound to the VIP: a UDP reply from an unbound socket would leave from the real server's own
    # address, which the client does not expect.
    ip netns exec rs iperf3 -s -B 10.9.0.100 -D --logfile /tmp/iperf3-server.log
    sleep 2
}

pps_round() {
    local daemon="$1" round="$2" pid limit out
    ip netns exec dir ipvsadm -C
    pid="$(ip netns exec dir bash -c "$(declare -f start); start $daemon /payload/pps.conf pps$round")"
    limit=$(($(now_ms) + 60000))
    until [ "$(ip netns exec dir ipvsadm -L -n | grep -c '10.9.0.21:5201')" -ge 2 ]; do
        if [ "$(now_ms)" -gt "$limit" ]; then
            echo "pps: $daemon did not program the service"
            tail -n 20 "/tmp/$daemon-pps$round.log"
            stop "$pid"
            return
        fi
        sleep 0.1
    done
    echo "@@iperf3 $daemon $round"
    ip netns exec cl iperf3 -c 10.9.0.100 -u -b 0 -l 64 -t "$PPS_TIME" -J 2>&1
    echo "@@end"
    stop "$pid"
    sleep 2
}

modprobe ip_vs
busybox syslogd -O /tmp/syslog.log
echo "lines wanted: $WANT_LINES"

# alternate STEP: STEP DAEMON ROUND for both daemons in every round, keepalived first in odd rounds.
alternate() {
    local step="$1" round daemon order
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then order="keepalived halb"; else order="halb keepalived"; fi
        for daemon in $order; do
            "$step" "$daemon" "$round"
        done
    done
}

case "${ONLY:-apply,pps}" in *apply*) alternate apply_round ;; esac
case "${ONLY:-apply,pps}" in *pps*) pps_setup && alternate pps_round ;; esac
exit 0
