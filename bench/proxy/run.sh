#!/usr/bin/env bash
# halb's userspace proxy against HAProxy 2.6 (mode tcp) and a direct connection, in one run,
# with the same backends and the same load tools. Not part of the test suite.
#
# Usage (root): bench/proxy/run.sh [options]
#   -n N               repetitions; every figure is the median of N (default 3)
#   --time S           seconds per iperf3 and connection-rate run (default 10)
#   --sysbench-time S  seconds per sysbench run (default 15)
#   --idle N           idle connections for the memory figure (default 10000)
#   --only LIST        comma list of: iperf,rate,sysbench,memory (default all)
#   --halb PATH        use this halb binary instead of building one
#   --no-halb          leave halb out (its column shows "-")
#   --keep             keep the work directory (configs, logs) and print its path
#
# Addresses (all on the root namespace's loopback, nothing leaves the machine):
#   backends  127.0.0.1 (iperf3, MariaDB) and 127.77.1.1-8 (the "OK" server)
#   HAProxy   127.77.2.1        halb   127.77.3.1        client sources 127.77.10.1-64
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
here=$repo/bench/proxy

reps=3 run_time=10 sb_time=15 idle_req=10000 only=iperf,rate,sysbench,memory
halb_bin="" use_halb=1 keep=0
while [ $# -gt 0 ]; do
    case $1 in
        -n) reps=$2; shift 2 ;;
        --time) run_time=$2; shift 2 ;;
        --sysbench-time) sb_time=$2; shift 2 ;;
        --idle) idle_req=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --halb) halb_bin=$2; shift 2 ;;
        --no-halb) use_halb=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }
log() { echo "[$(date +%T)] $*" >&2; }

[ "$(id -u)" -eq 0 ] || { echo "run.sh: run as root (it installs packages and starts MariaDB as root)" >&2; exit 1; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- processes and cleanup
work=$(mktemp -d /tmp/halb-bench-proxy.XXXXXX)
pids=()   # every process this script starts, ended by pid on exit
cgroups=()   # memory cgroups made for the proxies, removed on exit

stop_pid() {   # stop_pid PID [GRACE_SECONDS]: TERM, wait, then KILL
    local pid=$1 grace=${2:-10} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid cg
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        stop_pid "$pid" 30
    done
    for cg in "${cgroups[@]}"; do
        rmdir "$cg" 2>/dev/null || true
    done
    if [ "$keep" -eq 1 ]; then
        echo "work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

spawn() {   # spawn LOG CMD...: start CMD in the background, remember its pid in $spawned
    local out=$1
    shift
    "$@" >"$out" 2>&1 </dev/null &
    spawned=$!
    pids+=("$spawned")
}

forget() {   # forget PID: stop it now and drop it from the cleanup list
    local pid=$1 keep_pids=() p
    stop_pid "$pid" 30
    for p in "${pids[@]}"; do [ "$p" = "$pid" ] || keep_pids+=("$p"); done
    pids=("${keep_pids[@]}")
}

# ---------------------------------------------------------------- tools
need=()
for p in haproxy iperf3 sysbench mariadb-server; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The packages' own services are not wanted (this script starts its own processes): stop
    # what the install started, through systemd where it runs, else by the service's pid file.
    # Only right after installing: a MariaDB or HAProxy running before this script is not ours.
    for svc in haproxy:/run/haproxy.pid mariadb:/run/mysqld/mysqld.pid; do
        if [ -d /run/systemd/system ]; then
            systemctl disable --now "${svc%%:*}" >/dev/null 2>&1 || true
        elif [ -s "${svc#*:}" ]; then
            stop_pid "$(cat "${svc#*:}")" 30
        fi
    done
fi

log "building conn-bench"
conn_bench_dir=$here/conn-rate
CARGO_TARGET_DIR=$conn_bench_dir/target cargo build --release --quiet --manifest-path "$conn_bench_dir/Cargo.toml"
cb=$conn_bench_dir/target/release/conn-bench

halb_note=""
if [ "$use_halb" -eq 1 ] && [ -z "$halb_bin" ]; then
    # Honours CARGO_TARGET_DIR when set; the repository's target/ otherwise.
    target_dir=${CARGO_TARGET_DIR:-$repo/target}
    log "building halb (dist profile, target dir $target_dir)"
    if cargo build --profile dist -p halb >"$work/halb-build.log" 2>&1; then
        halb_bin=$target_dir/dist/halb
    else
        tail -20 "$work/halb-build.log" >&2
        halb_note="halb did not build (see above)"
        use_halb=0
    fi
fi

# ---------------------------------------------------------------- limits and addresses
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
# A proxy holds two sockets per relayed connection, plus listeners, checks, pipes and logs.
idle_max=$(( (nofile - 600) / 2 ))
idle=$idle_req
idle_note=""
if [ "$idle" -gt "$idle_max" ]; then
    idle=$idle_max
    idle_note="RLIMIT_NOFILE hard limit is $nofile here (no CAP_SYS_RESOURCE to raise it): $idle idle connections instead of $idle_req"
fi
haproxy_maxconn=$((idle_max + 50))
[ "$haproxy_maxconn" -gt 100000 ] && haproxy_maxconn=100000

port_free() { [ -z "$(ss -Hltn "sport = :$1")" ]; }
base=24800
while ! { port_free "$base" && port_free $((base + 1)) && port_free $((base + 2)); }; do
    base=$((base + 3))
done
p_iperf=$base p_ok=$((base + 1)) p_db=$((base + 2))
backend_ip=127.0.0.1 haproxy_ip=127.77.2.1 halb_ip=127.77.3.1 sources=127.77.10.1-64
ok_ips=(127.77.1.{1..8})
ok_list=$(printf "%s:$p_ok," "${ok_ips[@]}")
ok_list=${ok_list%,}

addr_of() {   # addr_of PATH SERVICE -> IP:PORT to connect to
    local ip
    case $1 in
        haproxy) ip=$haproxy_ip ;;
        halb) ip=$halb_ip ;;
        direct)
            case $2 in
                ok) echo "$ok_list"; return ;;
                *) ip=$backend_ip ;;
            esac ;;
    esac
    case $2 in iperf) echo "$ip:$p_iperf" ;; ok) echo "$ip:$p_ok" ;; db) echo "$ip:$p_db" ;; esac
}

