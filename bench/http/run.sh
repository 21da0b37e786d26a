#!/usr/bin/env bash
# The cost of halb's HTTP endpoint. Not part of the test suite.
#
# 1. Scrape time and size of /metrics with 1,000 virtual servers x 10 real servers (every real
#    server up, served by the userspace proxy), against /api/v1/status (the same snapshot as
#    JSON, without the connection table) scraped the same way in the same run.
# 2. The proxy's throughput (iperf3 through one more virtual server) without scrapes, with a
#    curl fetching /metrics every second (halb's own cost of being scraped), and with a
#    Prometheus scraping that halb every second (halb's cost plus Prometheus ingesting every
#    series on the same cores), the three interleaved in each repetition so that they see the
#    same load; with the CPU time halb and Prometheus used during each run.
#
# Usage (root): bench/http/run.sh [options]
#   -n N         repetitions of each throughput run; figures are medians (default 3)
#   --scrapes N  scrapes timed per endpoint (default 50)
#   --time S     seconds per iperf3 run (default 10)
#   --halb PATH  use this halb binary (default: cargo build --release -p halb)
#   --scrape-only  part 1 alone (light: no iperf3, no Prometheus)
#   --split-cpus   part 2 with the data path (halb, iperf3, the real servers) on CPU 0 and the
#                  scrapers (curl, Prometheus) on CPU 1, as a Prometheus on a machine of its
#                  own: what is left of a difference is halb's cost of being scraped
#
# Everything is on the root namespace's loopback: the real servers are 10 listeners on
# 127.0.0.1:25001-25010 shared by every virtual server (127.79.V.W:80), iperf3 on
# 127.0.0.1:25201 behind 127.79.200.1:5201, halb's endpoint on 127.0.0.1:29165, Prometheus on
# 127.0.0.1:29090.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

reps=3 scrapes=50 run_time=10 halb_bin="" scrape_only=0 split_cpus=0
while [ $# -gt 0 ]; do
    case $1 in
        -n) reps=$2; shift 2 ;;
        --scrapes) scrapes=$2; shift 2 ;;
        --time) run_time=$2; shift 2 ;;
        --halb) halb_bin=$2; shift 2 ;;
        --scrape-only) scrape_only=1; shift ;;
        --split-cpus) split_cpus=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
log() { echo "[$(date +%T)] $*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "run.sh: run as root" >&2; exit 1; }

need=()
for p in iperf3 prometheus curl python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "$halb_bin" ]; then
    log "building halb (release)"
    cargo build --release -p halb --locked >&2
    halb_bin=${CARGO_TARGET_DIR:-$repo/target}/release/halb
fi

work=$(mktemp -d /tmp/halb-bench-http.XXXXXX)
pids=()
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
spawn() { local out=$1; shift; "$@" >"$out" 2>&1 </dev/null & spawned=$!; pids+=("$spawned"); }
# With --split-cpus: the data path on CPU 0, the scrapers on CPU 1 (empty: wherever they run).
datapath=() scraper=()
if [ "$split_cpus" -eq 1 ]; then
    [ "$(nproc)" -ge 2 ] || { echo "run.sh: --split-cpus needs two CPUs" >&2; exit 2; }
    datapath=(taskset -c 0) scraper=(taskset -c 1)
fi

# The real servers: accept and close, on ten ports.
cat >"$work/rs.py" <<'EOF'
import selectors, socket
sel = selectors.DefaultSelector()
for port in range(25001, 25011):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(1024); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        try:
            c, _ = key.fileobj.accept(); c.close()
        except OSError:
            pass
EOF
spawn "$work/rs.log" "${datapath[@]}" python3 "$work/rs.py"
spawn "$work/iperf3-server.log" "${datapath[@]}" iperf3 -s -B 127.0.0.1 -p 25201

python3 - "$work/keepalived.conf" <<'EOF'
import sys
with open(sys.argv[1], "w") as out:
    for vs in range(1000):
        out.write(f"virtual_server 127.79.{vs // 250}.{vs % 250 + 1} 80 {{\n    delay_loop 30\n"
                  "    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n")
        for rs in range(10):
            out.write(f"    real_server 127.0.0.1 {25001 + rs} {{\n        weight 1\n"
                      "        TCP_CHECK {\n            connect_timeout 3\n        }\n    }\n")
        out.write("}\n")
    out.write("virtual_server 127.79.200.1 5201 {\n    delay_loop 30\n    lb_algo rr\n"
              "    lb_kind NAT\n    protocol TCP\n    real_server 127.0.0.1 25201 {\n"
              "        weight 1\n        TCP_CHECK {\n            connect_timeout 3\n        }\n"
              "    }\n}\n")
