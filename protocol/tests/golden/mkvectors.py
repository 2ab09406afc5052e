#!/usr/bin/env python3
"""Selects golden vectors from a recproxy.py recording (standard library only).

usage: mkvectors.py RECORDING_DIR VECTORS_DIR

Reads RECORDING_DIR/log.jsonl and frames/, keeps per (client, API, version,
direction) the first frame -- except Produce requests (one per compression
codec and idempotence) and Fetch responses (the first that carries records)
-- and writes VECTORS_DIR/<client>-<api>-v<version>-<req|resp>[-<n>].bin
plus VECTORS_DIR/index.tsv.  Frames that recproxy edited (ApiVersions lists
clamped or augmented) are used only when no unedited frame has the same key.
Prints a client x API table of the versions kept.

The small decoders below (Produce request, Fetch response, record batch
header) are written from the Kafka protocol description and exist only to
write the notes; they are deliberately separate from the project's codec.
"""

import json
import os
import struct
import sys

API_NAMES = {
    0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata",
    4: "leader_and_isr", 5: "stop_replica", 6: "update_metadata",
    7: "controlled_shutdown", 8: "offset_commit", 9: "offset_fetch",
    10: "find_coordinator", 11: "join_group", 12: "heartbeat",
    13: "leave_group", 14: "sync_group", 15: "describe_groups",
    16: "list_groups", 17: "sasl_handshake", 18: "api_versions",
    19: "create_topics", 20: "delete_topics", 21: "delete_records",
    22: "init_producer_id", 23: "offset_for_leader_epoch",
    24: "add_partitions_to_txn", 25: "add_offsets_to_txn", 26: "end_txn",
    27: "write_txn_markers", 28: "txn_offset_commit",
    29: "describe_acls", 30: "create_acls", 31: "delete_acls",
    32: "describe_configs", 33: "alter_configs",
    34: "alter_replica_log_dirs", 35: "describe_log_dirs",
    36: "sasl_authenticate", 37: "create_partitions",
    38: "create_delegation_token", 39: "renew_delegation_token",
    40: "expire_delegation_token", 41: "describe_delegation_token",
    42: "delete_groups", 43: "elect_leaders",
    44: "incremental_alter_configs", 45: "alter_partition_reassignments",
    46: "list_partition_reassignments", 47: "offset_delete",
    48: "describe_client_quotas", 49: "alter_client_quotas",
    50: "describe_user_scram_credentials", 51: "alter_user_scram_credentials",
    55: "describe_quorum", 57: "update_features", 60: "describe_cluster",
    61: "describe_producers", 64: "unregister_broker",
    65: "describe_transactions", 66: "list_transactions",
    67: "allocate_producer_ids", 68: "consumer_group_heartbeat",
}

# First flexible version per API key (request header v2 / response header v1
# from that version on).  Only the APIs decoded below are needed.
FIRST_FLEXIBLE = {0: 9, 1: 12, 18: 3}

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

EDITED = {"augmented", "clamped"}


class R:
    def __init__(self, buf, pos=0):
        self.b = buf
        self.p = pos

    def i8(self):
        v = self.b[self.p]
        self.p += 1
        return v

    def i16(self):
        v = struct.unpack_from(">h", self.b, self.p)[0]
        self.p += 2
        return v

    def i32(self):
        v = struct.unpack_from(">i", self.b, self.p)[0]
        self.p += 4
        return v

    def i64(self):
        v = struct.unpack_from(">q", self.b, self.p)[0]
        self.p += 8
        return v

    def uvarint(self):
        shift = val = 0
        while True:
            c = self.b[self.p]
            self.p += 1
            val |= (c & 0x7F) << shift
            if not c & 0x80:
                return val
            shift += 7

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.p += self.uvarint()

    def string(self, flex):
        n = self.uvarint() - 1 if flex else self.i16()
        if n < 0:
            return None
        s = self.b[self.p:self.p + n].decode("utf-8", "replace")
        self.p += n
        return s

    def array_len(self, flex):
        return self.uvarint() - 1 if flex else self.i32()

    def bytes_(self, flex):
        n = self.uvarint() - 1 if flex else self.i32()
        if n < 0:
            return None
        v = self.b[self.p:self.p + n]
        self.p += n
        return v