# One request/reply through ADDR (IP:PORT): is the path up end to end?
probe() {
    local ip=${1%:*} port=${1##*:} fd line
    { exec {fd}<>"/dev/tcp/$ip/$port"; } 2>/dev/null || return 1
    printf 'GET\n' >&"$fd"
    read -r -t 3 line <&"$fd" || line=""
    exec {fd}>&-
    [ "$line" = "OK" ]
}

# ---------------------------------------------------------------- backends
log "starting backends (ports $p_iperf iperf3, $p_ok OK server, $p_db MariaDB)"
spawn "$work/ok-server.log" "$cb" serve --listen "$ok_list"
spawn "$work/iperf3-server.log" iperf3 -s -B "$backend_ip" -p "$p_iperf"

if wants sysbench; then
    db=$work/mariadb
    mkdir -p "$db/data"
    mariadb-install-db --no-defaults --user=root --datadir="$db/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$db/install.log" 2>&1 \
        || { cat "$db/install.log" >&2; exit 1; }
    # Health checks open and close TCP connections without a handshake: keep MariaDB from
    # blocking the proxies' address for that (max_connect_errors).
    spawn "$db/mariadbd.log" mariadbd --no-defaults --user=root --datadir="$db/data" \
        --socket="$db/sock" --pid-file="$db/pid" --port="$p_db" --bind-address="$backend_ip" \
        --skip-name-resolve --skip-log-bin --max-connections=1000 --max-connect-errors=1000000000 \
        --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2
    for _ in $(seq 300); do
        mariadb-admin --no-defaults --socket="$db/sock" -uroot ping >/dev/null 2>&1 && break
        kill -0 "$spawned" 2>/dev/null || { tail -20 "$db/mariadbd.log" >&2; exit 1; }
        sleep 0.1
    done
    mariadb --no-defaults --socket="$db/sock" -uroot -e \
        "CREATE DATABASE sbtest; CREATE USER sb@'%' IDENTIFIED BY 'sb'; GRANT ALL ON sbtest.* TO sb@'%';"
fi
for _ in $(seq 50); do grep -q listening "$work/ok-server.log" && break; sleep 0.1; done
probe "${ok_ips[0]}:$p_ok" || { cat "$work/ok-server.log" >&2; echo "run.sh: OK server not answering" >&2; exit 1; }

# ---------------------------------------------------------------- proxies
write_haproxy_cfg() {
    local s i=0
    {
        cat <<EOF
global
    nbthread 2
    maxconn $haproxy_maxconn
    # Pipes serve only the few bulk (iperf3) connections; HAProxy counts each in its fd budget.
    maxpipes 32
defaults
    mode tcp
    maxconn $haproxy_maxconn
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    option splice-auto
    option splice-request
    option splice-response
    # Health checks as halb's TCP_CHECK: TCP connect, rare enough not to disturb the runs.
    default-server check inter 60s
frontend iperf
    bind $haproxy_ip:$p_iperf
    default_backend iperf
backend iperf
    server s1 $backend_ip:$p_iperf
frontend ok
    bind $haproxy_ip:$p_ok
    default_backend ok
backend ok
    balance roundrobin
EOF
        for s in "${ok_ips[@]}"; do
            i=$((i + 1))
            echo "    server s$i $s:$p_ok"
        done
        cat <<EOF
frontend db
    bind $haproxy_ip:$p_db
    default_backend db
backend db
    server s1 $backend_ip:$p_db
EOF
    } >"$work/haproxy.cfg"
}

write_halb_cfg() {
    local s
    vs() {   # vs PORT REAL_IP...
        local port=$1
        shift
        printf 'virtual_server %s %s {\n    delay_loop 60\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n' "$halb_ip" "$port"
        for s in "$@"; do
            printf '    real_server %s %s {\n        weight 1\n        TCP_CHECK {\n            connect_timeout 3\n        }\n    }\n' "$s" "$port"
        done
        printf '}\n'
    }
    {
        vs "$p_iperf" "$backend_ip"
        vs "$p_ok" "${ok_ips[@]}"
        vs "$p_db" "$backend_ip"
    } >"$work/keepalived.conf"
}

haproxy_pid="" halb_pid=""
start_haproxy() {
    spawn "$work/haproxy.log" haproxy -db -f "$work/haproxy.cfg"
    haproxy_pid=$spawned
    for _ in $(seq 100); do probe "$haproxy_ip:$p_ok" && return 0; sleep 0.1; done
    cat "$work/haproxy.log" >&2
    echo "run.sh: HAProxy does not answer on $haproxy_ip:$p_ok" >&2
    exit 1
}
stop_haproxy() { [ -n "$haproxy_pid" ] && forget "$haproxy_pid"; haproxy_pid=""; }

start_halb() {   # returns 1 when halb does not relay (data plane not there yet)
    local force=()
    # What is measured is the userspace proxy, also on a kernel where halb would pick IPVS.
    "$halb_bin" run --help 2>/dev/null | grep -q -- --dataplane && force=(--dataplane proxy)
    spawn "$work/halb.log" "$halb_bin" run -f "$work/keepalived.conf" --control-socket "$work/halb.sock" "${force[@]}"
    halb_pid=$spawned
    for _ in $(seq 100); do
        probe "$halb_ip:$p_ok" && return 0
        kill -0 "$halb_pid" 2>/dev/null || break
        sleep 0.1
    done
    return 1
}
stop_halb() { [ -n "$halb_pid" ] && forget "$halb_pid"; halb_pid=""; }

write_haproxy_cfg
write_halb_cfg
start_haproxy
if [ "$use_halb" -eq 1 ]; then
    if ! start_halb; then
        if kill -0 "$halb_pid" 2>/dev/null; then
            halb_note="halb runs but does not relay: nothing answers on $halb_ip:$p_ok (userspace proxy data plane not available in this build)"
        else
            halb_note="halb exited at start: $(tail -3 "$work/halb.log" | tr '\n' ' ')"
        fi
        stop_halb
        use_halb=0
    fi
fi
active_paths() { echo direct haproxy; [ "$use_halb" -eq 1 ] && echo halb; true; }

# ---------------------------------------------------------------- results
results=$work/results
mkdir -p "$results"
record() { [ -n "$3" ] && echo "$3" >>"$results/$1.$2"; return 0; }   # record FIGURE PATH VALUE
median() {   # median FIGURE PATH
    [ -s "$results/$1.$2" ] || return 0
    sort -g "$results/$1.$2" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# The paths of repetition REP, rotated so that no path always runs first or last.
rotated() {
    local rep=$1 list
    read -r -a list <<<"$(active_paths | tr '\n' ' ')"
    local n=${#list[@]} i
    for ((i = 0; i < n; i++)); do echo "${list[(i + rep) % n]}"; done
}

# ---------------------------------------------------------------- 1. iperf3
run_iperf() {   # run_iperf PATH STREAMS -> Gbit/s received
    local target
    target=$(addr_of "$1" iperf)
    iperf3 -c "${target%:*}" -p "${target##*:}" -t "$run_time" -P "$2" -J >"$work/iperf.json" 2>&1 || true
    python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit("iperf3 printed no JSON: %s" % e)
if "error" in d:
    sys.exit("iperf3: %s" % d["error"])
print("%.2f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
' "$work/iperf.json"
}

# ---------------------------------------------------------------- 2. connection rate
run_rate() {   # run_rate PATH CONCURRENCY -> connections/s (errors, if any, on stderr)
    local out
    out=$("$cb" rate --target "$(addr_of "$1" ok)" --concurrency "$2" --duration "$run_time" --sources "$sources" 2>>"$work/rate.err")
    read -r _ rate _ _ _ errors _ <<<"$out"
    [ "$errors" = 0 ] || log "  $1 c=$2: $errors connection errors (see $work/rate.err)"
    echo "$rate"
}

# ---------------------------------------------------------------- 3. sysbench
sysbench_args() {
    local target=$1
    echo --db-driver=mysql --mysql-host="${target%:*}" --mysql-port="${target##*:}" \
        --mysql-user=sb --mysql-password=sb --mysql-db=sbtest --tables=1 --table-size=10000
}
run_sysbench() {   # run_sysbench PATH THREADS -> "QPS P99_MS"
    # shellcheck disable=SC2046
    sysbench oltp_point_select $(sysbench_args "$(addr_of "$1" db)") --threads="$2" --time="$sb_time" \
        --percentile=99 run >"$work/sysbench.out" 2>&1 || { tail -5 "$work/sysbench.out" >&2; return 1; }
    awk '/queries:/ { gsub(/\(/, "", $3); q = $3 } /99th percentile:/ { p = $3 } END { print q, p }' "$work/sysbench.out"
}

# ---------------------------------------------------------------- 4. idle connections
rss_kib() {   # rss_kib PID: VmRSS of PID and all its descendants
    local pid=$1 total=0 kb c
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
    for c in $(pgrep -P "$pid" || true); do total=$((total + $(rss_kib "$c"))); done
    echo "$total"
}
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# Kernel memory (socket and pipe structures, their buffers: what RSS does not show) is read
# from a memory cgroup of the proxy's own, made under this shell's. Best effort: without a
# writable memory cgroup the row shows "-".
kmem_cgroup() {   # kmem_cgroup PID NAME: moves PID into a new memory cgroup; sets kmem_file
    local pid=$1 name=$2 rel dir
    kmem_file=""
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then          # cgroup v2
        rel=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
        dir=/sys/fs/cgroup${rel%/}/halb-bench-$$-$name
        mkdir "$dir" 2>/dev/null && cgroups+=("$dir") || return 0
        echo "$pid" >"$dir/cgroup.procs" 2>/dev/null || return 0
        [ -f "$dir/memory.stat" ] && kmem_file=$dir/memory.stat
    elif [ -d /sys/fs/cgroup/memory ]; then                    # cgroup v1
        rel=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
        dir=/sys/fs/cgroup/memory${rel%/}/halb-bench-$$-$name
        mkdir "$dir" 2>/dev/null && cgroups+=("$dir") || return 0
        echo "$pid" >"$dir/cgroup.procs" 2>/dev/null || return 0
        [ -f "$dir/memory.kmem.usage_in_bytes" ] && kmem_file=$dir/memory.kmem.usage_in_bytes
    fi
    return 0
}
kmem_kib() {   # kernel memory charged to the proxy's cgroup, KiB ("" when unknown)
    case $kmem_file in
        "") echo "" ;;
        *.stat) awk '$1 == "kernel" { k = $2 } $1 == "sock" { s = $2 }
                     END { if (k != "") printf "%d\n", (k + s) / 1024 }' "$kmem_file" ;;
        *) echo $(( $(cat "$kmem_file") / 1024 )) ;;
    esac
}

# run_idle PATH: sets idle_result to "KIB_PER_CONN TOTAL_MIB FDS_PER_CONN HELD KERNEL_KIB_PER_CONN".
# It restarts the
# proxy (a fresh process, so the figure is not hidden by memory an earlier run left allocated),
# so it must run in this shell, not in $(...): the pids it starts must reach the cleanup list.
run_idle() {
    local path=$1 pid rss0 rss1 fd0 fd1 k0 k1 holder held out
    if [ "$path" = haproxy ]; then stop_haproxy; start_haproxy; pid=$haproxy_pid; else stop_halb; start_halb || return 1; pid=$halb_pid; fi
    kmem_cgroup "$pid" "$path-$rep"
    sleep 1
    rss0=$(rss_kib "$pid") fd0=$(fd_count "$pid") k0=$(kmem_kib)
    spawn "$work/hold.out" "$cb" hold --target "$(addr_of "$path" ok)" --count "$idle" --sources "$sources"
    holder=$spawned
    for _ in $(seq 1800); do
        grep -q '^held' "$work/hold.out" && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    out=$(grep '^held' "$work/hold.out" || true)
    read -r _ held _ _ <<<"$out"
    if [ -z "${held:-}" ] || [ "$held" -eq 0 ]; then
        log "  $path: no idle connection held: $(tail -2 "$work/hold.out" | tr '\n' ' ')"
        forget "$holder"
        return 1
    fi
    [ "$held" -eq "$idle" ] || log "  $path: held $held of $idle ($out); $(grep '^first error' "$work/hold.out" || true)"
    sleep 2
    rss1=$(rss_kib "$pid") fd1=$(fd_count "$pid") k1=$(kmem_kib)
    forget "$holder"
    idle_result=$(awk -v a="$rss0" -v b="$rss1" -v f0="$fd0" -v f1="$fd1" -v n="$held" -v k0="$k0" -v k1="$k1" \
        'BEGIN { printf "%.2f %.1f %.2f %d %s\n", (b - a) / n, (b - a) / 1024, (f1 - f0) / n, n,
                 (k0 != "" && k1 != "") ? sprintf("%.2f", (k1 - k0) / n) : "" }')
}

# ---------------------------------------------------------------- the runs
if wants iperf; then
    for streams in 1 4; do
        for rep in $(seq "$reps"); do
            for path in $(rotated "$rep"); do
                v=$(run_iperf "$path" "$streams") || { log "  iperf3 $path -P $streams failed: $v"; continue; }
                log "iperf3 -P $streams $path rep $rep: $v Gbit/s"
                record "iperf$streams" "$path" "$v"
            done
        done
    done
fi

if wants rate; then
    for conc in 32 64 256; do
        for rep in $(seq "$reps"); do
            for path in $(rotated "$rep"); do
                v=$(run_rate "$path" "$conc")
                log "conn rate c=$conc $path rep $rep: $v conn/s"
                record "rate$conc" "$path" "$v"
            done
        done
    done
fi

if wants sysbench; then
    log "sysbench prepare (1 table, 10000 rows)"
    # shellcheck disable=SC2046
    sysbench oltp_point_select $(sysbench_args "$backend_ip:$p_db") prepare >"$work/sysbench-prepare.out" 2>&1 \
        || { cat "$work/sysbench-prepare.out" >&2; exit 1; }
    for threads in 8 64; do
        for rep in $(seq "$reps"); do
            for path in $(rotated "$rep"); do
                v=$(run_sysbench "$path" "$threads") || { log "  sysbench $path --threads=$threads failed"; continue; }
                read -r qps p99 <<<"$v"
                log "sysbench $threads threads $path rep $rep: $qps qps, p99 $p99 ms"
                record "sb_qps$threads" "$path" "$qps"
                record "sb_p99_$threads" "$path" "$p99"
            done
        done
    done
fi

if wants memory; then
    for rep in $(seq "$reps"); do
        for path in $(rotated "$rep"); do
            [ "$path" = direct ] && continue
            run_idle "$path" || { log "  idle connections through $path failed"; continue; }
            read -r per total fds held kper <<<"$idle_result"
            log "idle $path rep $rep: $held conns, +$total MiB RSS, $per KiB/conn RSS, ${kper:-?} KiB/conn kernel, $fds fds/conn"
            record mem_kernel "$path" "${kper:-}"
            record mem_per "$path" "$per"
            record mem_total "$path" "$total"
            record mem_fds "$path" "$fds"
            record mem_held "$path" "$held"
        done
    done
fi

# ---------------------------------------------------------------- report
ver() { "$@" 2>&1 | head -1; }
echo
echo "machine: $(nproc) cores, kernel $(uname -r), load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "haproxy: $(ver haproxy -v)"
echo "iperf3:  $(ver iperf3 --version)"
echo "sysbench: $(ver sysbench --version); MariaDB: $(ver mariadbd --version)"
if [ -n "$halb_bin" ] && [ -x "$halb_bin" ]; then
    echo "halb:    $(ver "$halb_bin" --version) ($halb_bin)"
fi
echo "median of $reps runs; iperf3 and connection rate ${run_time} s each, sysbench ${sb_time} s"
[ -n "$halb_note" ] && echo "note: $halb_note"
wants memory && [ -n "$idle_note" ] && echo "note: $idle_note"
echo
printf '%-40s %10s %10s %10s %13s\n' "figure" direct haproxy halb "halb/haproxy"
row() {   # row LABEL FIGURE
    local d h b
    d=$(median "$2" direct) h=$(median "$2" haproxy) b=$(median "$2" halb)
    awk -v l="$1" -v d="$d" -v h="$h" -v b="$b" 'BEGIN {
        r = (h != "" && b != "" && h + 0 != 0) ? sprintf("%.2f", b / h) : "-"
        printf "%-40s %10s %10s %10s %13s\n", l, (d == "" ? "-" : d), (h == "" ? "-" : h), (b == "" ? "-" : b), r }'
}
if wants iperf; then
    row "iperf3 1 stream (Gbit/s, higher better)" iperf1
    row "iperf3 4 streams (Gbit/s)" iperf4
