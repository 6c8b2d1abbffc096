'use strict';

// Benchmark clients for the handles rows with the clients apart (plain Node, forked with node:child_process for
// every implementation alike): on { port, count, inFlight } it opens `count` loopback connections to `port`, at
// most `inFlight` at once, each of which must read exactly `ok` and then EOF (bench/socket_clients.js), and answers
// { done: count } or { error }. It exits when its channel closes.

const { connectMany } = require('../socket_clients');

process.on('message', ({ port, count, inFlight }) => {
  connectMany(port, count, inFlight).done.then(
    () => process.send({ done: count }),
    (err) => process.send({ error: err.message }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