EOF

log "starting halb: 1,001 virtual servers, 10,001 real servers"
spawn "$work/halb.log" "${datapath[@]}" "$halb_bin" run -f "$work/keepalived.conf" --dataplane proxy \
    --control-socket "$work/halb.sock" --http-listen 127.0.0.1:29165
halb_pid=$spawned
up=0
for ((i = 0; i < 120; i++)); do
    up=$(curl -sf http://127.0.0.1:29165/metrics | grep -c '^halb_real_server_up{.*} 1$' || true)
    [ "$up" -ge 10001 ] && break
    sleep 1
done
[ "$up" -ge 10001 ] || { echo "only $up real servers up after 120 s; see $work/halb.log" >&2; tail "$work/halb.log" >&2; exit 1; }
log "all 10,001 real servers up"

# ---- 1. scrape time and size
time_endpoint() {   # time_endpoint PATH: prints "median_ms p90_ms bytes"
    local path=$1 i
    for ((i = 0; i < scrapes; i++)); do
        curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:29165$path"
    done | sort -n | awk -v n="$scrapes" '{t[NR]=$1; s=$2} END {
        printf "%.1f %.1f %d\n", t[int((n+1)/2)]*1000, t[int(n*0.9)]*1000, s }'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# halb's CPU time per /metrics scrape: its CPU over the timed scrapes, less what it uses idle
# (its 10,001 checkers) over as long, measured just before.
hz=$(getconf CLK_TCK)
i0=$(cpu_ticks "$halb_pid"); t0=$(date +%s.%N); sleep 10; i1=$(cpu_ticks "$halb_pid"); t1=$(date +%s.%N)
idle_rate=$(python3 -c "print(($i1 - $i0) / $hz / ($t1 - $t0))")
c0=$(cpu_ticks "$halb_pid"); t0=$(date +%s.%N)
read -r m_med m_p90 m_size < <(time_endpoint /metrics)
c1=$(cpu_ticks "$halb_pid"); t1=$(date +%s.%N)
scrape_cpu_ms=$(python3 -c "print('%.1f' % (max(0, ($c1 - $c0) / $hz - $idle_rate * ($t1 - $t0)) / $scrapes * 1000))")
read -r j_med j_p90 j_size < <(time_endpoint '/api/v1/status?connections=false')
series=$(curl -s http://127.0.0.1:29165/metrics | grep -vc '^#')
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$halb_pid/status)
if [ "$scrape_only" -eq 1 ]; then
    cat <<EOF

halb /metrics scrape ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)), 10,001 real servers, $series series
median $m_med ms, p90 $m_p90 ms, $m_size bytes ($scrapes scrapes); /api/v1/status median $j_med ms
halb CPU per /metrics scrape   $scrape_cpu_ms ms (idle halb: $(printf '%.3f' "$idle_rate") CPU s/s)
halb RSS after the scrapes     $((rss_kb / 1024)) MiB
EOF
    exit 0
fi

# ---- 2. throughput with and without a Prometheus scraping every second
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: halb
    static_configs:
      - targets: ['127.0.0.1:29165']
