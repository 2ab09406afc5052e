#!/usr/bin/env node
// s3rver.js PORT DIR BUCKET: an S3-protocol server (the npm package s3rver,
// pinned in compat-tests/js/package.json) on 127.0.0.1:PORT, keeping its
// objects as files under DIR, with BUCKET created.  PORT 0 picks a free
// port.  Prints one line "s3rver listening on 127.0.0.1:PORT" once it
// answers; exits on SIGTERM or SIGINT.
//
// Credentials: s3rver's fixed test account, access key S3RVER and secret
// S3RVER.  s3rver 3.7.1 refuses an unknown access key but does not verify
// Signature Version 4 signatures (nor Content-MD5): the gateway's signing is
// checked against AWS's published examples in its unit tests instead.  Virtual-hosted
// addressing works with the endpoint http://s3.localhost:PORT (curl resolves
// every *.localhost name to loopback): BUCKET.s3.localhost names BUCKET.
//
// Layout on disk: an object KEY of BUCKET is the file
// DIR/BUCKET/KEY._S3rver_object, with KEY._S3rver_metadata.json beside it.
// NH_S3RVER_LOG=1 logs every request to standard output.
'use strict';

const path = require('path');

const [port, dir, bucket] = process.argv.slice(2);
if (port === undefined || !dir || !bucket) {
  console.error('usage: s3rver.js PORT DIR BUCKET');
  process.exit(2);
}

// s3rver encrypts ListObjectsV2 continuation tokens with single DES, which
// OpenSSL 3 keeps in its legacy provider only (Node.js 17 and later: every
// truncated listing fails with InternalError).  Triple DES with three equal
// keys is single DES, and is in the default provider.
const crypto = require('crypto');
try {
  crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
} catch (err) {
  const viaTripleDes = fn => (alg, key, iv, options) =>
    alg === 'des'
      ? fn('des-ede3-cbc', Buffer.concat([key, key, key]), iv, options)
      : fn(alg, key, iv, options);
  crypto.createCipheriv = viaTripleDes(crypto.createCipheriv);
  crypto.createDecipheriv = viaTripleDes(crypto.createDecipheriv);
}

let S3rver;
try {
  S3rver = require(path.join(__dirname, '..', 'js', 'node_modules', 's3rver'));
  require('./s3rver_put_wait.js')(path.join(__dirname, '..', 'js', 'node_modules', 's3rver'));
} catch (err) {
  console.error('s3rver.js: the npm package s3rver is not installed ' +
                '(npm ci in compat-tests/js): ' + err.message);
  process.exit(3);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: Number(port),
  directory: dir,
  silent: process.env.NH_S3RVER_LOG !== '1',
  serviceEndpoint: 'localhost',
  configureBuckets: [{ name: bucket }],
});

server.run().then(
  addr => {
    console.log('s3rver listening on 127.0.0.1:' + addr.port);
  },
  err => {
    console.error('s3rver.js: ' + err.message);
    process.exit(1);
  },
);

function stop() {
  server.close().finally(() => process.exit(0));
  // Idle keep-alive connections would hold close() up.
  if (server.httpServer && server.httpServer.closeAllConnections) {
    server.httpServer.closeAllConnections();
  }
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
