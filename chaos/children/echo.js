'use strict';

// Echoes every message back, with its handle if it came with one (then closes its own copy). { give: true }: make
// a net.Server on 127.0.0.1 and send it over (then close ours). 'exit' exits.
const net = require('node:net');

process.on('message', (msg, handle) => {
  if (msg === 'exit') process.exit(0);
  if (msg && msg.give) {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      process.send(msg, server, () => server.close());
    });
    return;
  }
  if (!handle) return process.send(msg);
  process.send(msg, handle, () => {
    if (typeof handle.close === 'function') handle.close();
    else handle.destroy();
  });
});
