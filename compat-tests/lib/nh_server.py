"""nh_server.py: start and stop one nuthatch for a compatibility test.

    with NuthatchServer() as srv:      # fresh data dir, loopback, a free port
        use(srv.bootstrap)             # "127.0.0.1:PORT"
    # SIGTERM on exit (killed after 15 s); srv.exit_status afterwards

NUTHATCH names the binary (default: build/nuthatch of this tree).  Extra
settings: NuthatchServer(settings={"num.partitions": "3"}).  The log is
srv.log_path; it is printed when the server fails to start.

NH_BACKEND picks the stores: "embedded" (default: the directory object store
and SQLite under srv.dir/data) or "s3": the first start also starts an etcd
and an S3 server for this server object (Services; the test exits 77 when
they are not installed) and every start of the gateway uses them, so a
restart finds the data again.  In s3 mode the gateway still gets --data.dir
srv.dir/data, and stop() reports exit status 1 if anything was written
there.  srv.object_files() and srv.meta_range() read the stores without the
gateway in either mode.  NH_S3_ADDRESSING=virtual makes the gateway name the
bucket in the host name (BUCKET.s3.localhost) instead of the path.
"""

import atexit
import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = re.compile(r" listening on 127\.0\.0\.1:(\d+) ")
BACKEND = os.environ.get("NH_BACKEND", "embedded")
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"}
ETCD_NAMESPACE = "/nh-compat"  # the metadata.url prefix in s3 mode


class ServicesMissing(Exception):
    pass


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# Services die with the process that started them, even when it is killed
# (PR_SET_PDEATHSIG through util-linux's setpriv, where it exists).
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []


