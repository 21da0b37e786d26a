#!/bin/bash
# The scale-out lab's payload (bgp_announce on IPVS), run by the IPVS VM's /init as /payload/run.sh.
#
# One LAN 192.168.66.0/24 on bridge br0, every host a network namespace, nothing routes out:
#   rt  192.168.66.1    the router: BIRD with ECMP (merge paths, L4 hashing) and BFD towards
#                       every director; its eth1 10.1.0.1/24 leads to the client
#   cl  10.1.0.10       the client (vm-conn-load hold: long-lived connections, a line each 100 ms)
#   d1..d4 .11-.14      halb directors on IPVS (lb_algo mh, mh-port, DR), each announcing the
#                       VIP through its supervised BIRD; d4 joins later
#   k1, k2 .21, .22     keepalived 2.2.7 in an active/backup pair (VRRP), the same virtual server
#   r1..r4 .31-.34      real servers (`halb realserver start`), answering with their name
#   VIP 192.168.66.251:80
# The directors' files are /payload/dN.conf; keepalived's /payload/kN-{sync,nosync}.conf.
#
# Scenarios (SCENARIOS, space-separated, in order; the halb ones need `up` first):
#   up            routes from d1..d3 in the router
#   spread:N      N short connections, each director's share of them
#   kill          halb on d1 SIGKILLed under load; the path's removal, then d1 back
#   link          d2's link down under load; the path's removal (BFD), then d2 back
#   join          d4 joins under load (its announcement held by `halb drain`, then resumed)
#   rsfail        r3's server dies under load (four directors)
#   drain         `halb drain` on d1 under load, new connections after it, then SIGTERM
#   ka:MODE:FAIL  keepalived pair, MODE sync|nosync, FAIL kill|link (the MASTER k1's)
# ECMP=resilient (the default) puts the VIP's route on a resilient nexthop group that follows
# the multipath route BIRD exports to table 100 (BIRD installs plain multipath routes, whose
# hash-threshold moves about half the flows when a path joins; a resilient group moves only the
# flows of the buckets the path that joined takes, or of the path that left, as the ASICs of
# data-centre switches do). The follower (resilient_sync) is lab plumbing standing for such a
# switch: it lags BIRD by a few hundred ms on the emulated CPU, so the path's removal is timed
# in BIRD's table and apart in the forwarding table. ECMP=threshold lets BIRD install the
# route in the main table itself.
# Results are printed in sections that start with "@@bgp-lab@@ NAME"; a hold client's results
# are "hold NAME" (one line per connection), the directors' connection tables at a moment are
# "snap NAME" (lines "dN HEXPORT..." of the client's entries).
set -u
# shellcheck source=lan.sh
source /payload/lan.sh

MARK='@@bgp-lab@@'
VIP=192.168.66.251
CLIENT=10.1.0.10
CONNS="${CONNS:-60}"
SPREAD_MS="${SPREAD_MS:-1500}"
# A hold ends SETTLE_S after its scenario's event has been seen through (or after HOLD_MS).
HOLD_MS="${HOLD_MS:-120000}"
SETTLE_S="${SETTLE_S:-4}"
ECMP="${ECMP:-resilient}"

