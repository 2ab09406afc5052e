#!/usr/bin/env python3
"""faultproxy.py: a loopback HTTP proxy in front of an S3 server, for tests.

    faultproxy.py --upstream HOST:PORT --port-file FILE
                  [--verify ACCESS:SECRET] [--if-none-match]

It listens on 127.0.0.1 (a free port, written to FILE) and forwards every
request to the upstream server, keeping the request's Host header, so that a
virtual-hosted request reaches the server as it was sent.  Along the way it
can:

  * check each request as AWS does (--verify): the SigV4 signature, computed
    here independently from the bytes received (403 SignatureDoesNotMatch),
    a canonically encoded path, x-amz-content-sha256 against the body (400
    XAmzContentSHA256Mismatch; not for UNSIGNED-PAYLOAD, as on AWS) and
    Content-MD5 against the body (400 BadDigest);
  * refuse to overwrite (--if-none-match): a PUT with "If-None-Match: *" of
    a key the upstream already has gets 412 PreconditionFailed, as on AWS and
    MinIO -- s3rver itself ignores the header;
  * inject faults queued through its control API.

Control API (on the same port):
  POST /__proxy/fault?action=A&count=N[&method=M][&code=C][&s3code=S][&ms=T]
      queue a fault for the next N requests (of method M, when given):
        status  answer C (default 503) with an S3 error body of code S
                (default SlowDown), without forwarding
        drop    close the connection without answering, without forwarding
        lost    forward, then close the connection without answering
        flip    flip one byte of the body after the checks (the server stores
                other bytes than were sent and signed)
        corrupt flip one byte of the body before the checks (what AWS would
                refuse with BadDigest)
        delay   wait T ms (default 3000) before forwarding
        norange forward without the Range header: the server answers 200
                with the whole object, as a server that ignores Range does
  POST /__proxy/reset   forget queued faults, the log and the statistics
  GET  /__proxy/stats   "max_concurrent=N": most requests in progress at once
  GET  /__proxy/log     one line per request received:
                        "CONN METHOD PATH inm=VALUE payload=P status=STATUS fault=ACTION"
                        (P: "unsigned" for UNSIGNED-PAYLOAD, "signed" for a
                        SHA-256, "-" without x-amz-content-sha256)
"""
import argparse
import hashlib
import hmac
import http.client
import http.server
import itertools
import os
import re
import socketserver
import sys
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
       "trailer", "upgrade", "expect", "content-length"}

lock = threading.Lock()
faults = []  # dicts: action, count, method, code, s3code, ms
log = []
active = 0  # requests being handled now
max_active = 0  # most requests handled at once since the last reset
conn_ids = itertools.count(1)
args = None


def s3_error(code, s3code, message):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
            '<Message>%s</Message></Error>' % (s3code, message)).encode()
    return code, body


def take_fault(method):
    with lock:
        for f in faults:
            if f["count"] > 0 and (not f["method"] or f["method"] == method):
                f["count"] -= 1
                return dict(f)
    return None


def uri_encode(s, safe):
    return urllib.parse.quote(s, safe=safe)


def canonical_query(q):
    if not q:
        return ""
    pairs = []
    for part in q.split("&"):
        k, _, v = part.partition("=")
        pairs.append((uri_encode(urllib.parse.unquote(k), "-_.~"),
                      uri_encode(urllib.parse.unquote(v), "-_.~")))
    pairs.sort()
    return "&".join("%s=%s" % p for p in pairs)


def hmac256(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def check_request(method, raw_path, headers, body):
    """None when the request passes the checks AWS makes, else (status, body)."""
    access, secret = args.verify.split(":", 1)
    auth = headers.get("Authorization", "")
    m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request,"
                     r" ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})", auth)
    if not m:
        return s3_error(400, "AuthorizationHeaderMalformed", "bad Authorization: " + auth)
    key, date, region, signed, sig = m.groups()
    if key != access:
        return s3_error(403, "InvalidAccessKeyId", key)
    names = signed.split(";")
    if names != sorted(names) or not {"host", "x-amz-date", "x-amz-content-sha256"} <= set(names):
        return s3_error(403, "SignatureDoesNotMatch", "signed headers " + signed)
    path, _, query = raw_path.partition("?")
    if uri_encode(urllib.parse.unquote(path), "/-_.~") != path:
        return s3_error(400, "InvalidURI", "path not canonically encoded: " + path)
    canon_headers = ""
    for n in names:
        vals = headers.get_all(n)
        if vals is None:
            return s3_error(403, "SignatureDoesNotMatch", "signed header %s missing" % n)
        canon_headers += "%s:%s\n" % (n, ",".join(" ".join(v.split()) for v in vals))
    payload_hash = headers.get("x-amz-content-sha256", "")
    creq = "\n".join([method, path, canonical_query(query), canon_headers, signed, payload_hash])
    amz_date = headers.get("x-amz-date", "")
    scope = "%s/%s/s3/aws4_request" % (date, region)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = hmac256(("AWS4" + secret).encode(), date)
    for part in (region, "s3", "aws4_request"):
        k = hmac256(k, part)
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, sig):
        return s3_error(403, "SignatureDoesNotMatch", "canonical request:\n" + creq)
    if payload_hash != "UNSIGNED-PAYLOAD" and payload_hash != hashlib.sha256(body).hexdigest():
        return s3_error(400, "XAmzContentSHA256Mismatch", "payload hash")
    md5 = headers.get("Content-MD5")
    if md5 is not None:
        import base64
        if base64.b64encode(hashlib.md5(body).digest()).decode() != md5:
            return s3_error(400, "BadDigest", "Content-MD5")
    return None


