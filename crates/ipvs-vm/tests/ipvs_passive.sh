#!/bin/bash
# The passive-detection payload, run by the IPVS VM's /init as /payload/run.sh.
#
# One LAN per daemon (IPVS state is per network namespace), prefix P = h (halb) or k
# (keepalived), bridge brP, every host a network namespace with no route out of 192.168.66.0/24:
#   P-cl 192.168.66.10 (client), P-d1 192.168.66.2 (director, VIP .251 by VRRP),
#   P-rs 192.168.66.253 (the seed's real server), P-sorry 192.168.66.254 (its sorry server);
#   both direct-routing real servers prepared with `halb realserver start`, both running MariaDB
#   on :3306 (/payload/mariadb/start.sh; its greeting names the server: version 10.11-rs or
#   10.11-sorry).
# The director runs /payload/seed.conf: the seed's virtual server 192.168.66.251 3306 and its
# timings (delay_loop 20, connect_timeout 5, nb_get_retry 3, delay_before_retry 3).
#
# Scenarios (SCENARIOS, space-separated) on every LAN of LANS (default "h"), one after the other:
#   fault:mysql-stop  the real server's mariadbd gets SIGTERM (a clean shutdown: refused)
#   fault:mysql-kill  the real server's mariadbd gets SIGKILL (connections refused)
#   fault:host        the real server's link goes down (it vanishes: no answer at all)
#     a client connects every CLIENT_EVERY_US µs; from the fault, how long until a new
#     connection is answered by the sorry server (vm-conn-load summary). On halb's LAN each
#     fault is run HALB_REPEAT times (default 1), on keepalived's once.
#   steady:N      halb only: N s of a client every STEADY_EVERY_US µs to the healthy real server;
#     no real server may be taken out; the client's tally (failures by kind) and halb's CPU
#     time over the window, with passive detection and again with --no-passive.
#   steady-light:N  the same with a listener standing for the real server's MariaDB, which
#     cannot take 1,000 connections a second under emulation.
#   table:N       halb only: N entries put in the director's table (raw SYN+ACK, ESTABLISHED),
#     then halb's CPU time over 10 s idle with and without passive detection, and the time one
#     read of /proc/net/ip_vs_conn takes.
# Results are printed in sections that start with "@@ipvs-passive@@ NAME".
set -u
# shellcheck source=lan.sh
source /payload/lan.sh

MARK='@@ipvs-passive@@'
VIP=192.168.66.251
RS=192.168.66.253
LANS="${LANS:-h}"
CLIENT_EVERY_US="${CLIENT_EVERY_US:-25000}"
STEADY_EVERY_US="${STEADY_EVERY_US:-10000}"

setup() {
    local p
    modprobe ip_vs
    modprobe ip_vs_wrr
    for p in $LANS; do
        bridge "br$p"
        host "$p-cl" 192.168.66.10 "br$p"
        host "$p-d1" 192.168.66.2 "br$p"
        host "$p-rs" "$RS" "br$p"
        host "$p-sorry" 192.168.66.254 "br$p"
        ip -n "$p-cl" addr add 192.168.66.11/24 dev eth0
        # A connection whose SYN went to a vanished server gives up after ~3 s (two
        # retransmissions), not the default two minutes.
        ip netns exec "$p-cl" sysctl -qw net.ipv4.tcp_syn_retries=2
        ip netns exec "$p-rs" halb realserver start --vip "$VIP" >/dev/null
        ip netns exec "$p-sorry" halb realserver start --vip "$VIP" >/dev/null
    done
    local t0
    t0="$(now_ms)"
    for p in $LANS; do
        serve_rs "$p"
        bash /payload/mariadb/start.sh "$p-sorry" sorry >"/tmp/$p-sorry.pid" || return 1
    done
    echo "mariadb_start_ms: $(($(now_ms) - t0)) for $(($(echo $LANS | wc -w) * 2)) server(s)"
    free -m | sed -n 2p
}

# serve_rs P: MariaDB on the LAN's real server; false if it did not start.
serve_rs() {
    bash /payload/mariadb/start.sh "$1-rs" rs >"/tmp/$1-rs.pid"
}

# stop_rs P: the real server's mariadbd ended, waited for (after a fault's signal).
stop_rs() {
    local pid i
    pid="$(cat "/tmp/$1-rs.pid")"
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    sleep 0.2
}

daemon_name() {
    if [ "$1" = k ]; then echo keepalived; else echo halb; fi
}

