#!/bin/sh
# test_cli.sh NUTHATCH: the command line of the nuthatch executable -- exit
# statuses, one-line errors on standard error, --help and --version.
set -u
bin=${1:?usage: test_cli.sh path/to/nuthatch}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nh-test-cli.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run ARGS...: sets $status; output in $tmp/out and $tmp/err.
run() {
    "$bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
}

# expect_error WORD ARGS...: exit 2, nothing on stdout, exactly one line on
# stderr, starting "nuthatch: " and containing WORD.
expect_error() {
    word=$1
    shift
    run "$@"
    [ "$status" -eq 2 ] || fail "'$*' exited $status, expected 2"
    [ ! -s "$tmp/out" ] || fail "'$*' wrote to stdout"
    lines=$(wc -l <"$tmp/err")
    [ "$lines" -eq 1 ] || fail "'$*' wrote $lines lines to stderr: $(cat "$tmp/err")"
    grep -q '^nuthatch: ' "$tmp/err" || fail "'$*': stderr does not start with 'nuthatch: '"
    grep -qF -- "$word" "$tmp/err" || fail "'$*': stderr does not name '$word': $(cat "$tmp/err")"
}

expect_error "'bogus'" --bogus 1
expect_error "'bogus'" --bogus=1
expect_error num.partitions --num.partitions 0
expect_error num.partitions --num.partitions abc
expect_error log.level --log.level loud
expect_error listeners --listeners PLAINTEXT://localhost:99999
expect_error node.id --node.id
expect_error "'stray'" stray
expect_error log.retention.ms --log.retention.ms -2
expect_error storage.url --storage.url s3://bucket/prefix
expect_error metadata.url --metadata.url etcd://localhost/nh
# s3:// without credentials in the environment is a configuration error.
s3url='s3://nh-bucket/p?endpoint=http://127.0.0.1:1'
(unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
    expect_error AWS_ACCESS_KEY_ID --storage.url "$s3url"
    exit "$failures") || failures=$((failures + $?))
(unset NUTHATCH_ETCD_PASSWORD
    expect_error NUTHATCH_ETCD_PASSWORD --metadata.url etcd://127.0.0.1:1 --metadata.etcd.user nh
    exit "$failures") || failures=$((failures + $?))
expect_error "config file" --config "$tmp/missing.properties"

printf 'node.id=1\nnum.partitions = 0\n' >"$tmp/bad.properties"
expect_error "line 2: num.partitions" --config "$tmp/bad.properties"

# --help: exit 0, every key on stdout, nothing on stderr.
for h in --help -h; do
    run "$h"
    [ "$status" -eq 0 ] || fail "$h exited $status"
    [ ! -s "$tmp/err" ] || fail "$h wrote to stderr"
    for key in listeners advertised.listeners node.id cluster.lease.ms data.dir storage.url metadata.url \
        auto.create.topics.enable num.partitions default.replication.factor \
        message.max.bytes socket.request.max.bytes connections.max.idle.ms max.connections \
        request.receive.budget.bytes request.partial.timeout.ms flush.max.bytes \
        flush.max.inflight log.level log.retention.ms log.retention.bytes \
        log.retention.check.interval.ms log.lifecycle.interval.ms log.gc.interval.ms \
        log.gc.grace.ms log.index.max.keys log.segment.bytes metrics.listen \
        shutdown.timeout.ms read.cache.bytes tail.cache.bytes cluster.id \
        metadata.etcd.user metadata.etcd.request.timeout.ms metadata.etcd.connect.timeout.ms \
        storage.s3.request.timeout.ms storage.s3.attempt.timeout.ms storage.s3.max.requests \
        storage.s3.verify.etag storage.s3.sign.payload startup.timeout.ms; do
        grep -q -- "--$key (" "$tmp/out" || fail "$h does not list $key"
    done
done
run --bogus 1 --help
[ "$status" -eq 0 ] || fail "--help after a mistake exited $status"

run --version
[ "$status" -eq 0 ] || fail "--version exited $status"
grep -q '^nuthatch [0-9]' "$tmp/out" || fail "--version printed: $(cat "$tmp/out")"

# A good configuration gets past loading: the file is read, the command line
# overrides it, the effective configuration is logged in well-formed lines.
# The listener address is TEST-NET-1 (RFC 5737), which no host owns, so the
# gateway fails at the latest when it binds (today: the listener is not
# built yet) and exits 1 instead of serving.
printf 'node.id = 3\nnum.partitions: 4\n' >"$tmp/good.properties"
run_timeout() {
    timeout 30 "$bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
}
run_timeout --num.partitions 5 --config "$tmp/good.properties" --data.dir "$tmp/data" \
    --listeners PLAINTEXT://192.0.2.1:9092 --log.level debug
