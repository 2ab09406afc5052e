#!/usr/bin/env node
// s3rver.js: an S3-protocol server (npm s3rver, pinned in compat-tests/js)
// on loopback for the S3 object store's unit tests.
//
//   node --openssl-legacy-provider storage/tests/s3rver.js --dir DIR
//        --port-file FILE [--port N] [--bucket NAME]... [--service-endpoint DOMAIN]
//
// s3rver makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3
// keeps in its legacy provider: without --openssl-legacy-provider every
// truncated listing fails with 500 InternalError, so the script refuses to
// start without it.
// Objects live under DIR (created when missing).  Port 0 (the default) lets
// the kernel pick a free port; the bound port is written to FILE (a
// temporary file renamed into place).  Each --bucket exists from the start.
// Virtual-hosted requests work for hosts BUCKET.s3.DOMAIN (DOMAIN "test" by
// default, so BUCKET.s3.test: map it to 127.0.0.1 with curl's connect-to).
// s3rver knows the access key S3RVER (secret S3RVER) and, for Signature
// Version 4, checks only that the key exists, not the signature; it checks
// neither Content-MD5 nor x-amz-content-sha256, and ignores If-None-Match on
// PUT (it overwrites).  SIGTERM or SIGINT stops it.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

function usage(msg) {
  process.stderr.write(`s3rver.js: ${msg}\n`);
  process.exit(2);
}

const opts = { port: 0, buckets: [], serviceEndpoint: 'test' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const [arg, val] = [argv[i], argv[i + 1]];
  if (val === undefined) usage(`${arg} needs a value`);
  switch (arg) {
    case '--dir': opts.dir = val; break;
    case '--port': opts.port = Number(val); break;
    case '--bucket': opts.buckets.push(val); break;
    case '--port-file': opts.portFile = val; break;
    case '--service-endpoint': opts.serviceEndpoint = val; break;
    default: usage(`unknown option ${arg}`);
  }
}
if (!opts.dir || !opts.portFile) usage('--dir and --port-file are required');
try {
  crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
} catch (err) {
  usage(`DES is unavailable (${err.message}): run node with --openssl-legacy-provider`);
}
fs.mkdirSync(opts.dir, { recursive: true });

let S3rver;
try {
  const dir = path.join(__dirname, '..', '..', 'compat-tests', 'js', 'node_modules', 's3rver');
  S3rver = require(dir);
  require(path.join(__dirname, '..', '..', 'compat-tests', 'lib', 's3rver_put_wait.js'))(dir);
} catch (err) {
  usage(`the npm package s3rver is not installed (scripts/install-deps.sh): ${err.message}`);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: opts.port,
  directory: opts.dir,
  silent: true,
  serviceEndpoint: opts.serviceEndpoint,
  configureBuckets: opts.buckets.map((name) => ({ name })),
});

server.run().then(({ address, port }) => {
  const tmp = `${opts.portFile}.tmp`;
  fs.writeFileSync(tmp, `${port}\n`);
  fs.renameSync(tmp, opts.portFile);
  process.stdout.write(`s3rver listening on ${address}:${port}\n`);
}, (err) => {
  process.stderr.write(`s3rver.js: ${err.stack || err}\n`);
  process.exit(1);
});

function stop() {
  server.close().then(() => process.exit(0), () => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
