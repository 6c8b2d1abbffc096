'use strict';

// An ordinary Node child: it uses the built-in process.send / process.on('message'), nothing from forkline.
// examples/demo.js forks it once with node:child_process and once with forkline and asks both the same.
let count = 0;
let sum = 0;

process.on('message', (msg) => {
  switch (msg.cmd) {
    case 'ping': // a round trip: answer at once
    case 'echo': // a large message: send it back as it came
      process.send(msg);
      break;
    case 'add': // parent → child: add them up, answer only when asked for the total
      count++;
      sum += msg.n;
      break;
    case 'total':
      process.send({ cmd: 'total', count, sum });
      count = sum = 0;
      break;
    case 'count': // child → parent: send msg.n messages in a row
      for (let n = 0; n < msg.n; n++) process.send({ cmd: 'n', n });
      break;
  }
});
// Once the parent disconnects, nothing keeps this process alive: it exits.
process.send({ cmd: 'ready', pid: process.pid });
