#!/bin/bash
# The IPVS scenarios' payload, run by the IPVS VM's /init as /payload/run.sh.
#
# A LAN on a bridge in the machine's root namespace, every host a network namespace with no route
# out of 10.0.0.0/24:
#   cl 10.0.0.10 (client), d1 10.0.0.2 and d2 10.0.0.3 (directors), r1 10.0.0.21 and r2 10.0.0.22
#   (real servers, direct routing), VIP 10.0.0.100 held by VRRP.
# Real servers answer on :80 with their name (one line, then close) and echo lines on :9000.
#
# Scenarios (SCENARIOS, space-separated, default all):
#   dr DAEMON   DAEMON (halb or keepalived) directs from d1; `halb realserver stop` on r2 removes
#               r2's VIP from lo; what the client gets before and after, and the table.
#   sync MODE   halb on d1 (MASTER) and d2 (BACKUP); a client connection to VIP:9000 through d1,
#               then d1 dies (halb killed, link down); does the connection work through d2?
#               MODE: "sync" with lvs_sync_daemon, "nosync" without (the control).
# Results are printed in sections that start with "@@ipvs-scn@@ NAME".
set -u
# shellcheck source=lan.sh
source /payload/lan.sh

MARK='@@ipvs-scn@@'
VIP=10.0.0.100

setup() {
    modprobe ip_vs
    busybox syslogd -O /tmp/syslog.log
    bridge br0
    host cl 10.0.0.10
    host d1 10.0.0.2
    host d2 10.0.0.3
    host r1 10.0.0.21
    host r2 10.0.0.22
    for rs in r1 r2; do
        ip netns exec "$rs" busybox nc -ll -p 80 -e echo "$rs" &
        ip netns exec "$rs" busybox nc -ll -p 9000 -e cat &
        ip netns exec "$rs" halb realserver start --vip "$VIP"
    done
    # Let the bridge ports forward before anything counts on them.
    sleep 2
}

# ask: one connection to VIP:80 from the client; prints the server's name or "fail".
ask() {
    local got
    got="$(ip netns exec cl busybox timeout 2 bash -c \
        "exec 3<>/dev/tcp/$VIP/80 && read -r -t 1 l <&3 && echo \"\$l\"" 2>/dev/null)"
    echo "${got:-fail}"
}

# tally N: N connections; prints "r1=A r2=B fail=C".
tally() {
    local n="$1" i r1=0 r2=0 fail=0
    for i in $(seq "$n"); do
        case "$(ask)" in
        r1) r1=$((r1 + 1)) ;;
        r2) r2=$((r2 + 1)) ;;
        *) fail=$((fail + 1)) ;;
        esac
    done
    echo "r1=$r1 r2=$r2 fail=$fail"
}

has_vip() {
    ip -n "$1" -4 addr show dev eth0 | grep -q "inet $VIP/"
}

dests() {
    ip netns exec "$1" ipvsadm -L -n | grep -c -- '->  *10\.0\.0\.2[12]:80'
}

two_dests() {
    [ "$(dests "$1")" -eq 2 ]
}

# start_daemon NS DAEMON CONF: starts keepalived or halb in NS; its pid in /tmp/NS.pid.
start_daemon() {
    local ns="$1" daemon="$2" conf="$3"
    if [ "$daemon" = keepalived ]; then
        ip netns exec "$ns" keepalived -n -l -D -f "$conf" -p "/run/$ns-k.pid" \
            -c "/run/$ns-kc.pid" -r "/run/$ns-kv.pid" -b "/run/$ns-kb.pid" >"/tmp/$ns-$daemon.log" 2>&1 &
    else
        ip netns exec "$ns" halb run -f "$conf" --dataplane ipvs \
            --control-socket "/run/$ns-halb.sock" >"/tmp/$ns-$daemon.log" 2>&1 &
    fi
    echo $! >"/tmp/$ns.pid"
}

# stop_daemon NS: SIGTERM, wait, then leave the namespace's IPVS table empty.
stop_daemon() {
    local ns="$1" pid i
    pid="$(cat "/tmp/$ns.pid")"
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ip netns exec "$ns" ipvsadm -C
}

