'use strict';

// Benchmark child (plain Node, built-in IPC only): counts the messages it gets and reports
// `{ got, outOfOrder, malformed }` each time the count reaches one of the checkpoints given as arguments (e.g.
// `node sink-child.js 20000 220000`). Messages are `{ i, s }` with `i` counting up from 0 across the whole run; any
// other `i` counts as out of order. A message with a `d` (the advanced-serialization row sends
// `{ i, s, d: new Date(0), m: new Map([[1, 2]]) }`) counts as malformed unless a Date and that Map arrived.
const checkpoints = process.argv.slice(2).map(Number);
let next = 0;
let got = 0;
let outOfOrder = 0;
let malformed = 0;

process.on('message', (msg) => {
  if (msg.i !== got) outOfOrder++;
  if (msg.d !== undefined && !(msg.d instanceof Date && msg.m instanceof Map && msg.m.get(1) === 2)) malformed++;
  got++;
  if (got === checkpoints[next]) {
    next++;
    process.send({ got, outOfOrder, malformed });
  }
});
process.send({ ready: true });
