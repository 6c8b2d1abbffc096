'use strict';

// Benchmark clients for the handles rows with the clients apart (plain Node, forked with node:child_process for
// every implementation alike): on { port, count, inFlight } it opens `count` loopback connections to `port`, at
// most `inFlight` at once, each of which must read exactly `ok` and then EOF, and answers { done: count } or
// { error }. It exits when its channel closes.

const net = require('node:net');

process.on('message', ({ port, count, inFlight }) => {
  let started = 0;
  let done = 0;
  let failed = false;
  const fail = (message) => {
    if (failed) return;
    failed = true;
    process.send({ error: message });
  };
  const start = () => {
    const id = started++;
    let reply = '';
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.setEncoding('latin1');
    socket.on('data', (chunk) => (reply += chunk));
    socket.on('error', (err) => fail(`connection ${id}: ${err.code ?? ''} ${err.message}`));
    socket.on('close', () => {
      if (failed) return;
      if (reply !== 'ok') fail(`connection ${id}: closed after ${JSON.stringify(reply)}, expected "ok"`);
      else if (++done === count) process.send({ done });
      else if (started < count) start();
    });
  };
  for (let k = 0; k < Math.min(inFlight, count); k++) start();
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
