"""nh_server.py: start and stop one nuthatch for a compatibility test.

    with NuthatchServer() as srv:      # fresh data dir, loopback, a free port
        use(srv.bootstrap)             # "127.0.0.1:PORT"
    # SIGTERM on exit (killed after 15 s); srv.exit_status afterwards

NUTHATCH names the binary (default: build/nuthatch of this tree).  Extra
settings: NuthatchServer(settings={"num.partitions": "3"}).  The log is
srv.log_path; it is printed when the server fails to start.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING = re.compile(r" listening on 127\.0\.0\.1:(\d+) ")


class NuthatchServer:
    def __init__(self, settings=None, binary=None, keep=False):
        self.binary = binary or os.environ.get("NUTHATCH", os.path.join(ROOT, "build", "nuthatch"))
        self.settings = dict(settings or {})
        self.keep = keep or os.environ.get("NH_KEEP") == "1"
        self.dir = None
        self.proc = None
        self.port = None
        self.exit_status = None

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
        args = [self.binary, "--data.dir", os.path.join(self.dir, "data"),
                "--listeners", "PLAINTEXT://127.0.0.1:0",
                "--log.level", os.environ.get("NH_LOG_LEVEL", "info")]
        for k, v in self.settings.items():
            args += ["--" + k, str(v)]
        log = open(self.log_path, "ab")
        skip = log.tell()  # a restart appends: look only at this run's lines
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
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
        return self.exit_status

    def cleanup(self):
        self.stop()
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
