'use strict';

// Benchmark cluster worker (plain Node, no forkline): HTTP hello world. Under a cluster primary, listen() goes through
// node's own worker-side cluster code, which asks the primary for the listening socket (or, under SCHED_RR, for
// connections). PORT comes from the primary; HOST defaults to 127.0.0.1, where the load is generated.
const http = require('node:http');

http
  .createServer((req, res) => res.end('hello world'))
  .listen(Number(process.env.PORT || 0), process.env.HOST || '127.0.0.1');
