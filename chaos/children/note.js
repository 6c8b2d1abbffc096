'use strict';

// A line on stdout, written synchronously (retrying while a non-blocking pipe is full), so that it is there before
// any kill that may follow: the chaos scenarios read what a child recorded from its stdout.
const fs = require('node:fs');

function note(line) {
  const bytes = Buffer.from(`${line}\n`);
  let off = 0;
  while (off < bytes.length) {
    try {
      off += fs.writeSync(1, bytes, off);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

module.exports = { note };
