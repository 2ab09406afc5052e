#!/usr/bin/env python3
"""check_acks.py [--partial-ok] LABEL DUMP ACKFILE...: compare what the
producers of compat-tests/c/nh_client.c recorded as acknowledged with what a
read-back (nh_compat_client dump) found in the log.

Lines of both kinds of file: topic partition offset key value headers,
tab-separated (nh_client.c).  Checks:
  - every acknowledged record is at its offset with the same key, value and
    headers;
  - each partition's offsets run from 0 to the high watermark - 1 without a
    hole;
  - no offset is acknowledged twice with different content, and a record
    stored twice (a retry whose first acknowledgement was lost, which is
    allowed) is byte-identical both times.
--partial-ok ignores an unterminated last line of an ACKFILE: a copy taken
while its producer was still writing.  The dump must then be read after the
copy was taken, so that every acknowledgement in it is below the high
watermarks the dump read up to.

Prints one summary line; exit status 1 after any failure (the first 20 are
printed, prefixed "FAIL: LABEL:").
"""
import collections
import sys

args = sys.argv[1:]
partial_ok = bool(args) and args[0] == "--partial-ok"
if partial_ok:
    args = args[1:]
if len(args) < 2:
    sys.exit(__doc__)
label, dump, ackfiles = args[0], args[1], args[2:]
errors = []


def err(msg):
    if len(errors) < 20:
        print("FAIL: %s: %s" % (label, msg), file=sys.stderr)
    errors.append(msg)


def records(path, partial_last=False):
    with open(path) as f:
        lines = f.readlines()
    for n, line in enumerate(lines, 1):
        if not line.endswith("\n"):
            if not (partial_last and n == len(lines)):
                err("%s:%d: truncated line" % (path, n))
            continue
        fields = line[:-1].split("\t")
        if len(fields) != 6:
            err("%s:%d: %d fields" % (path, n, len(fields)))
            continue
        t, p, o, k, v, h = fields
        yield (t, int(p), int(o)), (k, v, h)


# The acknowledgements: one content per offset.
acked = {}
for path in ackfiles:
    for pos, content in records(path, partial_ok):
        old = acked.setdefault(pos, content)
        if old != content:
            err("%s[%d]@%d acknowledged twice with different content (keys %s, %s)"
                % (pos + (old[0], content[0])))

# The log: contiguous offsets from 0 in each partition.
log = {}
parts = collections.defaultdict(list)
for pos, content in records(dump):
    if pos in log:
        err("%s[%d]@%d read twice" % pos)
    log[pos] = content
    parts[pos[:2]].append(pos[2])
for tp, offs in sorted(parts.items()):
    if offs != list(range(len(offs))):
        missing = sorted(set(range(max(offs) + 1)) - set(offs))
        err("%s[%d]: offsets not contiguous from 0 (%d records, last %d, missing %s)"
            % (tp + (len(offs), max(offs), missing[:10])))

# Every acknowledged record, where it was acknowledged, unchanged.
lost = changed = 0
for pos, content in sorted(acked.items()):
    got = log.get(pos)
    if got is None:
        lost += 1
        err("%s[%d]@%d acknowledged (key %s) but not in the log" % (pos + (content[0],)))
    elif got != content:
        changed += 1
        err("%s[%d]@%d differs: acknowledged key %s value %.40s..., read key %s value %.40s..."
            % (pos + (content[0], content[1], got[0], got[1])))

# A key stored more than once (a retry) has the same content every time.
by_key = collections.defaultdict(set)
for pos, (k, v, h) in log.items():
    by_key[(pos[0], pos[1], k)].add((v, h))
dups = len(log) - len(by_key)
for key, contents in by_key.items():
    if len(contents) != 1:
        err("%s[%d] key %s stored with %d different contents" % (key + (len(contents),)))

print("%s: %d records acknowledged, %d in the log (%d not acknowledged, %d extra copies of "
      "retried records), %d lost, %d changed, %d partitions"
      % (label, len(acked), len(log), len(set(log) - set(acked)), dups, lost, changed,
         len(parts)))
sys.exit(1 if errors else 0)
