#!/usr/bin/python3
"""Cross-checks the golden vectors with kafka-python's protocol structs.

usage: /usr/bin/python3 check_vectors.py [VECTORS_DIR]

kafka-python 2.0.2 (Debian's python3-kafka) has its own, independent
definitions of many request/response versions.  Every vector whose API and
version it knows is decoded with them and must be consumed exactly; the rest
are counted as skipped.  Exits non-zero on any failure.
"""
import csv
import io
import os
import struct
import sys

from kafka.protocol import admin, commit, fetch, group, metadata, offset, produce
from kafka.protocol.struct import Struct


def structs():
    table = {}
    for mod in (admin, commit, fetch, group, metadata, offset, produce):
        for name in dir(mod):
            obj = getattr(mod, name)
            if (isinstance(obj, list) and obj and isinstance(obj[0], type)
                    and issubclass(obj[0], Struct) and hasattr(obj[0], "API_KEY")):
                table[(obj[0].API_KEY, "req" if name.endswith("Request") else "resp")] = obj
    return table


def main():
    vdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "vectors")
    table = structs()
    ok = failed = skipped = 0
    with open(os.path.join(vdir, "index.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        key, ver, d = int(row["api_key"]), int(row["api_version"]), row["direction"]
        versions = table.get((key, d))
        # An ApiVersions answer with error 35 is in v0 format, whatever the version asked.
        if key == 18 and d == "resp" and "error_code=35" in row["note"]:
            ver = 0
        if not versions or ver >= len(versions):
            skipped += 1
            continue
        with open(os.path.join(vdir, row["file"]), "rb") as g:
            buf = io.BytesIO(g.read())
        if d == "req":  # request header v1: api_key, api_version, correlation_id, client_id
            buf.read(8)
            (n,) = struct.unpack(">h", buf.read(2))
            buf.read(max(n, 0))
        else:  # response header v0: correlation_id
            buf.read(4)
        try:
            versions[ver].decode(buf)
            rest = len(buf.read())
            if rest:
                raise ValueError("%d bytes left over" % rest)
            ok += 1
        except Exception as e:  # noqa: BLE001 - report any decoding failure
            print("FAIL %s: %s" % (row["file"], e))
            failed += 1
    print("check_vectors: %d decoded by kafka-python, %d failed, %d skipped (API or version "
          "unknown to kafka-python 2.0.2)" % (ok, failed, skipped))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
