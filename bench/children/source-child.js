'use strict';

// Benchmark child (plain Node, built-in IPC only): on `{ go: n }` it sends n messages `{ i, s: 'hello' }` in one
// synchronous loop, `i` counting up from 0 across the whole run.
let sent = 0;

process.on('message', (msg) => {
  const n = msg.go;
  for (let k = 0; k < n; k++) process.send({ i: sent++, s: 'hello' });
});
process.send({ ready: true });
