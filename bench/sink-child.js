'use strict';

// Benchmark child (plain Node, built-in IPC only): counts the messages it gets and reports `{ got, outOfOrder }`
// each time the count reaches one of the checkpoints given as arguments (e.g. `node sink-child.js 20000 220000`).
// Messages are `{ i, s }` with `i` counting up from 0 across the whole run; any other `i` counts as out of order.
const checkpoints = process.argv.slice(2).map(Number);
let next = 0;
let got = 0;
let outOfOrder = 0;

process.on('message', (msg) => {
  if (msg.i !== got) outOfOrder++;
  got++;
  if (got === checkpoints[next]) {
    next++;
    process.send({ got, outOfOrder });
  }
});
process.send({ ready: true });
