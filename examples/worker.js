'use strict';

// An ordinary Node child: it uses the built-in process.send / process.on('message'), nothing from forkline.
process.on('message', (msg) => {
  if (msg.cmd === 'square') process.send({ cmd: 'result', n: msg.n, square: msg.n * msg.n });
  if (msg.cmd === 'done') process.disconnect();
});
process.send({ cmd: 'ready', pid: process.pid });
