#!/bin/bash
# The connection-fencing payload, run by the IPVS VM's /init as /payload/run.sh.
#
# A LAN on a bridge in the machine's root namespace, every host a network namespace with no route
# out of 10.0.0.0/24: cl 10.0.0.10 (client), d1 10.0.0.2 (director), r1 10.0.0.21 (the real
# server: the old master) and r2 10.0.0.22 (the sorry server), both direct routing, echoing lines
# on :9000; r1's check answers on :9001. VIP 10.0.0.100, held by VRRP.
#
# For each DAEMON (FENCING, space-separated, default "keepalived halb"), from the same file:
#   out       a client holds a connection on r1 and sends a line every 100 ms; r1's check port
#             closes while r1 goes on serving, the sorry server takes over. Does the connection
#             to r1 go on, or end, and how long after the switch?
#   handback  a client holds a connection on r2 (the sorry server); r1's check answers again and
#             r1 takes the traffic back. The same question for the connection to r2: the seed's
#             complaint (connections left on the old master for minutes after the failback).
# Results are printed in sections that start with "@@ipvs-fence@@ NAME".
set -u
# shellcheck source=lan.sh
source /payload/lan.sh

MARK='@@ipvs-fence@@'
VIP=10.0.0.100
# How long a connection is watched after the switch before it counts as left open.
WATCH_S=6

start_check_port() {
    ip netns exec r1 busybox nc -ll -p 9001 -e true &
    echo $! >/tmp/check.pid
}

stop_check_port() {
    kill "$(cat /tmp/check.pid)" 2>/dev/null
    wait "$(cat /tmp/check.pid)" 2>/dev/null
}

setup() {
    modprobe ip_vs
    busybox syslogd -O /tmp/syslog.log
    bridge br0
    host cl 10.0.0.10
    host d1 10.0.0.2
    host r1 10.0.0.21
    host r2 10.0.0.22
    for rs in r1 r2; do
        ip netns exec "$rs" busybox nc -ll -p 9000 -e cat &
        ip netns exec "$rs" halb realserver start --vip "$VIP"
    done
    sleep 2
}

has_vip() {
    ip -n d1 -4 addr show dev eth0 | grep -q "inet $VIP/"
}

# in_table ADDR: whether ADDR:9000 is a destination with a weight above 0.
in_table() {
    ip netns exec d1 ipvsadm -L -n | grep -q -- "->  *$1:9000  *Route  *[1-9]"
}

# switch_ms HEX WANT: waits (30 s at most) inside d1 until the destination HEX (address:port as
# /proc/net/ip_vs writes it) is in the table (WANT=in) or out of it (WANT=out), polling every
# 20 ms without leaving the namespace; prints the time it saw it, or nothing.
switch_ms() {
    ip netns exec d1 bash -c '
        now_ms() { local t="${EPOCHREALTIME/./}"; echo $((t / 1000)); }
        limit=$(($(now_ms) + 30000))
        while [ "$(now_ms)" -lt "$limit" ]; do
            if grep -q -- "-> '"$1"' *Route *[1-9]" /proc/net/ip_vs; then has=in; else has=out; fi
            [ "$has" = '"$2"' ] && { now_ms; exit 0; }
            sleep 0.02
        done'
}

start_daemon() {
    local daemon="$1"
    ip netns exec d1 sysctl -q -w net.ipv4.vs.expire_nodest_conn=0
    if [ "$daemon" = keepalived ]; then
        ip netns exec d1 keepalived -n -l -D -f /payload/fence.conf -p /run/d1-k.pid \
            -c /run/d1-kc.pid -r /run/d1-kv.pid -b /run/d1-kb.pid >"/tmp/d1-$daemon.log" 2>&1 &
    else
        ip netns exec d1 halb run -f /payload/fence.conf --dataplane ipvs \
            --control-socket /run/d1-halb.sock >"/tmp/d1-$daemon.log" 2>&1 &
    fi
    echo $! >/tmp/d1.pid
}

stop_daemon() {
    local pid i
    pid="$(cat /tmp/d1.pid)"
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ip netns exec d1 ipvsadm -C
    ip -n d1 addr del "$VIP/24" dev eth0 2>/dev/null
}

