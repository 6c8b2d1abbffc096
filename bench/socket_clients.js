'use strict';

// The handles rows' TCP clients, in the bench process (bench/scenarios/handles.js) or in a process of their own
// (bench/children/handle-clients.js).

const net = require('node:net');

// Opens `count` loopback connections to `port`, at most `inFlight` at once; each must read exactly `ok` and then EOF.
// A new connection starts when one closes. `done` resolves once all `count` are closed and rejects at the first that
// failed; `stop()` destroys the open ones, whose closes then count for nothing.
function connectMany(port, count, inFlight) {
  const open = new Set();
  let stopped = false;
  const done = new Promise((resolve, reject) => {
    let started = 0;
    let closed = 0;
    let failed = false;
    const fail = (err) => {
      failed = true;
      reject(err);
    };
    const start = () => {
      const id = started++;
      let reply = '';
      const socket = net.connect({ port, host: '127.0.0.1' });
      open.add(socket);
      socket.setEncoding('latin1');
      socket.on('data', (chunk) => (reply += chunk));
      socket.on('error', (err) => fail(new Error(`connection ${id}: ${err.code ?? ''} ${err.message}`)));
      socket.on('close', () => {
        open.delete(socket);
        if (failed || stopped) return;
        if (reply !== 'ok') fail(new Error(`connection ${id}: closed after ${JSON.stringify(reply)}, expected "ok"`));
        else if (++closed === count) resolve();
        else if (started < count) start();
      });
    };
    for (let k = 0; k < Math.min(inFlight, count); k++) start();
  });
  const stop = () => {
    stopped = true;
    for (const socket of open) socket.destroy();
  };
  return { done, stop };
}

module.exports = { connectMany };