def batches(records):
    """Yields (magic, codec, producer_id, transactional, count) per batch."""
    p = 0
    while records and p + 17 <= len(records):
        length = struct.unpack_from(">i", records, p + 8)[0]
        magic = records[p + 16]
        if magic == 2 and p + 61 <= len(records):
            attrs = struct.unpack_from(">h", records, p + 21)[0]
            pid = struct.unpack_from(">q", records, p + 43)[0]
            count = struct.unpack_from(">i", records, p + 57)[0]
            yield 2, attrs & 7, pid, bool(attrs & 0x10), count
        elif magic in (0, 1) and p + 22 <= len(records):
            yield magic, records[p + 21] & 7, -1, False, 1
        else:
            return
        p += 12 + length


def describe_batches(records):
    bs = list(batches(records))
    if not bs:
        return None
    magics = sorted({b[0] for b in bs})
    codecs = []
    for b in bs:
        c = CODECS.get(b[1], str(b[1]))
        if c not in codecs:
            codecs.append(c)
    return {
        "n": len(bs),
        "records": sum(b[4] for b in bs),
        "magic": magics,
        "codecs": codecs,
        "idempotent": any(b[2] >= 0 for b in bs),
        "transactional": any(b[3] for b in bs),
    }


def request_body(frame, key, ver):
    r = R(frame, 8)
    r.string(False)  # client_id: never compact
    flex = key in FIRST_FLEXIBLE and ver >= FIRST_FLEXIBLE[key]
    if flex:
        r.tags()
    return r, flex


def produce_info(frame, ver):
    r, flex = request_body(frame, 0, ver)
    if ver >= 3:
        r.string(flex)  # transactional_id
    acks = r.i16()
    r.i32()  # timeout
    recs = b""
    for _ in range(r.array_len(flex)):
        r.string(flex)
        for _ in range(r.array_len(flex)):
            r.i32()
            recs += r.bytes_(flex) or b""
            if flex:
                r.tags()
        if flex:
            r.tags()
    info = describe_batches(recs) or {"n": 0, "records": 0, "magic": [], "codecs": [],
                                      "idempotent": False, "transactional": False}
    info["acks"] = acks
    return info


def fetch_info(frame, ver):
    flex = ver >= FIRST_FLEXIBLE[1]
    r = R(frame, 4)
    if flex:
        r.tags()
    if ver >= 1:
        r.i32()
    if ver >= 7:
        r.i16()
        r.i32()
    recs = b""
    for _ in range(r.array_len(flex)):
        if ver >= 13:
            r.p += 16
        else:
            r.string(flex)
        for _ in range(r.array_len(flex)):
            r.i32()
            r.i16()
            r.i64()
            if ver >= 4:
                r.i64()
            if ver >= 5:
                r.i64()
            if ver >= 4:
                n = r.array_len(flex)
                for _ in range(max(n, 0)):
                    r.i64()
                    r.i64()
                    if flex:
                        r.tags()
            if ver >= 11:
                r.i32()
            recs += r.bytes_(flex) or b""
            if flex:
                r.tags()
        if flex:
            r.tags()
    return describe_batches(recs)


def api_versions_error(frame):
    return struct.unpack_from(">h", frame, 4)[0]