# client NAME: a connection to VIP:9000 from cl that sends a line every 100 ms and reads its echo
# (1 s at most), until /tmp/NAME.stop appears. Prints "ended_ms: T rc: RC" when a write or read
# fails (rc 1: reset or closed; above 128: no answer within 1 s, a stall), else "open_ms: T".
client() {
    local name="$1"
    ip netns exec cl bash -c '
        now_ms() { local t="${EPOCHREALTIME/./}"; echo $((t / 1000)); }
        trap "" PIPE
        exec 3<>/dev/tcp/'"$VIP"'/9000 || { echo "connect failed"; exit 1; }
        i=0
        while [ ! -e /tmp/'"$name"'.stop ]; do
            i=$((i + 1))
            echo "line $i" >&3 2>/dev/null || { echo "ended_ms: $(now_ms) rc: 1 at: write $i"; exit 0; }
            read -r -t 1 l <&3
            rc=$?
            if [ "$rc" -ne 0 ]; then echo "ended_ms: $(now_ms) rc: $rc at: read $i"; exit 0; fi
            [ "$i" -eq 5 ] && touch /tmp/'"$name"'.connected
            sleep 0.1
        done
        echo "open_ms: $(now_ms) lines: $i"
    ' >"/tmp/$name.log" 2>&1 &
    echo $! >"/tmp/$name.pid"
}

# watch NAME SWITCHED_MS CAUSE_MS: waits for the client to end (WATCH_S at most), then reports
# the times from the switch seen in the table (polled every 20 ms, so the end may come a little
# before)
# and from its cause (the check port closed or opened).
watch_client() {
    local name="$1" switched="$2" cause="$3" ended
    wait_for "$WATCH_S" sh -c "grep -q ended_ms /tmp/$name.log"
    echo "conns_at_end:"
    ip netns exec d1 ipvsadm -L -n -c | grep ':9000' || echo "(none)"
    touch "/tmp/$name.stop"
    wait "$(cat "/tmp/$name.pid")"
    cat "/tmp/$name.log"
    ended="$(sed -n 's/^ended_ms: \([0-9]*\).*/\1/p' "/tmp/$name.log")"
    if [ -n "$ended" ]; then
        echo "ended_after_switch_ms: $((ended - switched))"
        echo "ended_after_cause_ms: $((ended - cause))"
        echo "ended_rc: $(sed -n 's/.* rc: \([0-9]*\).*/\1/p' "/tmp/$name.log")"
    else
        echo "open_after_switch_s: $WATCH_S"
    fi
}

scenario() {
    local daemon="$1" switched cause
    rm -f /tmp/out.* /tmp/back.*
    start_check_port
    start_daemon "$daemon"
    if ! wait_for 60 has_vip || ! wait_for 60 in_table 10.0.0.21; then
        section "out $daemon"
        echo "result: director not ready"
        tail -n 30 "/tmp/d1-$daemon.log"
        stop_daemon
        stop_check_port
        return
    fi

    section "out $daemon"
    client out
    wait_for 10 test -e /tmp/out.connected || echo "client never connected"
    echo "conns_before:"
    ip netns exec d1 ipvsadm -L -n -c | grep ':9000' || echo "(none)"
    stop_check_port
    cause="$(now_ms)"
    # 10.0.0.22:9000, the sorry server, comes in.
    switched="$(switch_ms 0A000016:2328 in)"
    if [ -n "$switched" ]; then
        echo "switched: yes"
    else
        switched="$(now_ms)"
        echo "switched: no"
    fi
    echo "switch_seen_after_cause_ms: $((switched - cause))"
    watch_client out "$switched" "$cause"

    section "handback $daemon"
    client back
    wait_for 10 test -e /tmp/back.connected || echo "client never connected"
    echo "conns_before:"
    ip netns exec d1 ipvsadm -L -n -c | grep ':9000' || echo "(none)"
    start_check_port
    cause="$(now_ms)"
    switched="$(switch_ms 0A000016:2328 out)"
    if [ -n "$switched" ]; then
        echo "switched: yes"
    else
        switched="$(now_ms)"
        echo "switched: no"
    fi
    echo "switch_seen_after_cause_ms: $((switched - cause))"
    watch_client back "$switched" "$cause"
    echo "expire_nodest_conn: $(ip netns exec d1 sysctl -n net.ipv4.vs.expire_nodest_conn)"
    stop_daemon
    stop_check_port
    section "log $daemon"
    tail -n 20 "/tmp/d1-$daemon.log"
}

setup
for d in ${FENCING:-keepalived halb}; do
    scenario "$d"
done
section end
exit 0