# start_daemon P [HALB ARGS...]: the LAN's daemon on P-d1; its pid in /tmp/P.pid.
start_daemon() {
    local p="$1"
    shift
    if [ "$p" = k ]; then
        ip netns exec k-d1 keepalived -n -l -D -f /payload/seed.conf -p /run/k-k.pid \
            -c /run/k-kc.pid -r /run/k-kv.pid -b /run/k-kb.pid >/tmp/k.log 2>&1 &
    else
        RUST_LOG="${HALB_LOG:-info,halb_check::runner=debug}" \
            ip netns exec h-d1 halb run -f /payload/seed.conf --dataplane ipvs \
            --control-socket /run/h-halb.sock "$@" >/tmp/h.log 2>&1 &
    fi
    echo $! >"/tmp/$p.pid"
}

stop_daemon() {
    local p="$1" pid i
    pid="$(cat "/tmp/$p.pid")"
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ip netns exec "$p-d1" ipvsadm -C
}

# ready P: the VIP is on the director and the real server in its table.
ready() {
    ip -n "$1-d1" -4 addr show dev eth0 | grep -q "inet $VIP/" || return 1
    ip netns exec "$1-d1" ipvsadm -L -n | grep -q -- "-> $RS:3306"
}

# cpu_ticks PID: user + system time of PID in clock ticks.
cpu_ticks() {
    local f
    read -r -a f <"/proc/$1/stat"
    echo $((f[13] + f[14]))
}

# start_all ARGS: every LAN's daemon, then wait until each is ready; false if one is not.
start_all() {
    local p ok=0
    for p in $LANS; do
        start_daemon "$p" "$@"
    done
    for p in $LANS; do
        if ! wait_for 60 ready "$p"; then
            echo "$(daemon_name "$p"): not ready"
            tail -n 30 "/tmp/$p.log"
            ok=1
        fi
    done
    return $ok
}

stop_all() {
    local p
    for p in $LANS; do
        stop_daemon "$p"
    done
}

# fault KIND: the fault on each LAN of LANS in turn (one emulated CPU cannot carry two
# clients and two daemons at once without failing connections that have nothing to do with it);
# HALB_REPEAT times on halb's LAN.
scenario_fault() {
    local lan all="$LANS" i runs
    for lan in $all; do
        runs=1
        [ "$lan" = h ] && runs="${HALB_REPEAT:-1}"
        for i in $(seq "$runs"); do
            LANS="$lan" fault_on "$1" "$i"
        done
    done
    LANS="$all"
}

fault_on() {
    local kind="$1" run="$2" p fault for_ms name
    section "fault $kind"
    if ! start_all; then
        stop_all
        return
    fi
    # keepalived takes up to delay_loop + (1 + retries) x connect_timeout + retries x
    # delay_before_retry: 20 + 20 + 9 s for a vanished host.
    # halb: a window of about 17 s after the fault (the test's bound is 15 s; a loaded host
    # stretches the 2 s before it).
    for_ms=19000
    case " $LANS " in *" k "*) for_ms=55000 ;; esac
    for p in $LANS; do
        ip netns exec "$p-cl" vm-conn-load client "$VIP:3306" "$CLIENT_EVERY_US" "$for_ms" 1000 \
            "/tmp/$p-$kind.out" &
        echo $! >"/tmp/$p-client.pid"
    done
    sleep 2
    fault="$(now_ms)"
    for p in $LANS; do
        case "$kind" in
        mysql-stop) kill -TERM "$(cat "/tmp/$p-rs.pid")" ;;
        mysql-kill) kill -KILL "$(cat "/tmp/$p-rs.pid")" ;;
        host) ip link set "v-$p-rs" down ;;
        esac
    done
    for p in $LANS; do
        wait "$(cat "/tmp/$p-client.pid")"
    done
    for p in $LANS; do
        name="$(daemon_name "$p")"
        section "fault $kind $name $run"
        vm-conn-load summary "/tmp/$p-$kind.out" "$fault" sorry
        echo "table:"
        ip netns exec "$p-d1" ipvsadm -L -n | grep -- '->' | grep -v 'RemoteAddress'
        # Where the time went: halb's log from the fault on, with times relative to it.
        section "fault-log $kind $name $run"
        fault_log "$p" "$fault"
    done
    stop_all
    for p in $LANS; do
        case "$kind" in
        mysql-*)
            stop_rs "$p"
            serve_rs "$p" || echo "the real server's MariaDB did not start again"
            ;;
        host) ip link set "v-$p-rs" up ;;
        esac
    done
    sleep 1
}

