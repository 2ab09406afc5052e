#!/usr/bin/env bash
# build.sh: fetch Debian's librdkafka 2.0.2 source package and build the
# library and its regression-suite runner (tests/test-runner) in a cache
# outside the clone.  Reuses the cache when its stamp file says the build is
# complete; rebuilds from scratch when it is absent or incomplete.
#
#   NH_RDK_CACHE   cache directory (default /var/cache/nuthatch/librdkafka)
#   NH_RDK_VERSION the upstream version (default 2.0.2; any Debian revision)
#
# Prints the path of the source tree (its tests/ holds test-runner) on the
# last line of standard output.  Needs root the first time (apt).
set -euo pipefail
CACHE=${NH_RDK_CACHE:-/var/cache/nuthatch/librdkafka}
VERSION=${NH_RDK_VERSION:-2.0.2}
HERE=$(cd "$(dirname "$0")" && pwd)
# The stamp names what was built: the version, this script and the patches.
KEY=$(cat "$0" "$HERE"/*.patch | sha256sum | cut -c1-12)
STAMP=$CACHE/.built-$VERSION-$KEY
JOBS=${NH_RDK_JOBS:-2}
SRCLIST=/etc/apt/sources.list.d/nuthatch-deb-src.sources

log() { echo "librdkafka-build: $*" >&2; }

if [ -f "$STAMP" ] && [ -x "$(cat "$STAMP")/tests/test-runner" ]; then
    cat "$STAMP"
    exit 0
fi

# Source entries derived from the machine's own apt sources: every deb822
# stanza of /etc/apt/sources.list.d/*.sources with Types: deb for this
# release, copied with Types: deb-src into a file of its own (the originals
# are left as they are).  One-line sources.list entries likewise.
write_deb_src() {
    local codename
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    local tmp
    tmp=$(mktemp)
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && [ "$f" != "$SRCLIST" ] || continue
        awk -v codename="$codename" '
            function flush() {
                if (n > 0 && isdeb && (codename == "" || suites ~ ("(^| )" codename "( |$)"))) {
                    print "Types: deb-src"
                    for (i = 1; i <= n; i++) print lines[i]
                    print ""
                }
                n = 0; isdeb = 0; suites = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^Types:/ { isdeb = ($0 ~ /(: | )deb( |$)/); next }
            /^Suites:/ { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
            { lines[++n] = $0 }
            END { flush() }' "$f" >>"$tmp"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v codename="$codename" '
            $1 == "deb" && (codename == "" || $0 ~ (" " codename "([ -]|$)")) {
                $1 = "deb-src"; print "# " FILENAME; print
            }' "$f" >>"$tmp.list"
    done
    if [ -s "$tmp.list" ]; then
        # One-line entries cannot live in a .sources file.
        mv "$tmp.list" "${SRCLIST%.sources}.list"
    else
        rm -f "$tmp.list"
    fi
    if [ -s "$tmp" ]; then
        mv "$tmp" "$SRCLIST"
        chmod 644 "$SRCLIST"
    else
        rm -f "$tmp"
    fi
    [ -f "$SRCLIST" ] || [ -f "${SRCLIST%.sources}.list" ] || {
        log "no deb entry for this release in /etc/apt to derive a deb-src entry from"
        exit 1
    }
}

if [ "$(id -u)" -ne 0 ]; then
    log "the cache $CACHE is not built and building it needs root (apt-get source)"
    exit 1
fi

log "building into $CACHE (cold cache)"
rm -rf "$CACHE"
mkdir -p "$CACHE"
write_deb_src
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
debver=$(apt-cache showsrc librdkafka | awk -v v="$VERSION" '$1 == "Version:" && index($2, v "-") == 1 { print $2; exit }')
[ -n "$debver" ] || { log "no librdkafka $VERSION source package in the apt sources"; exit 1; }
(cd "$CACHE" && apt-get source -qq --download-only "librdkafka=$debver" >/dev/null)
dsc=$(ls "$CACHE"/librdkafka_*.dsc | head -1)
# Unpacked without signature checks against a keyring: apt already checked
# the files' hashes against the signed Sources index.
(cd "$CACHE" && dpkg-source --no-check -x "$(basename "$dsc")" src >/dev/null)
SRC=$CACHE/src
for p in "$HERE"/*.patch; do
    patch -s -d "$SRC" -p1 <"$p"
done

# Only what test-runner needs: plain TCP, the codecs; no TLS/SASL (the tests
# that need them are left out of the run).
cd "$SRC"
./configure --prefix="$CACHE/install" --disable-ssl --disable-gssapi --disable-sasl \
    --disable-curl --disable-lz4-ext --enable-static >"$CACHE/configure.log" 2>&1 || {
    tail -30 "$CACHE/configure.log" >&2
    exit 1
}
# Without RapidJSON the suite skips its statistics checks (0053).
grep -q '^#define WITH_RAPIDJSON 1' config.h || {
    log "configure did not find RapidJSON (rapidjson-dev; scripts/install-deps.sh installs it)"
    exit 1
}
make -C src -j"$JOBS" lib >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; exit 1; }
make -C src-cpp -j"$JOBS" >>"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; exit 1; }
make -C tests -j"$JOBS" build >>"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log" >&2; exit 1; }
[ -x "$SRC/tests/test-runner" ] || { log "no tests/test-runner after the build"; exit 1; }
echo "$SRC" >"$STAMP"
log "built $SRC/tests/test-runner"
echo "$SRC"