def main():
    recdir, outdir = sys.argv[1], sys.argv[2]
    entries = []
    with open(os.path.join(recdir, "log.jsonl")) as f:
        for line in f:
            e = json.loads(line)
            if e["api_key"] < 0:
                continue
            with open(os.path.join(recdir, e["file"]), "rb") as g:
                e["frame"] = g.read()
            e["edited"] = bool(EDITED & set(e["flags"]))
            entries.append(e)
    # Unedited frames first, then in recording order.
    entries.sort(key=lambda e: (e["edited"], e["seq"]))

    selected = {}  # (client, key, ver, dir, sub) -> entry
    notes = {}
    for e in entries:
        key, ver, d = e["api_key"], e["api_version"], e["dir"]
        sub = ""
        note = []
        try:
            if key == 0 and d == "req":
                info = produce_info(e["frame"], ver)
                sub = "codec=%s" % ",".join(info["codecs"] or ["-"])
                if info["idempotent"]:
                    sub += " idempotent"
                if info["transactional"]:
                    sub += " transactional"
                note.append(sub)
                note.append("acks=%d batches=%d records=%d magic=%s" % (
                    info["acks"], info["n"], info["records"],
                    ",".join(map(str, info["magic"]))))
            elif key == 1 and d == "resp":
                info = fetch_info(e["frame"], ver)
                e["has_records"] = bool(info)
                if info:
                    note.append("records: %d batches, %d records, codecs %s" % (
                        info["n"], info["records"], ",".join(info["codecs"])))
                else:
                    note.append("no records")
            elif key == 18 and d == "resp":
                err = api_versions_error(e["frame"])
                if err == 35:
                    note.append("error_code=35 UNSUPPORTED_VERSION for a v%d request" % ver)
                    f = e["frame"]
                    n = struct.unpack_from(">i", f, 6)[0] if len(f) >= 10 else -1
                    if 0 <= n < 1000 and len(f) == 10 + 6 * n:
                        note.append("body in v0 format")
                    else:
                        note.append("body NOT in v0 format")
        except (struct.error, IndexError) as ex:
            note.append("(note decoder failed: %s)" % ex)
        k = (e["label"], key, ver, d, sub)
        if k in selected:
            prev = selected[k]
            # Fetch responses: prefer one that carries records.
            if not (key == 1 and d == "resp" and e.get("has_records")
                    and not prev.get("has_records") and prev["edited"] == e["edited"]):
                continue
        if "low" in e["modes"]:
            note.append("low pass: recproxy clamped the advertised version ranges")
        if "synthesized" in e["flags"]:
            note.append("synthesized by recproxy (the mock broker has no %s); accepted by the client"
                        % API_NAMES[key])
        if "augmented" in e["flags"]:
            note.append("recproxy added CreateTopics 0-4 and DeleteTopics 0-3 to the list")
        if "clamped" in e["flags"]:
            note.append("recproxy clamped the max versions")
        if "v0-reencoded" in e["flags"]:
            note.append("recproxy re-encoded the mock's answer in v0 format (the mock writes a "
                        "1-byte count, the entry and throttle_time_ms)")
        if "controller-fixed" in e["flags"]:
            note.append("recproxy set ControllerId to the broker's id (the mock answers 0)")
        if "port-rewritten" in e["flags"]:
            note.append("advertised port rewritten to the proxy's")
        selected[k] = e
        notes[id(e)] = note

    # Name files; number them when one (client, api, version, dir) has several.
    groups = {}
    for k, e in selected.items():
        groups.setdefault(k[:4], []).append(e)
    os.makedirs(outdir, exist_ok=True)
    for name in os.listdir(outdir):
        if name.endswith(".bin") or name == "index.tsv":
            os.remove(os.path.join(outdir, name))
    rows = []
    reqfile = {}
    for (client, key, ver, d), es in sorted(groups.items()):
        es.sort(key=lambda e: e["seq"])
        for i, e in enumerate(es, 1):
            fname = "%s-%s-v%d-%s%s.bin" % (client, API_NAMES.get(key, "api%d" % key), ver, d,
                                             "-%d" % i if len(es) > 1 else "")
            with open(os.path.join(outdir, fname), "wb") as f:
                f.write(e["frame"])
            e["out"] = fname
            if d == "req":
                reqfile[(e["label"], e["conn"], e["corr"])] = fname
            rows.append(e)
    lines = ["file\tclient\tdirection\tapi_key\tapi_version\tnote\n"]
    for e in sorted(rows, key=lambda e: e["out"]):
        note = notes[id(e)]
        if e["dir"] == "resp":
            rq = reqfile.get((e["label"], e["conn"], e["corr"]))
            if rq:
                note = note + ["reply to %s" % rq]
        lines.append("%s\t%s\t%s\t%d\t%d\t%s\n" % (
            e["out"], e["label"], e["dir"], e["api_key"], e["api_version"],
            "; ".join(note).replace("\t", " ")))
    with open(os.path.join(outdir, "index.tsv"), "w") as f:
        f.writelines(lines)

    # Summary: client x API -> versions (req / resp).
    seen = {}
    for e in rows:
        s = seen.setdefault((e["label"], e["api_key"]), {"req": set(), "resp": set()})
        s[e["dir"]].add(e["api_version"])
    clients = sorted({c for c, _ in seen})
    keys = sorted({k for _, k in seen})
    fmt = lambda s: ",".join(map(str, sorted(s))) or "-"
    print("| api | " + " | ".join(clients) + " |")
    print("|---|" + "---|" * len(clients))
    for k in keys:
        cells = []
        for c in clients:
            s = seen.get((c, k))
            cells.append("-" if not s else
                         (fmt(s["req"]) if s["req"] == s["resp"] else
                          "req %s / resp %s" % (fmt(s["req"]), fmt(s["resp"]))))
        print("| %s (%d) | %s |" % (API_NAMES.get(k, "?"), k, " | ".join(cells)))
    total = sum(os.path.getsize(os.path.join(outdir, n)) for n in os.listdir(outdir))
    print("\n%d files, %d bytes in %s" % (len(rows) + 1, total, outdir))


if __name__ == "__main__":
    main()
