#!/bin/sh
# check-fresh.sh SRC_DIR: the committed protocol/gen/kp_msgs.{h,c} must be
# what protocol/gen/generate.py makes from SRC_DIR/../shared/kafka-messages.
# Exit 0 when fresh, 1 when stale, 77 (skip) when the definitions are absent.
set -u

src=${1:?usage: check-fresh.sh SRC_DIR}
msgs="$src/../shared/kafka-messages"
gen="$src/protocol/gen"

if [ ! -d "$msgs" ]; then
    echo "check-fresh: $msgs not found; skipping"
    exit 77
fi
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
    echo "check-fresh: $python not found; skipping"
    exit 77
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if ! "$python" "$gen/generate.py" "$msgs" "$tmp"; then
    echo "check-fresh: generate.py failed"
    exit 1
fi
status=0
for f in kp_msgs.h kp_msgs.c; do
    if ! cmp -s "$tmp/$f" "$gen/$f"; then
        echo "check-fresh: protocol/gen/$f is stale; regenerate with"
        echo "    python3 protocol/gen/generate.py ../shared/kafka-messages protocol/gen"
        diff -u "$gen/$f" "$tmp/$f" | head -20
        status=1
    fi
done
[ $status -eq 0 ] && echo "check-fresh: protocol/gen/kp_msgs.{h,c} are fresh"
exit $status