def _stop_process(proc, timeout=5.0):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Services:
    """One etcd (Debian's etcd-server, default limits, never 2379/2380) and
    one s3rver (lib/s3rver.js) on free loopback ports with fresh directories,
    as lib/services.sh starts them.  An object KEY is the file
    s3_dir/bucket/KEY._S3rver_object."""

    bucket = "nh-test"

    def __init__(self):
        self.dir = None
        self.etcd = self.s3 = None
        self.etcd_endpoint = self.s3_endpoint = self.s3_dir = None

    def start(self, timeout=20.0):
        etcd_bin = os.environ.get("NH_ETCD_BIN", "etcd")
        if shutil.which(etcd_bin) is None:
            raise ServicesMissing("no etcd (%s; Debian package etcd-server)" % etcd_bin)
        if shutil.which("node") is None or not os.path.isdir(
                os.path.join(ROOT, "compat-tests", "js", "node_modules", "s3rver")):
            raise ServicesMissing("no s3rver (node, and npm ci in compat-tests/js)")
        self.dir = tempfile.mkdtemp(prefix="nh-services.")
        atexit.register(self.stop)  # also when the test dies of an exception
        try:
            self._start_etcd(etcd_bin, timeout)
            self._start_s3(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _start_etcd(self, etcd_bin, timeout):
        for attempt in range(3):
            cport, pport = free_ports(2)
            self.etcd_endpoint = "http://127.0.0.1:%d" % cport
            peer = "http://127.0.0.1:%d" % pport
            data = os.path.join(self.dir, "etcd")
            shutil.rmtree(data, ignore_errors=True)
            out = open(os.path.join(self.dir, "etcd.out"), "ab")
            self.etcd = subprocess.Popen(
                DIE_WITH_PARENT + [etcd_bin, "--name", "nh-test", "--data-dir", data,
                 "--listen-client-urls", self.etcd_endpoint,
                 "--advertise-client-urls", self.etcd_endpoint,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", "nh-test=" + peer, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "nh-test-%d-%d" % (os.getpid(), attempt),
                 "--logger", "zap", "--log-outputs", os.path.join(self.dir, "etcd.log")],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
            out.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.etcd.poll() is None:
                try:
                    with urllib.request.urlopen(self.etcd_endpoint + "/health", timeout=1) as r:
                        if json.load(r).get("health") == "true":
                            return
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            _stop_process(self.etcd)  # a port taken meanwhile: try others
        raise RuntimeError("etcd did not start; see %s/etcd.log" % self.dir)

    def _start_s3(self, timeout):
        self.s3_dir = os.path.join(self.dir, "s3")
        os.makedirs(self.s3_dir)
        log_path = os.path.join(self.dir, "s3rver.log")
        log = open(log_path, "ab")
        self.s3 = subprocess.Popen(
            DIE_WITH_PARENT + ["node", os.path.join(ROOT, "compat-tests", "lib", "s3rver.js"),
                               "0", self.s3_dir, self.bucket],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.s3.poll() is None:
            m = re.search(r"^s3rver listening on 127\.0\.0\.1:(\d+)",
                          open(log_path, errors="replace").read(), re.M)
            if m:
                self.s3_endpoint = "http://127.0.0.1:%s" % m.group(1)
                return
            time.sleep(0.05)
        raise RuntimeError("s3rver did not start: " + open(log_path, errors="replace").read())

    def stop(self):
        _stop_process(self.s3)
        _stop_process(self.etcd)
        self.s3 = self.etcd = None
        if self.dir and os.environ.get("NH_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def etcd_range(self, prefix):
        """[(key, value)] of the etcd keys starting with @prefix (bytes), by key."""
        end = bytearray(prefix)
        while end and end[-1] == 0xFF:
            end.pop()
        end[-1] += 1
        body = json.dumps({"key": base64.b64encode(prefix).decode(),
                           "range_end": base64.b64encode(bytes(end)).decode()}).encode()
        req = urllib.request.Request(self.etcd_endpoint + "/v3/kv/range", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            kvs = json.load(r).get("kvs", [])
        return sorted((base64.b64decode(kv["key"]), base64.b64decode(kv.get("value", "")))
                      for kv in kvs)


class NuthatchServer:
    def __init__(self, settings=None, binary=None, keep=False, backend=None):
        self.binary = binary or os.environ.get("NUTHATCH", os.path.join(ROOT, "build", "nuthatch"))
        self.settings = dict(settings or {})
        self.keep = keep or os.environ.get("NH_KEEP") == "1"
        self.backend = backend or BACKEND
        self.services = None  # s3 mode: started by the first start()
        self.dir = None
        self.proc = None
        self.port = None
        self.exit_status = None

    @property
    def data_dir(self):
        return os.path.join(self.dir, "data")

    def store_settings(self):
        """The --storage.url and --metadata.url of this mode ({} when embedded)."""
        if self.backend != "s3":
            return {}
        sv = self.services
        query = "endpoint=" + sv.s3_endpoint
        if os.environ.get("NH_S3_ADDRESSING", "path") == "virtual":
            # BUCKET.s3.localhost: curl resolves every *.localhost to loopback.
            query = "endpoint=http://s3.localhost:%s&addressing=virtual" % \
                sv.s3_endpoint.rsplit(":", 1)[1]
        return {"storage.url": "s3://%s/nh?%s" % (sv.bucket, query),
                "metadata.url": "etcd://%s%s" % (sv.etcd_endpoint[len("http://"):],
                                                 ETCD_NAMESPACE)}

    def object_files(self):
        """Paths of the flush objects as files on disk, sorted.  The directory
        store's empty file created ahead of the next put is no object yet."""
        if self.backend == "s3":
            root, suffix = os.path.join(self.services.s3_dir, self.services.bucket), \
                ".nho._S3rver_object"
        else:
            root, suffix = os.path.join(self.data_dir, "objects"), ".nho"
        out = []
        for d, _, files in os.walk(root):
            for f in files:
                p = os.path.join(d, f)
                try:
                    if f.endswith(suffix) and os.path.getsize(p) > 0:
                        out.append(p)
                except FileNotFoundError:
                    pass  # deleted (garbage collection) while we looked
        return sorted(out)

    def meta_range(self, prefix):
        """[(key, value)] of the metadata keys starting with @prefix (bytes,
        e.g. b"/nuthatch/topics/"), keys as the gateway names them.  Embedded:
        read from SQLite, best with the gateway stopped."""
        if self.backend == "s3":
            ns = ETCD_NAMESPACE.encode()
            return [(k[len(ns):], v) for k, v in self.services.etcd_range(ns + prefix)]
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.data_dir, "meta.db"),
                             uri=True)
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        rows = [(bytes(k), bytes(v)) for k, v in db.execute(
            "SELECT key, val FROM kv WHERE key >= ? AND key < ? ORDER BY key", (prefix, end))]
        db.close()
        return rows

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    @property
    def log_path(self):
        return os.path.join(self.dir, "server.log")

    def start(self, timeout=20.0):
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("no executable at %s (build first, or set NUTHATCH)" % self.binary)
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="nh-compat.")
            atexit.register(self.cleanup)  # also when the test dies of an exception
        if self.backend == "s3" and self.services is None:
            try:
                self.services = Services().start()
            except ServicesMissing as e:
                print("nh_server: NH_BACKEND=s3: %s: skipped" % e)
                self.cleanup()
                sys.exit(77)
        elif self.backend not in ("s3", "embedded"):
            raise RuntimeError("NH_BACKEND=%s: expected embedded or s3" % self.backend)
        args = [self.binary, "--data.dir", self.data_dir,
                "--listeners", "PLAINTEXT://127.0.0.1:0",
                "--log.level", os.environ.get("NH_LOG_LEVEL", "info")]
        for k, v in list(self.store_settings().items()) + list(self.settings.items()):
            args += ["--" + k, str(v)]
        env = dict(os.environ, **S3_CREDENTIALS)
        log = open(self.log_path, "ab")
        skip = log.tell()  # a restart appends: look only at this run's lines
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "r", errors="replace") as f:
                f.seek(skip)
                m = LISTENING.search(f.read())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nuthatch did not start:\n" + open(self.log_path).read())

    def stop(self, timeout=15.0):
        if self.proc is None:
            return self.exit_status
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_status = 124
                self.proc = None
                return self.exit_status
        self.exit_status = self.proc.returncode
        self.proc = None
        if self.backend == "s3" and os.path.exists(self.data_dir):
            print("nh_server: NH_BACKEND=s3: the gateway wrote under data.dir: %s"
                  % sorted(os.listdir(self.data_dir))[:5], file=sys.stderr)
            self.exit_status = 1
        return self.exit_status

    def cleanup(self):
        self.stop()
        if self.services:
            self.services.stop()
            self.services = None
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None and self.dir:
            print(open(self.log_path, errors="replace").read()[-4000:])
        self.cleanup()
        return False
