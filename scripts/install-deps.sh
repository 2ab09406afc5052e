#!/usr/bin/env bash
# Bring a Debian 12 machine (as root) everything Nuthatch's build and tests use.
# Installs only what is missing; a machine that has everything is left untouched.
#
#   install-deps.sh            everything: build, tests, test clients (make build/test)
#   install-deps.sh --build    only what building build/nuthatch needs (docker/Dockerfile's
#                              build stage)
#   install-deps.sh --runtime  only the shared libraries build/nuthatch runs with, CA
#                              certificates and curl (docker/Dockerfile's runtime stage)
set -euo pipefail

MODE=all
case "${1:-}" in
"") ;;
--build) MODE=build ;;
--runtime) MODE=runtime ;;
*)
    echo "usage: install-deps.sh [--build | --runtime]" >&2
    exit 2
    ;;
esac

BUILD_PKGS=(
    gcc make cmake pkg-config
    libevent-dev libcurl4-openssl-dev
    libzstd-dev zlib1g-dev libsnappy-dev liblz4-dev
    libcmocka-dev libsqlite3-dev
    libjansson-dev libexpat1-dev libssl-dev
    librdkafka-dev
)
RUNTIME_PKGS=(
    libevent-2.1-7 libevent-core-2.1-7 libevent-pthreads-2.1-7 libevent-extra-2.1-7
    libcurl4 libzstd1 zlib1g libsnappy1v5 liblz4-1 libsqlite3-0 libjansson4 libexpat1
    libssl3 ca-certificates curl
)
PKGS=(
    "${BUILD_PKGS[@]}"
    g++ clang libclang-rt-14-dev sqlite3
    etcd-server etcd-client
    kcat
    python3 python3-confluent-kafka python3-kafka
    procps
    prometheus python3-yaml # promtool (only Debian's prometheus has it); the YAML parser
    dpkg-dev patch rapidjson-dev  # compat-tests/librdkafka/build.sh: the suite from its source package
)
case $MODE in
build) PKGS=("${BUILD_PKGS[@]}") ;;
runtime) PKGS=("${RUNTIME_PKGS[@]}") ;;
esac

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

# Node.js and npm may come from another source than Debian; Debian's npm over
# them fails, so only ask Debian for them when npm is absent.
if [ "$MODE" = all ] && ! command -v npm >/dev/null 2>&1; then
    missing+=(nodejs npm)
fi

install_js_clients() {
    [ "$MODE" = all ] || return 0
    # kafkajs for the compatibility tests and s3rver (a local S3 server for
    # the tests), pinned in compat-tests/js.
    local js
    js="$(cd "$(dirname "$0")/.." && pwd)/compat-tests/js"
    if [ -f "$js/package-lock.json" ] &&
        { [ ! -d "$js/node_modules/kafkajs" ] || [ ! -d "$js/node_modules/s3rver" ]; }; then
        echo "install-deps: npm ci in compat-tests/js" >&2
        (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
}

if [ ${#missing[@]} -eq 0 ]; then
    install_js_clients
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages (${missing[*]}) and not root; install them or run as root" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_js_clients
