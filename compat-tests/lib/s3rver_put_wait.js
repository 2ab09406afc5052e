// s3rver_put_wait.js: make s3rver 3.7.1 answer a PUT only once the object's
// bytes are in its file.  Its filesystem store resolves putObject when the
// request body has been read (for a Buffer, at once), not when its write
// stream has written the file, so a GET right after the PUT's answer could
// read an empty or short object (seen as an empty GET in test_objstore_s3
// on a loaded machine).  Used by compat-tests/lib/s3rver.js and
// storage/tests/s3rver.js:
//
//   require('.../s3rver_put_wait.js')(pathOfTheS3rverPackage);
'use strict';

const fs = require('fs');
const path = require('path');

module.exports = function patch(s3rverDir) {
  const Store = require(path.join(s3rverDir, 'lib', 'stores', 'filesystem'));
  const put = Store.prototype.putObject;
  Store.prototype.putObject = async function putObject(object) {
    const res = await put.call(this, object);
    const file = this.getResourcePath(object.bucket, object.key, 'object');
    // Bounded: 10 s, then answer as s3rver would have.
    for (let i = 0; i < 5000; i++) {
      try {
        if ((await fs.promises.stat(file)).size >= res.size) break;
      } catch (err) {
        // not created yet
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return res;
  };
};