# dr DAEMON
scenario_dr() {
    local daemon="$1" started
    section "dr $daemon"
    start_daemon d1 "$daemon" /payload/dr.conf
    started="$(now_ms)"
    if ! wait_for 60 has_vip d1 || ! wait_for 60 two_dests d1; then
        echo "result: director not ready"
        ip netns exec d1 ipvsadm -L -n
        tail -n 30 "/tmp/d1-$daemon.log"
        stop_daemon d1
        return
    fi
    echo "ready_ms: $(($(now_ms) - started))"
    echo "before: $(tally 20)"
    ip netns exec r2 halb realserver stop --vip "$VIP"
    local stopped
    stopped="$(now_ms)"
    # halb's DR-path check: connect_timeout 5 s, one retry 1 s later, delay_loop 2 s: out
    # within about 13 s; TCG on a loaded host is slower.
    wait_for 40 sh -c "[ \"\$(ip netns exec d1 ipvsadm -L -n | grep -c -- '->  *10\.0\.0\.22:80')\" -eq 0 ]" &&
        echo "r2_removed_ms: $(($(now_ms) - stopped))"
    sleep 1
    echo "after: $(tally 20)"
    echo "table:"
    ip netns exec d1 ipvsadm -L -n | grep -- '->  *10\.0\.0\.2'
    stop_daemon d1
    ip netns exec r2 halb realserver start --vip "$VIP"
    section "dr-log $daemon"
    tail -n 40 "/tmp/d1-$daemon.log"
}

# The client side of the long connection: lines before, a pause until /tmp/go-on, lines after.
long_client() {
    ip netns exec cl bash -c '
        trap "" PIPE
        exec 3<>/dev/tcp/'"$VIP"'/9000 || { echo "connect failed"; exit 1; }
        for i in 1 2 3 4 5 6; do
            echo "before $i" >&3
            if read -r -t 2 l <&3; then echo "got: $l"; else echo "lost: before $i"; exit 1; fi
        done
        touch /tmp/connected
        while [ ! -e /tmp/go-on ]; do sleep 0.1; done
        ok=0
        for i in 1 2 3; do
            echo "after $i" >&3 2>/dev/null || { echo "lost: write after $i"; break; }
            if read -r -t 5 l <&3; then echo "got: $l"; ok=$((ok + 1)); else echo "lost: after $i"; fi
        done
        echo "after_ok: $ok"
    '
}

# sync MODE
scenario_sync() {
    local mode="$1" conf_suffix="$1" started
    section "sync $mode"
    rm -f /tmp/connected /tmp/go-on
    ip -n d1 link set eth0 up
    start_daemon d1 halb "/payload/failover-$conf_suffix-d1.conf"
    start_daemon d2 halb "/payload/failover-$conf_suffix-d2.conf"
    if ! wait_for 60 has_vip d1; then
        echo "result: d1 never became MASTER"
        tail -n 30 /tmp/d1-halb.log
        stop_daemon d1
        stop_daemon d2
        return
    fi
    # Both directors program the service whatever their VRRP state.
    wait_for 30 sh -c "ip netns exec d2 ipvsadm -L -n | grep -q 10.0.0.21:9000"
    long_client >/tmp/long-client.log 2>&1 &
    local client=$!
    wait_for 20 test -e /tmp/connected || echo "client never connected"
    # The master sync daemon sends what it collected at least every 2 s.
    sleep 3
    echo "d1_conns:"
    ip netns exec d1 ipvsadm -L -n -c | grep ':9000' || echo "(none)"
    echo "d2_conns_before:"
    ip netns exec d2 ipvsadm -L -n -c | grep ':9000' || echo "(none)"
    echo "d2_daemon: $(ip netns exec d2 ipvsadm -L --daemon | tr '\n' ' ')"
    echo "d1_daemon: $(ip netns exec d1 ipvsadm -L --daemon | tr '\n' ' ')"
    # d1 dies: its daemon is killed and its link goes down, as when the machine fails.
    started="$(now_ms)"
    kill -KILL "$(cat /tmp/d1.pid)"
    ip -n d1 link set eth0 down
    if wait_for 30 has_vip d2; then
        echo "vip_on_d2_ms: $(($(now_ms) - started))"
    else
        echo "vip_on_d2_ms: never"
    fi
    sleep 1
    touch /tmp/go-on
    wait "$client"
    section "sync-client $mode"
    cat /tmp/long-client.log
    section "sync-after $mode"
    echo "d2_conns_after:"
    ip netns exec d2 ipvsadm -L -n -c | grep ':9000' || echo "(none)"
    wait "$(cat /tmp/d1.pid)" 2>/dev/null
    ip netns exec d1 ipvsadm -C
    ip netns exec d1 ipvsadm --stop-daemon master 2>/dev/null
    ip -n d1 addr del "$VIP/24" dev eth0 2>/dev/null
    stop_daemon d2
    section "sync-log $mode"
    tail -n 25 /tmp/d2-halb.log
}

setup
for s in ${SCENARIOS:-dr:halb dr:keepalived sync:sync sync:nosync}; do
    "scenario_${s%%:*}" "${s#*:}"
done
section end
exit 0
