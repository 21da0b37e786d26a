#!/bin/bash
# bench/checkers' payload: runs on the host (halb alone, at full scale) or inside the IPVS VM as
# /payload/run.sh (keepalived and halb in turn). See bench/checkers/README.md.
#
# Two namespaces on a veth pair: the director (the daemon under test) and the servers, where
# every real-server address is routed locally (`ip route add local 10.77.0.0/16 dev lo`) to one
# listener on 0.0.0.0:3306. Per daemon and round:
#   1. start it on $DIR/checkers.conf, let the first round of checks pass (WARMUP seconds);
#   2. CPU (utime + stime of the daemon and its children) and RSS over MEASURE seconds, healthy;
#   3. the fault: the addresses of $DIR/fail.txt start dropping every packet, all at one instant
#      (one nftables transaction); each dropped packet's address goes once into the set `seen`
#      with a one-hour timeout, whose remaining time later tells when the first probe met the
#      fault; then until every failing server is removed, or FAULT_WAIT seconds;
#   4. the daemon's "Removing service" lines, each stamped when it was read.
# Output lines (parsed by run.py):
#   result DAEMON ROUND SERVERS CPU_TICKS MEASURE_MS RSS_KIB FAULT_CPU_TICKS FAULT_MS FAULT_AT_US
#   removed DAEMON ROUND ADDRESS AT_US            (first removal of each address)
#   @@seen DAEMON ROUND LISTED_AT_US ... @@end    (`nft list set`: first dropped packet per address)
#   problem: TEXT
set -u
DIR="${DIR:-/payload}"
DAEMONS="${DAEMONS:-keepalived halb}"
ROUNDS="${ROUNDS:-1}"
WARMUP="${WARMUP:-12}"
MEASURE="${MEASURE:-60}"
FAULT_WAIT="${FAULT_WAIT:-40}"
DATAPLANE="${DATAPLANE:-ipvs}"
LISTENER="${LISTENER:-vm-conn-load}"
HALB="${HALB:-halb}"
TAG="${TAG:-chk$$}"
D="halbt-$TAG-d"
S="halbt-$TAG-s"
FAILING="$(wc -l <"$DIR/fail.txt")"
SERVERS="$(grep -c 'real_server' "$DIR/checkers.conf")"
RUN="$(mktemp -d /tmp/halb-bench-checkers.XXXXXX)"
LISTENER_PID=""

now_us() {
    echo "${EPOCHREALTIME/./}"
}

# ticks PID: utime + stime of PID and its direct children (keepalived's checker process).
ticks() {
    local root="$1" total=0 stat pid rest f
    for stat in /proc/[0-9]*/stat; do
        read -r rest <"$stat" 2>/dev/null || continue
        pid="${rest%% *}"
        rest="${rest##*) }"
        # shellcheck disable=SC2086 # split the fields after the command name
        set -- $rest
        # $2 is the parent (field 4 of stat), $12 and $13 utime and stime (fields 14 and 15).
        if [ "$pid" = "$root" ] || [ "$2" = "$root" ]; then
            f=$((${12} + ${13}))
            total=$((total + f))
        fi
    done
    echo "$total"
}

rss_kib() {
    local root="$1" total=0 stat pid rest rss
    for stat in /proc/[0-9]*/stat; do
        read -r rest <"$stat" 2>/dev/null || continue
        pid="${rest%% *}"
        rest="${rest##*) }"
        # shellcheck disable=SC2086
        set -- $rest
        if [ "$pid" = "$root" ] || [ "$2" = "$root" ]; then
            rss="$(while read -r k v _; do [ "$k" = VmRSS: ] && echo "$v"; done <"/proc/$pid/status")"
            total=$((total + ${rss:-0}))
        fi
    done
    echo "$total"
}

cleanup() {
    [ -n "$LISTENER_PID" ] && kill "$LISTENER_PID" 2>/dev/null
    ip netns del "$D" 2>/dev/null
    ip netns del "$S" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT

setup() {
    ip netns add "$D" && ip netns add "$S" || return 1
    ip -n "$D" link set lo up
    ip -n "$S" link set lo up
    ip -n "$D" link add eth0 type veth peer name eth0 netns "$S"
    ip -n "$D" addr add 10.250.0.1/30 dev eth0
    ip -n "$S" addr add 10.250.0.2/30 dev eth0
    ip -n "$D" link set eth0 up
    ip -n "$S" link set eth0 up
    ip -n "$D" route add 10.77.0.0/16 via 10.250.0.2
    ip -n "$S" route add local 10.77.0.0/16 dev lo
    # Room for a whole round's connections in TIME_WAIT on the director and in the backlog.
    ip netns exec "$D" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
    ip netns exec "$S" sysctl -qw net.core.somaxconn=4096
    ip netns exec "$S" nft -f - <<'NFT' || return 1
table inet chk {
    set fail { type ipv4_addr; }
    set seen { type ipv4_addr; flags dynamic, timeout; timeout 1h; size 65536; }
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr @fail add @seen { ip daddr } drop
    }
}
NFT
    ip netns exec "$S" "$LISTENER" serve 0.0.0.0:3306 rs >/dev/null 2>&1 &
    LISTENER_PID=$!
    {
        echo "add element inet chk fail {"
        paste -sd, "$DIR/fail.txt" 2>/dev/null || tr '\n' ',' <"$DIR/fail.txt" | sed 's/,$//'
        echo "}"
    } >"$RUN/fail.nft"
}