def flip(body):
    if not body:
        return body
    b = bytearray(body)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def setup(self):
        super().setup()
        self.conn_id = next(conn_ids)
        self.upstream = None

    def finish(self):
        super().finish()
        if self.upstream:
            self.upstream.close()

    def reply(self, status, body, headers=(), head=False):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def control(self, method):
        global max_active
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if method == "POST" and u.path == "/__proxy/fault":
            f = {"action": q.get("action", "status"), "count": int(q.get("count", "1")),
                 "method": q.get("method"), "code": int(q.get("code", "503")),
                 "s3code": q.get("s3code", "SlowDown"), "ms": int(q.get("ms", "3000"))}
            with lock:
                faults.append(f)
            return self.reply(200, b"ok\n")
        if method == "POST" and u.path == "/__proxy/reset":
            with lock:
                faults.clear()
                log.clear()
                max_active = 0
            return self.reply(200, b"ok\n")
        if method == "GET" and u.path == "/__proxy/stats":
            with lock:
                text = "max_concurrent=%d\n" % max_active
            return self.reply(200, text.encode())
        if method == "GET" and u.path == "/__proxy/log":
            with lock:
                text = "".join(line + "\n" for line in log)
            return self.reply(200, text.encode())
        return self.reply(404, b"unknown control path\n")

    def forward(self, method, body, drop=()):
        """Send the request upstream (without the headers in @drop);
        (status, headers, body) of the answer."""
        for attempt in range(2):
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(args.upstream, timeout=30)
            try:
                self.upstream.putrequest(method, self.path, skip_host=True,
                                         skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in HOP and k.lower() not in drop:
                        self.upstream.putheader(k, v)
                self.upstream.putheader("Content-Length", str(len(body)))
                self.upstream.endheaders(body)
                r = self.upstream.getresponse()
                data = r.read()
                hdrs = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
                if method == "HEAD":
                    cl = r.getheader("Content-Length")
                    if cl is not None:
                        hdrs.append(("Content-Length", cl))
                return r.status, hdrs, data
            except (http.client.HTTPException, OSError):
                self.upstream.close()
                self.upstream = None
                if attempt == 1:
                    raise

    def exists_upstream(self):
        status, _, _ = self.forward("HEAD", b"", drop=("if-none-match", "content-md5"))
        return status == 200

    def record(self, method, status, fault):
        inm = self.headers.get("If-None-Match", "-")
        sha = self.headers.get("x-amz-content-sha256")
        payload = "-" if sha is None else "unsigned" if sha == "UNSIGNED-PAYLOAD" else "signed"
        with lock:
            log.append("%d %s %s inm=%s payload=%s status=%s fault=%s" % (
                self.conn_id, method, self.path, inm, payload, status,
                fault["action"] if fault else "-"))

    def handle_any(self):
        global active, max_active
        method = self.command
        if self.path.startswith("/__proxy/"):
            return self.control(method)
        with lock:
            active += 1
            max_active = max(max_active, active)
        try:
            self.proxy(method)
        finally:
            with lock:
                active -= 1

    def proxy(self, method):
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        fault = take_fault(method)
        action = fault["action"] if fault else None
        if action == "status":
            self.record(method, fault["code"], fault)
            status, err = s3_error(fault["code"], fault["s3code"], "injected")
            return self.reply(status, err, head=method == "HEAD")
        if action == "drop":
            self.record(method, "dropped", fault)
            self.close_connection = True
            return
        if action == "delay":
            time.sleep(fault["ms"] / 1000.0)
        if action == "corrupt":
            body = flip(body)
        if args.verify:
            bad = check_request(method, self.path, self.headers, body)
            if bad:
                self.record(method, bad[0], fault)
                return self.reply(bad[0], bad[1], head=method == "HEAD")
        if action == "flip":
            body = flip(body)
        if (args.if_none_match and method == "PUT" and
                self.headers.get("If-None-Match", "").strip() == "*" and self.exists_upstream()):
            self.record(method, 412, fault)
            status, err = s3_error(412, "PreconditionFailed",
                                   "At least one of the pre-conditions you specified did not hold")
            return self.reply(status, err)
        try:
            status, hdrs, data = self.forward(method, body,
                                              drop=("range",) if action == "norange" else ())
        except (http.client.HTTPException, OSError) as e:
            self.record(method, 502, fault)
            status, err = s3_error(502, "BadGateway", str(e))
            return self.reply(status, err, head=method == "HEAD")
        self.record(method, status, fault)
        if action == "lost":
            self.close_connection = True
            return
        self.reply(status, data, hdrs, head=method == "HEAD")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that gave up (its timeout, a test closing the store)
        # leaves a broken pipe behind: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--verify")
    p.add_argument("--if-none-match", action="store_true")
    p.add_argument("--max-seconds", type=float, default=900,
                   help="exit after this long in any case")
    args = p.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    t = threading.Timer(args.max_seconds, lambda: os._exit(0))
    t.daemon = True
    t.start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
