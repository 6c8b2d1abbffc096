'use strict';

// A cluster worker for the kill-primary scenario: an HTTP server on 127.0.0.1 (port 0: the cluster's shared port)
// answering `pid <pid>` (after SLOW_MS). It writes on stdout (shared with its primary), synchronously: `up <pid>`
// when its code starts, `listening <pid> <port>`, `disconnect <pid>` when its worker sees 'disconnect' (Node's
// worker then exits by itself, code 0), `exit <pid> <code>`.

const cluster = require('node:cluster');
const fs = require('node:fs');
const http = require('node:http');

const note = (line) => fs.writeSync(1, `${line}\n`);
const slowMs = Number(process.env.SLOW_MS || 0);

note(`up ${process.pid}`);
cluster.worker.on('disconnect', () => note(`disconnect ${process.pid}`));
process.on('exit', (code) => note(`exit ${process.pid} ${code}`));
const server = http.createServer((req, res) => {
  const answer = () => res.end(`pid ${process.pid}`);
  if (slowMs > 0) setTimeout(answer, slowMs);
  else answer();
});
server.listen(0, '127.0.0.1', () => note(`listening ${process.pid} ${server.address().port}`));
