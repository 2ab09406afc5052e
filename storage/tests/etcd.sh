#!/usr/bin/env bash
# etcd.sh: a throw-away etcd (Debian's etcd-server) on free loopback ports,
# default limits, for the tests of the etcd metadata backend.
#
#   etcd.sh start DIR        one member; prints its client URL
#   etcd.sh cluster DIR N    N members in one cluster; prints their client
#                            URLs joined by commas
#   etcd.sh stop DIR         stop every member started under DIR, remove DIR
#
# Each member lives in DIR/mI (data, log, pid, client URL in "url").  Never
# the well-known ports 2379/2380: every port is asked from the kernel.
# Startup waits at most ETCD_START_SECONDS (default 20) for /health.  With
# ETCD_OWNER_PID set, a watcher stops the members and removes DIR once that
# process is gone (a test that crashes leaves no etcd behind).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|cluster|stop DIR [N]" >&2; exit 2; }
ETCD=${ETCD:-etcd}
wait_s=${ETCD_START_SECONDS:-20}

# N free loopback TCP ports, distinct.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Start members 0..N-1 as one cluster.
start_members() {
    local n=$1 i
    command -v "$ETCD" >/dev/null || { echo "etcd.sh: $ETCD not found" >&2; exit 1; }
    mkdir -p "$dir"
    local -a cport pport
    read -r -a cport <<<"$(free_ports "$n")"
    read -r -a pport <<<"$(free_ports "$n")"
    local initial=""
    for ((i = 0; i < n; i++)); do
        initial+="${initial:+,}m$i=http://127.0.0.1:${pport[$i]}"
    done
    for ((i = 0; i < n; i++)); do
        local m="$dir/m$i"
        mkdir -p "$m"
        echo "http://127.0.0.1:${cport[$i]}" >"$m/url"
        "$ETCD" --name "m$i" --data-dir "$m/data" \
            --listen-client-urls "http://127.0.0.1:${cport[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${cport[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${pport[$i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${pport[$i]}" \
            --initial-cluster "$initial" --initial-cluster-state new \
            --initial-cluster-token "nh-test-$$" \
            --log-outputs "$m/etcd.log" --logger zap \
            >"$m/stdout.log" 2>&1 </dev/null &
        echo $! >"$m/pid"
    done
    local deadline=$((SECONDS + wait_s))
    for ((i = 0; i < n; i++)); do
        local url
        url=$(cat "$dir/m$i/url")
        until curl -fsS -m 1 "$url/health" 2>/dev/null | grep -q '"health":"true"'; do
            if ((SECONDS >= deadline)) || ! kill -0 "$(cat "$dir/m$i/pid")" 2>/dev/null; then
                echo "etcd.sh: member m$i did not start; log:" >&2
                tail -20 "$dir/m$i/etcd.log" "$dir/m$i/stdout.log" >&2 2>/dev/null || true
                stop_members
                exit 1
            fi
            sleep 0.1
        done
    done
    if [ -n "${ETCD_OWNER_PID:-}" ]; then
        (
            while kill -0 "$ETCD_OWNER_PID" 2>/dev/null; do sleep 1; done
            stop_members
        ) >/dev/null 2>&1 </dev/null &
    fi
    local urls=""
    for ((i = 0; i < n; i++)); do
        urls+="${urls:+,}$(cat "$dir/m$i/url")"
    done
    echo "$urls"
}

stop_members() {
    local m pid
    for m in "$dir"/m*; do
        [ -f "$m/pid" ] || continue
        pid=$(cat "$m/pid")
        kill "$pid" 2>/dev/null || true
    done
    for m in "$dir"/m*; do
        [ -f "$m/pid" ] || continue
        pid=$(cat "$m/pid")
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}

case "$cmd" in
start) start_members 1 ;;
cluster) start_members "${3:-3}" ;;
stop) stop_members ;;
*) echo "usage: $0 start|cluster|stop DIR [N]" >&2; exit 2 ;;
esac
