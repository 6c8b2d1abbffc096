'use strict';

// Writes raw bytes on the IPC channel (fd 3, fork()'s default), bypassing process.send, so that the parent reads
// exactly these: well-formed lines around a malformed JSON line and a line of invalid UTF-8, then exits.
const fs = require('node:fs');

const line = (value) => Buffer.from(`${JSON.stringify(value)}\n`);
fs.writeSync(3, line({ seq: 0 }));
fs.writeSync(3, Buffer.from('{"seq": 1, oops\n'));
fs.writeSync(3, line({ seq: 1 }));
fs.writeSync(3, Buffer.concat([Buffer.from('{"bad":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]));
fs.writeSync(3, line({ seq: 2 }));
fs.writeSync(3, Buffer.concat([Buffer.from('not json\n'), line({ seq: 3 }), line('end')]));
