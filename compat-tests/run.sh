#!/usr/bin/env bash
# run.sh [PATTERN]: run the numbered compatibility tests (all, or those whose
# name contains PATTERN) against NUTHATCH (default build/nuthatch); each
# starts its own gateway.  Exit status 77 from a test means skipped.
set -u
cd "$(dirname "$0")"
pass=0 fail=0 skip=0
for t in 0[0-9][0-9][0-9]-*; do
    case "$t" in *"${1:-}"*) ;; *) continue ;; esac
    case "$t" in
    *.py) cmd=(/usr/bin/python3 "./$t") ;;
    *.sh) cmd=(bash "./$t") ;;
    *) continue ;;
    esac
    echo "=== $t"
    timeout 600 "${cmd[@]}"
    case $? in
    0) pass=$((pass + 1)) ;;
    77) skip=$((skip + 1)) ;;
    *) fail=$((fail + 1)); echo "=== $t FAILED" ;;
    esac
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