EOF
iperf() {   # prints Gbit/s received
    "${datapath[@]}" iperf3 -c 127.79.200.1 -p 5201 -t "$run_time" -J 2>/dev/null \
        | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
# One throughput run while PID (if any) runs beside: "Gbit/s halb_cpu_share other_cpu_share",
# the shares in CPU seconds per second of the run.
measured_run() {
    local other=${1:-} hz h0 h1 o0=0 o1=0 t0 t1 gbit
    hz=$(getconf CLK_TCK)
    h0=$(cpu_ticks "$halb_pid"); [ -n "$other" ] && o0=$(cpu_ticks "$other")
    t0=$(date +%s.%N)
    gbit=$(iperf)
    t1=$(date +%s.%N)
    h1=$(cpu_ticks "$halb_pid"); [ -n "$other" ] && o1=$(cpu_ticks "$other")
    python3 -c "d=$t1-$t0; print('$gbit', '%.3f' % (($h1-$h0)/$hz/d), '%.3f' % (($o1-$o0)/$hz/d))"
}
without=() curled=() with=() cpu_without=() cpu_curled=() cpu_with=() cpu_prom=()
for ((r = 0; r < reps; r++)); do
    log "throughput, repetition $((r + 1))/$reps: without scrapes"
    read -r g c _ < <(measured_run)
    without+=("$g"); cpu_without+=("$c")
    log "throughput, repetition $((r + 1))/$reps: with curl fetching /metrics every second"
    spawn "$work/curl-loop.log" "${scraper[@]}" bash -c 'while :; do
        curl -s -o /dev/null http://127.0.0.1:29165/metrics & sleep 1; wait; done'
    curl_pid=$spawned
    read -r g c _ < <(measured_run)
    curled+=("$g"); cpu_curled+=("$c")
    stop_pid "$curl_pid"
    log "throughput, repetition $((r + 1))/$reps: with Prometheus scraping every second"
    rm -rf "$work/tsdb"
    spawn "$work/prometheus.log" "${scraper[@]}" prometheus --config.file="$work/prometheus.yml" \
        --storage.tsdb.path="$work/tsdb" --web.listen-address=127.0.0.1:29090
    prom_pid=$spawned
    sleep 3
    read -r g c p < <(measured_run "$prom_pid")
    with+=("$g"); cpu_with+=("$c"); cpu_prom+=("$p")
    scrape_s=$(curl -s 'http://127.0.0.1:29090/api/v1/query?query=scrape_duration_seconds' \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "-")')
    samples=$(curl -s 'http://127.0.0.1:29090/api/v1/query?query=scrape_samples_scraped' \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "-")')
    scrapes_ok=$(curl -s -G --data-urlencode 'query=sum_over_time(up[1h])' http://127.0.0.1:29090/api/v1/query \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "-")')
    scrapes_all=$(curl -s -G --data-urlencode 'query=count_over_time(up[1h])' http://127.0.0.1:29090/api/v1/query \
        | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "-")')
    stop_pid "$prom_pid"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
w=$(median "${with[@]}") wo=$(median "${without[@]}") cu=$(median "${curled[@]}")

cat <<EOF

halb HTTP endpoint benchmark ($(nproc) CPUs, load at start $(cut -d' ' -f1-3 /proc/loadavg))$([ "$split_cpus" -eq 1 ] && echo "
data path (halb, iperf3, real servers) on CPU 0, curl and Prometheus on CPU 1")
1,001 virtual servers x 10 real servers (10,001 real servers in all, all up), userspace proxy

scrape                         median ms   p90 ms      bytes   ($scrapes scrapes, curl, one at a time)
/metrics                       $(printf '%9s %8s %10s' "$m_med" "$m_p90" "$m_size")   ($series series)
/api/v1/status (JSON)          $(printf '%9s %8s %10s' "$j_med" "$j_p90" "$j_size")
/metrics vs /api/v1/status     $(python3 -c "print('%.2fx' % ($m_med / $j_med))") the time
halb CPU per /metrics scrape   $scrape_cpu_ms ms (idle halb: $(printf '%.3f' "$idle_rate") CPU s/s)
halb RSS after the scrapes     $((rss_kb / 1024)) MiB
Prometheus's own view          scrape_duration_seconds $scrape_s, scrape_samples_scraped $samples

Prometheus's last run           scrapes that succeeded: $scrapes_ok of $scrapes_all

proxy throughput (iperf3 ${run_time}s, median of $reps, Gbit/s; CPU: seconds per second)
without scrapes                $wo    (runs: ${without[*]}; halb CPU ${cpu_without[*]})
with curl /metrics every 1 s   $cu    (runs: ${curled[*]}; halb CPU ${cpu_curled[*]})
with Prometheus every 1 s      $w    (runs: ${with[*]}; halb CPU ${cpu_with[*]}; Prometheus CPU ${cpu_prom[*]})
curl / without                 $(python3 -c "print('%.3f' % ($cu / $wo))")
Prometheus / without           $(python3 -c "print('%.3f' % ($w / $wo))")
load at the end                $(cut -d' ' -f1-3 /proc/loadavg)
EOF