setup() {
    local i
    for m in ip_vs ip_vs_mh ipip; do modprobe "$m"; done
    busybox syslogd -O /tmp/syslog.log
    bridge br0
    host rt 192.168.66.1
    ip netns add cl
    ip -n cl link set lo up
    ip -n rt link add eth1 type veth peer name eth0 netns cl
    ip -n rt addr add 10.1.0.1/24 dev eth1
    ip -n rt link set eth1 up
    ip -n cl addr add "$CLIENT/24" dev eth0
    ip -n cl link set eth0 up
    ip -n cl route add default via 10.1.0.1
    ip netns exec rt sysctl -qw net.ipv4.ip_forward=1
    # The 5-tuple, as a hardware router hashes it. Policy 1 (layer 4) would take the hash a
    # packet already carries, and a packet from the client's socket carries the socket's own,
    # which TCP draws anew when it retransmits (to try another path): with every host on one
    # machine a flow whose SYN was retransmitted then moved to another director. Policy 3
    # (custom) always hashes the fields named, here source and destination address, protocol,
    # source and destination port.
    ip netns exec rt sysctl -qw net.ipv4.fib_multipath_hash_policy=3 \
        net.ipv4.fib_multipath_hash_fields=0x0037
    for i in 1 2 3 4; do
        host "r$i" "192.168.66.3$i"
        ip -n "r$i" route add default via 192.168.66.1
        ip netns exec "r$i" halb realserver start --vip "$VIP" >/dev/null
        serve "r$i"
        host "d$i" "192.168.66.1$i"
        ip -n "d$i" addr add "$VIP/32" dev lo
        # The VIP is on lo for IPVS; the LAN must not learn it from a director's ARP.
        ip netns exec "d$i" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
        mkdir -p "/run/d$i"
    done
    for i in 1 2; do
        host "k$i" "192.168.66.2$i"
    done
    if [ "$ECMP" = resilient ]; then
        sed 's/protocol kernel {/protocol kernel { kernel table 100;/' /payload/router.conf >/tmp/router.conf
        resilient_sync &
    else
        cp /payload/router.conf /tmp/router.conf
    fi
    ip netns exec rt bird -c /tmp/router.conf -s /run/rt.ctl -P /run/rt-bird.pid
    # Let the bridge ports forward before anything counts on them.
    sleep 2
}

# resilient_sync: the main table's route to the VIP on resilient nexthop group 1000 (256
# buckets, migrated at once: idle_timer 0) with the next hops of BIRD's route in table 100,
# brought up to date on every route change the router's kernel reports.
resilient_sync() {
    local last="" hops group h batch
    ip -n rt monitor route | while read -r _; do
        # A burst of changes (BIRD's and this loop's own) is one update.
        while read -r -t 0.05 _; do :; done
        hops="$(nexthops 100)"
        [ "$hops" = "$last" ] && continue
        last="$hops"
        if [ -z "$hops" ]; then
            ip -n rt route del "$VIP" 2>/dev/null
            continue
        fi
        group=""
        batch=""
        for h in $hops; do
            batch+="nexthop replace id ${h##*.} via $h dev eth0"$'\n'
            group="$group${group:+/}${h##*.}"
        done
        if ip -n rt nexthop show id 1000 >/dev/null 2>&1; then
            batch+="nexthop replace id 1000 group $group type resilient idle_timer 0"$'\n'
        else
            batch+="nexthop add id 1000 group $group type resilient buckets 256 idle_timer 0"$'\n'
        fi
        batch+="route replace $VIP nhid 1000"$'\n'
        # One process for the whole update: each one costs tens of ms on the emulated CPU.
        printf '%s' "$batch" | ip -n rt -batch -
    done
}

# buckets: the resilient group's buckets, one "INDEX NHID" a line (empty with ECMP=threshold).
buckets() {
    [ "$ECMP" = resilient ] || return 0
    ip -n rt nexthop bucket show id 1000 | sed -n 's/.*index \([0-9]*\) .*nhid \([0-9]*\).*/\1 \2/p'
}

# balanced N: the resilient group has N next hops and its buckets are spread evenly. After a
# change the kernel migrates buckets in the background; a flow whose bucket moves while it is
# open changes director (and lives on: mh, sloppy_tcp), which would blur the counts.
balanced() {
    [ "$ECMP" = resilient ] || return 0
    buckets | awk -v n="$1" '{ c[$2]++ }
        END {
            k = 0
            for (h in c) {
                k++
                if (min == "" || c[h] < min) min = c[h]
                if (c[h] > max) max = c[h]
            }
            exit !(k == n && max - min <= 1)
        }'
}

# serve rN: rN's echo server; its pid in /tmp/rN.pid.
serve() {
    ip netns exec "$1" vm-conn-load echo 0.0.0.0:80 "$1" &
    echo $! >"/tmp/$1.pid"
}