# stamp FILE: writes "AT_US ADDRESS" for each "Removing service [ADDRESS]:..." line of stdin.
stamp() {
    local line a
    while IFS= read -r line; do
        case "$line" in
            *"Removing service ["*)
                a="${line#*Removing service [}"
                echo "$(now_us) ${a%%]*}"
                ;;
        esac
        # The whole log too, for a failure's post-mortem.
        echo "$line" >>"$1.log"
    done >"$1"
}

# start DAEMON TAG: sets DAEMON_PID (not a command substitution: that would wait for the log
# reader, which holds its output open).
start() {
    local daemon="$1" tag="$2"
    if [ "$daemon" = keepalived ]; then
        ip netns exec "$D" keepalived -n -l -D -C -f "$DIR/checkers.conf" -p "$RUN/k-$tag.pid" \
            -c "$RUN/kc-$tag.pid" -r "$RUN/kv-$tag.pid" > >(stamp "$RUN/removed-$tag") 2>&1 &
    else
        # shellcheck disable=SC2086 # HALB_ARGS is a list of arguments
        ip netns exec "$D" "$HALB" run -f "$DIR/checkers.conf" --dataplane "$DATAPLANE" \
            --no-dr-path-check --control-socket "$RUN/halb-$tag.sock" ${HALB_ARGS:-} \
            > >(stamp "$RUN/removed-$tag") 2>&1 &
    fi
    DAEMON_PID=$!
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

round() {
    local daemon="$1" round="$2" tag="$1-$2" pid t0 c0 c1 t1 rss fault c2 t2 n
    ip netns exec "$S" nft flush set inet chk fail
    ip netns exec "$S" nft flush set inet chk seen
    start "$daemon" "$tag"
    pid="$DAEMON_PID"
    sleep "$WARMUP"
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "problem: $daemon round $round exited during the warm-up; its log ends:"
        tail -n 20 "$RUN/removed-$tag.log"
        return
    fi
    n="$(wc -l <"$RUN/removed-$tag")"
    [ "$n" -eq 0 ] || echo "problem: $daemon round $round removed $n servers before the fault"
    t0="$(now_us)"
    c0="$(ticks "$pid")"
    sleep "$MEASURE"
    c1="$(ticks "$pid")"
    t1="$(now_us)"
    rss="$(rss_kib "$pid")"
    : >"$RUN/removed-$tag.before"
    cp "$RUN/removed-$tag" "$RUN/removed-$tag.before"
    ip netns exec "$S" nft -f "$RUN/fail.nft"
    fault="$(now_us)"
    c2="$c1"
    while :; do
        n="$(wc -l <"$RUN/removed-$tag")"
        [ "$n" -ge "$FAILING" ] && break
        [ $(($(now_us) - fault)) -gt $((FAULT_WAIT * 1000000)) ] && break
        sleep 0.2
    done
    c2="$(ticks "$pid")"
    t2="$(now_us)"
    echo "@@seen $daemon $round $(now_us)"
    ip netns exec "$S" nft list set inet chk seen
    echo "@@end"
    stop "$pid"
    echo "result $daemon $round $SERVERS $((c1 - c0)) $(((t1 - t0) / 1000)) $rss $((c2 - c1)) $(((t2 - fault) / 1000)) $fault"
    while read -r at a; do
        echo "removed $daemon $round $a $at"
    done <"$RUN/removed-$tag"
    sleep 2
}

# The kernel lab's /dev has no /dev/fd, which the log readers' process substitution needs.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
if [ -e /proc/net/ip_vs ] || modprobe ip_vs 2>/dev/null; then :; fi
setup || { echo "problem: the namespaces could not be set up"; exit 1; }
echo "servers $SERVERS failing $FAILING ticks_per_s $(getconf CLK_TCK 2>/dev/null || echo 100)"
for r in $(seq "$ROUNDS"); do
    # The order alternates by round, so that drift hits both daemons.
    if [ $((r % 2)) -eq 1 ]; then order="$DAEMONS"; else order="$(echo "$DAEMONS" | awk '{for (i = NF; i; i--) printf "%s ", $i}')"; fi
    for d in $order; do
        round "$d" "$r"
    done
done
exit 0