# fault_log P FAULT_MS: the daemon's log lines about the fault.
# halb's lines carry a UTC time of day, shown in ms from the fault; keepalived's carry none.
fault_log() {
    grep -i -E 'stall|brought forward|removing|adding|sorry|fail|timeout|down|quorum|closed' "/tmp/$1.log" |
        awk -v f="$2" '
            /^20[0-9][0-9]-/ {
                split(substr($1, 12), a, ":")
                rel = (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 - (f % 86400000)
                if (rel < -1000) next
                $1 = sprintf("%+6d ms", rel)
            }
            { print }' | tail -n 25
}

# steady_window SECONDS [HALB ARGS...]: halb with a client at STEADY_EVERY_US; prints the tally,
# halb's CPU ticks over the window and whether the real server ever left.
steady_window() {
    local secs="$1" pid t0 t1 c0 c1
    shift
    LANS=h start_all "$@" || { LANS=h stop_all; return; }
    pid="$(cat /tmp/h.pid)"
    ip netns exec h-cl vm-conn-load client "$VIP:3306" "$STEADY_EVERY_US" $((secs * 1000)) 1000 \
        /tmp/h-steady.out &
    local client=$!
    sleep 1
    c0="$(cpu_ticks "$pid")"
    t0="$(now_ms)"
    sleep $((secs - 2))
    c1="$(cpu_ticks "$pid")"
    t1="$(now_ms)"
    echo "entries: $(($(ip netns exec h-d1 cat /proc/net/ip_vs_conn | wc -l) - 1))"
    wait "$client"
    vm-conn-load summary /tmp/h-steady.out 0 rs
    echo "cpu_ticks: $((c1 - c0)) in $((t1 - t0)) ms"
    echo "removed: $(grep -c -i 'removing service' /tmp/h.log)"
    echo "stall_lines: $(grep -c 'stall' /tmp/h.log)"
    LANS=h stop_all
}

# steady SECONDS
scenario_steady() {
    section "steady passive"
    steady_window "$1"
    section "steady-log passive"
    grep -i -E 'stall|removing|fail|timeout' /tmp/h.log | tail -n 10
    section "steady no-passive"
    steady_window "$1" --no-passive
}

# steady-light SECONDS: the same with the real server's MariaDB replaced for the while by a
# listener that greets at once (vm-conn-load serve, named rs): under emulation MariaDB cannot
# take 1,000 connections a second, and what passive detection reads is the kernel's handshake,
# which any listener completes.
scenario_steady_light() {
    kill -TERM "$(cat /tmp/h-rs.pid)"
    stop_rs h
    ip netns exec h-rs vm-conn-load serve 0.0.0.0:3306 rs &
    local light=$!
    section "steady-light passive"
    steady_window "$1"
    section "steady-light-log passive"
    grep -i -E 'stall|removing|fail|timeout' /tmp/h.log | tail -n 10
    section "steady-light no-passive"
    steady_window "$1" --no-passive
    kill "$light"
    wait "$light" 2>/dev/null
    serve_rs h || echo "the real server's MariaDB did not start again"
}

# table COUNT: for each mode, halb started, COUNT entries added (they go when its service is
# deleted at its stop: halb sets expire_nodest_conn), the cost of one read, halb's CPU over 10 s.
scenario_table() {
    local count="$1" half pid c0 c1 t0 t1 mode args
    half=$((count / 2))
    for mode in no-passive passive; do
        section "table $count $mode"
        args=()
        [ "$mode" = no-passive ] && args=(--no-passive)
        LANS=h start_all "${args[@]}" || { LANS=h stop_all; continue; }
        pid="$(cat /tmp/h.pid)"
        ip netns exec h-cl vm-conn-load established 192.168.66.10 "$VIP:3306" "$half"
        ip netns exec h-cl vm-conn-load established 192.168.66.11 "$VIP:3306" $((count - half))
        sleep 2
        echo "entries: $(($(ip netns exec h-d1 cat /proc/net/ip_vs_conn | wc -l) - 1))"
        t0="$(now_ms)"
        ip netns exec h-d1 cat /proc/net/ip_vs_conn >/dev/null
        t1="$(now_ms)"
        echo "one_read_ms: $((t1 - t0))"
        c0="$(cpu_ticks "$pid")"
        t0="$(now_ms)"
        sleep 10
        c1="$(cpu_ticks "$pid")"
        t1="$(now_ms)"
        echo "cpu_ticks: $((c1 - c0)) in $((t1 - t0)) ms"
        echo "removed: $(grep -c -i 'removing service' /tmp/h.log)"
        LANS=h stop_all
    done
}

setup || { echo "setup failed"; exit 1; }
for s in ${SCENARIOS:-fault:mysql-stop fault:mysql-kill fault:host steady:12}; do
    fn="scenario_${s%%:*}"
    "${fn//-/_}" "${s#*:}"
done
section end
exit 0