start_halb() {
    # Passive detection reads the connection table: not what this lab measures, and the
    # emulated CPU is the scarce thing here.
    # DR_PATH_CHECK doubles the checks, and the real servers' VIP on lo is not in question here.
    ip netns exec "$1" halb run -f "/payload/$1.conf" --dataplane ipvs --no-passive --no-dr-path-check \
        --control-socket "/run/$1/halb.sock" >>"/tmp/$1.log" 2>&1 &
    echo $! >"/tmp/$1.pid"
}

# stop_halb dN: SIGTERM, wait, then the namespace's IPVS table left empty.
stop_halb() {
    local pid i
    pid="$(cat "/tmp/$1.pid")"
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ip netns exec "$1" ipvsadm -C
}

# clock: the wall-clock time, as BIRD prints it (HH:MM:SS.mmm).
clock() {
    local t="$EPOCHREALTIME"
    printf 'event_at: %(%H:%M:%S)T.%s\n' "${t%.*}" "$(echo "${t#*.}" | cut -c1-3)"
}

# nexthops [TABLE]: the router's next hops for the VIP in its forwarding table (or in TABLE),
# sorted, on one line. One process a look: the waits below poll every 50 ms on an emulated CPU.
nexthops() {
    local route hops=()
    route="$(ip -n rt route show table "${1:-main}" "$VIP")"
    while [[ "$route" =~ via\ ([0-9.]+)(.*) ]]; do
        hops+=("${BASH_REMATCH[1]}")
        route="${BASH_REMATCH[2]}"
    done
    # Sorted in the shell (a handful of addresses of one length).
    local i j t
    for ((i = 0; i < ${#hops[@]}; i++)); do
        for ((j = i + 1; j < ${#hops[@]}; j++)); do
            if [[ "${hops[j]}" < "${hops[i]}" ]]; then
                t="${hops[i]}" hops[i]="${hops[j]}" hops[j]="$t"
            fi
        done
        printf '%s ' "${hops[i]}"
    done
}

# The table BIRD writes the VIP's route to: the forwarding table itself, or with ECMP=resilient
# table 100, which resilient_sync follows.
BIRD_TABLE=main
[ "$ECMP" = resilient ] && BIRD_TABLE=100

# wait_nexthops SECONDS ADDR...: until the router's forwarding next hops are exactly ADDR...;
# prints the time in ms ("never" after SECONDS). wait_bird_nexthops: the same in BIRD's table.
wait_nexthops() { wait_table_nexthops main "$@"; }
wait_bird_nexthops() { wait_table_nexthops "$BIRD_TABLE" "$@"; }

wait_table_nexthops() {
    local table="$1" limit t0
    t0="$(now_ms)"
    limit=$((t0 + $2 * 1000))
    shift 2
    until [ "$(nexthops "$table")" = "$* " ]; do
        if [ "$(now_ms)" -ge "$limit" ]; then
            echo never
            return 1
        fi
        sleep 0.05
    done
    echo $(($(now_ms) - t0))
}

established() {
    ip netns exec rt birdc -s /run/rt.ctl show protocols "$1" | grep -q Established
}

# hold_start NAME: the client's long-lived connections, started in the background; returns once
# every one is open.
hold_start() {
    rm -f "/tmp/hold-$1" "/tmp/hold-$1.ready" "/tmp/hold-$1.stop"
    ip netns exec cl vm-conn-load hold "$VIP:80" "$CONNS" "$SPREAD_MS" "$HOLD_MS" "/tmp/hold-$1" &
    echo $! >/tmp/hold.pid
    wait_for 40 test -e "/tmp/hold-$1.ready" || echo "hold $1: not ready"
}

hold_end() {
    local d
    sleep "$SETTLE_S"
    touch "/tmp/hold-$1.stop"
    wait "$(cat /tmp/hold.pid)"
    section "removals $1"
    # A real server a director took out (a checker's verdict) changes that director's mh table.
    for d in d1 d2 d3 d4; do
        [ -e "/tmp/$d.log" ] && echo "$d: $(grep -c 'Removing service' "/tmp/$d.log")"
    done
    section "hold $1"
    cat "/tmp/hold-$1"
}

# snap NAME DIRECTOR...: the client's entries in each director's connection table.
snap() {
    local name="$1" d
    shift
    section "snap $name"
    for d in "$@"; do
        echo "$d $(ip netns exec "$d" cat /proc/net/ip_vs_conn |
            awk -v c=0A01000A '$2 == c && $5 == "0050" { printf "%s ", $3 }')"
    done
}

log_tail() {
    section "log $1"
    grep -v -i 'checker\|check on' "/tmp/$1.log" | tail -n "${2:-15}"
}

scenario_up() {
    local ms i
    section up
    for i in 1 2 3; do start_halb "d$i"; done
    ms="$(wait_nexthops 120 192.168.66.11 192.168.66.12 192.168.66.13)"
    echo "three_paths_ms: $ms"
    wait_for 30 balanced 3 || echo "the router's buckets are not balanced over three paths"
    ip netns exec rt birdc -s /run/rt.ctl show route for "$VIP" all | head -n 12
    ip netns exec d1 ipvsadm -L -n
    ip netns exec rt birdc -s /run/rt.ctl show bfd sessions
    for i in 1 2 3; do
        ip netns exec "d$i" sysctl net.ipv4.vs.sloppy_tcp | tr '\n' ' '
    done
    echo
    [ "$ms" != never ] || { for i in 1 2 3; do log_tail "d$i" 30; done; }
}

# spread N: N short connections from the client (500 a second, each reading its greeting), which
# the router's ECMP hashes over the directors; each director's share is read from its table
# (the client's ports new since the snapshot before).
scenario_spread() {
    snap spread-before d1 d2 d3
    section spread
    ip netns exec cl vm-conn-load client "$VIP:80" 2000 $(($1 * 2)) 3000 /tmp/spread.out
    echo "tally: $(results /tmp/spread.out)"
    snap spread-after d1 d2 d3
}

# monitor_start NAME: the router's route changes from now on, each stamped as `ip monitor`
# receives it (the waits poll; these stamps do not depend on their pace).
monitor_start() {
    ip -n rt -ts monitor route >"/tmp/monitor-$1" 2>&1 &
    echo $! >/tmp/monitor.pid
    sleep 0.2
}

# monitor_end NAME: stops the monitor and prints the VIP's changes in section "monitor NAME".
monitor_end() {
    kill "$(cat /tmp/monitor.pid)"
    wait "$(cat /tmp/monitor.pid)" 2>/dev/null
    section "monitor $1"
    grep "$VIP" "/tmp/monitor-$1" | head -n 20
}

# results FILE: a vm-conn-load client's results counted, on one line ("COUNT RESULT ...").
results() {
    cut -d' ' -f3 "$1" | sort | uniq -c | tr -s ' ' | tr '\n' ' '
}

# A director fails under load (kill: halb SIGKILLed, link: its link down); the router's path
# leaves by BFD or the closed session; then the director comes back.
director_fails() {
    local how="$1" d="$2" rest ms t0
    rest="$(echo 192.168.66.11 192.168.66.12 192.168.66.13 | sed "s/192.168.66.1${d#d} *//")"
    hold_start "$how"
    snap "$how-before" d1 d2 d3
    monitor_start "$how"
    section "$how"
    clock
    t0="$(now_ms)"
    case "$how" in
    kill) kill -KILL "$(cat "/tmp/$d.pid")" ;;
    link) ip link set "v-$d" down ;;
    esac
    # The router's decision (BIRD's route), then the forwarding table that follows it (the same
    # table unless ECMP=resilient).
    # shellcheck disable=SC2086 # the addresses are words
    ms="$(wait_bird_nexthops 20 $rest)"
    echo "path_gone_ms: $ms"
    # shellcheck disable=SC2086
    if [ "$(wait_nexthops 20 $rest)" = never ]; then
        echo "forwarding_gone_ms: never"
    else
        echo "forwarding_gone_ms: $(($(now_ms) - t0))"
    fi
    echo "router: $(nexthops)"
    ip netns exec rt birdc -s /run/rt.ctl show protocols | grep -E '^d[0-9]' | tr -s ' ' | tr '\n' ';'
    echo
    monitor_end "$how"
    hold_end "$how"
    snap "$how-after" d1 d2 d3
    section "$how-restore"
    case "$how" in
    kill)
        wait "$(cat "/tmp/$d.pid")" 2>/dev/null
        start_halb "$d"
        ;;
    link) ip link set "v-$d" up ;;
    esac
    echo "back_ms: $(wait_nexthops 90 192.168.66.11 192.168.66.12 192.168.66.13)"
    wait_for 30 balanced 3 || echo "the router's buckets are not balanced over three paths"
    echo "t_event_to_back_ms: $(($(now_ms) - t0))"
}

scenario_kill() { director_fails kill d1; }
scenario_link() { director_fails link d2; }

scenario_join() {
    local all="192.168.66.11 192.168.66.12 192.168.66.13 192.168.66.14"
    section "join-prepare"
    start_halb d4
    # Held back until the moment of the join: drained before it is ever announced.
    wait_for 60 test -S /run/d4/halb.sock
    ip netns exec d4 halb drain --control-socket /run/d4/halb.sock
    wait_for 60 established d4 || echo "d4's session not established"
    wait_for 60 sh -c "ip netns exec d4 ipvsadm -L -n | grep -c 192.168.66.3 | grep -q 4"
    hold_start join
    snap join-before d1 d2 d3 d4
    buckets >/tmp/buckets-before
    section join
    ip netns exec d4 halb drain --resume --control-socket /run/d4/halb.sock
    # shellcheck disable=SC2086
    echo "four_paths_ms: $(wait_nexthops 30 $all)"
    wait_for 30 balanced 4 || echo "the router's buckets are not balanced over four paths"
    buckets >/tmp/buckets-after
    # The resilient group's buckets that changed next hop: what decides which flows move.
    echo "buckets_moved: $(awk 'NR == FNR { nh[$1] = $2; next } nh[$1] != $2' /tmp/buckets-before /tmp/buckets-after | wc -l) of $(wc -l </tmp/buckets-after)"
    hold_end join
    snap join-after d1 d2 d3 d4
}

# rs_in_all N: every director has rN in its table (N: 1 to 4) with a weight above 0.
rs_count() {
    local d n=0
    for d in d1 d2 d3 d4; do
        if ip netns exec "$d" ipvsadm -L -n | grep -q "192.168.66.3$1:80 *Route *[1-9]"; then
            n=$((n + 1))
        fi
    done
    echo "$n"
}

rs_gone() { [ "$(rs_count "$1")" -eq 0 ]; }
rs_back() { [ "$(rs_count "$1")" -eq 4 ]; }

scenario_rsfail() {
    local t0
    hold_start rsfail
    snap rsfail-before d1 d2 d3 d4
    section rsfail
    t0="$(now_ms)"
    kill -KILL "$(cat /tmp/r3.pid)"
    wait "$(cat /tmp/r3.pid)" 2>/dev/null
    wait_for 30 rs_gone 3 && echo "r3_out_everywhere_ms: $(($(now_ms) - t0))"
    hold_end rsfail
    section rsfail-restore
    serve r3
    wait_for 60 rs_back 3 && echo "r3_back: yes"
}

scenario_drain() {
    local t0 drain_pid
    hold_start drain
    snap drain-before d1 d2 d3 d4
    monitor_start drain
    section drain
    clock
    t0="$(now_ms)"
    ip netns exec d1 halb drain --control-socket /run/d1/halb.sock >/tmp/drain.out 2>&1 &
    drain_pid=$!
    echo "path_gone_ms: $(wait_bird_nexthops 20 192.168.66.12 192.168.66.13 192.168.66.14)"
    wait_nexthops 20 192.168.66.12 192.168.66.13 192.168.66.14 >/dev/null
    # New connections after the withdrawal: none may reach d1.
    ip netns exec cl vm-conn-load client "$VIP:80" 50000 2000 3000 /tmp/drain-new.out
    echo "new: $(results /tmp/drain-new.out)"
    wait "$drain_pid"
    echo "drain_exit: $? after $(($(now_ms) - t0)) ms: $(tr '\n' ' ' </tmp/drain.out)"
    monitor_end drain
    echo "asked_at: $(grep -m1 'Drain asked for' /tmp/d1.log | cut -c12-23)"
    snap drain-new d1
    section drain-stop
    t0="$(now_ms)"
    stop_halb d1
    echo "stopped_ms: $(($(now_ms) - t0))"
    hold_end drain
}

# keepalived MODE FAIL: the pair k1 (MASTER) / k2 (BACKUP) on the same LAN, VIP by VRRP; the
# halb directors are stopped first (their routes withdrawn, the router reaches the VIP on the LAN).
scenario_ka() {
    local mode="${1%%:*}" fail="${1#*:}" name k t0
    name="ka-$mode-$fail"
    for k in d1 d2 d3 d4; do
        [ -e "/tmp/$k.pid" ] && kill -0 "$(cat "/tmp/$k.pid")" 2>/dev/null && stop_halb "$k"
    done
    wait_for 10 sh -c "! ip -n rt route show $VIP | grep -q via"
    section "$name"
    echo "router: $(nexthops)"
    for k in k1 k2; do
        ip netns exec "$k" keepalived -n -l -D -f "/payload/$k-$mode.conf" -p "/run/$k.pid" \
            -c "/run/$k-c.pid" -r "/run/$k-v.pid" >"/tmp/$k.log" 2>&1 &
        echo $! >"/tmp/$k.pid"
    done
    if ! wait_for 30 sh -c "ip -n k1 -4 addr show dev eth0 | grep -q $VIP/"; then
        echo "k1 never MASTER"
        tail -n 20 /tmp/k1.log
    fi
    wait_for 30 sh -c "ip netns exec k2 ipvsadm -L -n | grep -c 192.168.66.3 | grep -q 4"
    hold_start "$name"
    # The master's sync daemon sends what it collected at least every 2 s.
    sleep 3
    echo "k2_entries_before: $(ip netns exec k2 cat /proc/net/ip_vs_conn | grep -c 0A01000A)"
    t0="$(now_ms)"
    case "$fail" in
    kill)
        for k in k1 k1-c k1-v; do
            kill -KILL "$(cat "/run/$k.pid")" 2>/dev/null
        done
        ;;
    link) ip link set v-k1 down ;;
    esac
    wait_for 30 sh -c "ip -n k2 -4 addr show dev eth0 | grep -q $VIP/" &&
        echo "vip_on_k2_ms: $(($(now_ms) - t0))"
    hold_end "$name"
    section "$name-restore"
    for k in k1 k2; do
        kill -TERM "$(cat "/tmp/$k.pid")" 2>/dev/null
    done
    for k in k1 k2; do
        wait "$(cat "/tmp/$k.pid")" 2>/dev/null
    done
    ip link set v-k1 up
    for k in k1 k2; do
        ip netns exec "$k" ipvsadm -C
        ip netns exec "$k" ipvsadm --stop-daemon master 2>/dev/null
        ip netns exec "$k" ipvsadm --stop-daemon backup 2>/dev/null
        ip -n "$k" addr del "$VIP/24" dev eth0 2>/dev/null
    done
    sleep 1
}

setup
for s in ${SCENARIOS:-up spread:3000 kill link join rsfail drain ka:nosync:kill ka:sync:kill ka:nosync:link ka:sync:link}; do
    "scenario_${s%%:*}" "${s#*:}"
done
for d in d1 d2 d3 d4; do
    [ -e "/tmp/$d.log" ] && log_tail "$d" 12
done
section end
exit 0
