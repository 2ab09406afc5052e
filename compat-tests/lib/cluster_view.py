"""cluster_view.py BOOTSTRAP: one gateway's view of the cluster, hand-encoded.

Prints one line, "controller=C brokers=ID@HOST:PORT,..." from Metadata v4
(no topics), then the same from DescribeCluster v0 on a second line; exits
1 when the gateway cannot be reached or a request fails.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_wire as kw  # noqa: E402


def metadata(conn):
    r = kw.Reader(conn.call(3, 4, kw.array([]) + kw.i8(0), timeout=10))
    r.i32()  # throttle
    brokers = r.array(lambda: (r.i32(), r.string(), r.i32(), r.string()))
    r.string()  # cluster id
    controller = r.i32()
    return controller, [(b[0], b[1], b[2]) for b in brokers]


def describe_cluster(conn):
    r = kw.Reader(conn.call(60, 0, b"\x00" + b"\x00", timeout=10))
    r.i32()  # throttle
    err = r.i16()
    r.compact_string()  # message
    r.compact_string()  # cluster id
    controller = r.i32()

    def broker():
        b = (r.i32(), r.compact_string(), r.i32(), r.compact_string())
        r.tags()
        return b
    brokers = r.compact_array(broker)
    if err:
        raise ValueError("DescribeCluster error %d" % err)
    return controller, [(b[0], b[1], b[2]) for b in brokers]


def line(view):
    controller, brokers = view
    return "controller=%d brokers=%s" % (
        controller, ",".join("%d@%s:%d" % b for b in brokers))


def main():
    try:
        conn = kw.Conn(sys.argv[1], timeout=10)
        print(line(metadata(conn)))
        print(line(describe_cluster(conn)))
        conn.close()
    except (OSError, ValueError, TimeoutError, ConnectionError) as e:
        print("error: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