[ "$status" -eq 1 ] || fail "a good configuration exited $status, expected 1 (cannot listen)"
grep -q ' ERROR [a-z0-9_.-]*: ' "$tmp/err" || fail "no error line saying why: $(cat "$tmp/err")"
grep -q 'INFO main: nuthatch .* node.id=3 ' "$tmp/err" || fail "node.id from the file not logged"
grep -q 'num.partitions=5' "$tmp/err" || fail "the command line did not override the file"
grep -q 'DEBUG config: num.partitions = 5$' "$tmp/err" || fail "no debug line per key"
bad=$(grep -cvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z (ERROR|WARN|INFO|DEBUG) [a-z0-9_.-]+: ' "$tmp/err")
[ "$bad" -eq 0 ] || fail "$bad malformed log lines: $(cat "$tmp/err")"

# Stores that cannot be reached: start-up keeps trying for startup.timeout.ms,
# says why on one error line, exits 1 -- and, with S3 and etcd, never
# creates data.dir.  Port 1 on loopback refuses connections.
t0=$(date +%s%3N)
AWS_ACCESS_KEY_ID=id AWS_SECRET_ACCESS_KEY=secret run_timeout --data.dir "$tmp/never" \
    --listeners PLAINTEXT://127.0.0.1:0 --storage.url "$s3url" \
    --metadata.url etcd://127.0.0.1:1/nh --startup.timeout.ms 1500 \
    --storage.s3.request.timeout.ms 300
elapsed=$(($(date +%s%3N) - t0))
[ "$status" -eq 1 ] || fail "unreachable stores: exited $status, expected 1: $(cat "$tmp/err")"
[ "$elapsed" -lt 15000 ] || fail "unreachable stores: gave up after $elapsed ms"
grep -q 'ERROR server: object store: .*nh-bucket.*gave up after' "$tmp/err" ||
    fail "unreachable stores: no error line naming the bucket: $(cat "$tmp/err")"
grep -q 'WARN server: .*trying again' "$tmp/err" ||
    fail "unreachable stores: no retry logged: $(cat "$tmp/err")"
[ ! -e "$tmp/never" ] || fail "data.dir was created with S3 and etcd stores"

# wait_listening LOG: until the gateway logging to LOG serves (at most 10 s);
# status 0 when it does.
wait_listening() {
    local i=0
    while ! grep -q 'listening on' "$1" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    grep -q 'listening on' "$1"
}

# One gateway per data.dir: a second one on the same directory says so on
# one error line and exits 1; the first goes on serving.
"$bin" --data.dir "$tmp/shared" --listeners PLAINTEXT://127.0.0.1:0 \
    >/dev/null 2>"$tmp/first.err" </dev/null &
first=$!
wait_listening "$tmp/first.err" || fail "data.dir lock: the first gateway did not serve"
run_timeout --data.dir "$tmp/shared" --listeners PLAINTEXT://127.0.0.1:0
[ "$status" -eq 1 ] || fail "data.dir lock: the second gateway exited $status, expected 1"
[ "$(grep -c ' ERROR ' "$tmp/err")" -eq 1 ] &&
    grep -q "ERROR server: data.dir $tmp/shared is in use by another nuthatch process" "$tmp/err" ||
    fail "data.dir lock: no one error line saying so: $(cat "$tmp/err")"
kill -0 "$first" 2>/dev/null || fail "data.dir lock: the first gateway died"
kill -9 "$first"
wait "$first" 2>/dev/null
# The lock dies with its holder, however it ends: the next start serves.
"$bin" --data.dir "$tmp/shared" --listeners PLAINTEXT://127.0.0.1:0 \
    >/dev/null 2>"$tmp/again.err" </dev/null &
again=$!
wait_listening "$tmp/again.err" ||
    fail "data.dir lock: no start after kill -9 of the holder: $(cat "$tmp/again.err")"
kill "$again"
wait "$again"

# Where transparent huge pages are given on request, the gateway restarts
# itself once (same pid) with glibc's heap asking for them; a GLIBC_TUNABLES
# that sets glibc.malloc.hugetlb already is left alone, other tunables kept.
# thp_env NAME [GLIBC_TUNABLES]: the serving gateway's GLIBC_TUNABLES into $env.
thp_env() {
    dir="$tmp/thp-$1"
    if [ $# -gt 1 ]; then
        GLIBC_TUNABLES=$2 "$bin" --data.dir "$dir" --listeners PLAINTEXT://127.0.0.1:0 \
            >/dev/null 2>"$tmp/thp.err" </dev/null &
    else
        (unset GLIBC_TUNABLES
            exec "$bin" --data.dir "$dir" --listeners PLAINTEXT://127.0.0.1:0 \
                >/dev/null 2>"$tmp/thp.err" </dev/null) &
    fi
    pid=$!
    wait_listening "$tmp/thp.err"
    env=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^GLIBC_TUNABLES=//p')
    kill "$pid"
    wait "$pid"
    grep -q 'listening on' "$tmp/thp.err" || fail "thp $1: the gateway did not serve: $(cat "$tmp/thp.err")"
}
if grep -q '\[madvise\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null &&
    ! grep -q __asan_init "$bin"; then
    thp_env unset
    [ "$env" = "glibc.malloc.hugetlb=1" ] || fail "thp unset: GLIBC_TUNABLES '$env'"
    thp_env other glibc.malloc.tcache_count=7
    # glibc 2.36 shows the first tunable only; later glibc all of them.
    case $env in
    glibc.malloc.hugetlb=1 | glibc.malloc.hugetlb=1:glibc.malloc.tcache_count=7) ;;
    *) fail "thp other: GLIBC_TUNABLES '$env'" ;;
    esac
    thp_env off glibc.malloc.hugetlb=0
    [ "$env" = "glibc.malloc.hugetlb=0" ] || fail "thp off: GLIBC_TUNABLES '$env'"
else
    echo "test_cli: transparent huge pages not on request here (or AddressSanitizer): not checked"
fi

if [ "$failures" -ne 0 ]; then
    echo "test_cli: $failures failure(s)" >&2
    exit 1
fi
echo "test_cli: ok"