fi
if wants rate; then
    row "new conns/s, 32 concurrent (higher)" rate32
    row "new conns/s, 64 concurrent" rate64
    row "new conns/s, 256 concurrent" rate256
fi
if wants sysbench; then
    row "point_select QPS, 8 threads (higher)" sb_qps8
    row "point_select p99 ms, 8 threads (lower)" sb_p99_8
    row "point_select QPS, 64 threads" sb_qps64
    row "point_select p99 ms, 64 threads" sb_p99_64
fi
if wants memory; then
    row "idle conns: RSS KiB/conn (lower)" mem_per
    row "idle conns: connections held of $idle" mem_held
    row "idle conns: RSS MiB in total" mem_total
    row "idle conns: kernel KiB/conn (cgroup)" mem_kernel
    row "idle conns: fds per conn" mem_fds
fi
if wants rate; then
    # The direct path is the ceiling: if a proxy comes close to it, the load tools (or the
    # backend), not the proxy, set the figure.
    for c in 32 64 256; do
        awk -v c="$c" -v d="$(median "rate$c" direct)" -v h="$(median "rate$c" haproxy)" -v b="$(median "rate$c" halb)" 'BEGIN {
            m = (h + 0 > b + 0) ? h : b
            if (d != "" && m + 0 > 0 && d / m < 1.5)
                printf "note: at %d concurrent, direct is only %.2fx the faster proxy: the client and backend take most of the CPU, so differences between the proxies are compressed\n", c, d / m }'
    done
fi
