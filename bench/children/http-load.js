'use strict';

// Built-in HTTP load generator for the cluster rows, used when wrk is not on PATH: one process, one thread, raw `net`
// sockets, a fixed number of connections, each with one request in flight (as `wrk -t1 -cN`).
//
//   node bench/children/http-load.js <port> <milliseconds> [connections=32] [keepalive|close]
//
// keepalive: every connection sends its next `GET /` as soon as the previous response is complete.
// close: every request carries `Connection: close` and goes on a new connection, opened once the previous one's
// response is complete (the client closes its end then, as wrk does).
// Latency runs from the request's write (after the connect, as wrk measures it) to the last byte of its response.
// Prints one JSON line: { requests, seconds, rps, p50, p99 (ms), errors, non2xx, cpuMicros }.
// Only responses completed before the deadline count; whatever is in flight then is dropped.

const net = require('node:net');

const [portArg, msArg, connectionsArg = '32', mode = 'keepalive'] = process.argv.slice(2);
const PORT = Number(portArg);
const MS = Number(msArg);
const CONNECTIONS = Number(connectionsArg);
const CLOSE = mode === 'close';
if (!(PORT > 0) || !(MS > 0) || !(CONNECTIONS > 0) || !['keepalive', 'close'].includes(mode)) {
  console.error('usage: node bench/children/http-load.js <port> <milliseconds> [connections=32] [keepalive|close]');
  process.exit(2);
}
const HOST = '127.0.0.1';
const REQUEST = Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\n${CLOSE ? 'Connection: close\r\n' : ''}\r\n`);

const now = process.hrtime.bigint;
let latencies = new Float64Array(1 << 16);
let requests = 0;
let errors = 0;
let non2xx = 0;
let stopped = false;
const sockets = new Set();

function record(micros) {
  if (requests === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[requests++] = micros;
}

// One connection slot: keeps one request in flight until the deadline.
function connection() {
  if (stopped) return;
  const socket = net.connect({ port: PORT, host: HOST, noDelay: true });
  sockets.add(socket);
  let buffered = '';
  let t0 = 0n;
  let done = false;
  const send = () => {
    t0 = now();
    socket.write(REQUEST);
  };
  const retire = (failed) => {
    if (done) return;
    done = true;
    if (failed && !stopped) errors++;
    sockets.delete(socket);
    socket.destroy();
    setImmediate(connection);
  };
  socket.setEncoding('latin1');
  socket.on('connect', send);
  socket.on('error', () => retire(true));
  socket.on('close', () => retire(true)); // Closed by the server before a complete response.
  socket.on('data', (chunk) => {
    buffered += chunk;
    for (;;) {
      const headEnd = buffered.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = buffered.slice(0, headEnd);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!length) {
        retire(true); // Chunked or no length: not what the hello-world worker sends.
        return;
      }
      const end = headEnd + 4 + Number(length[1]);
      if (buffered.length < end) return;
      const t1 = now();
      if (stopped) return;
      if (!head.startsWith('HTTP/1.1 2')) non2xx++;
      record(Number(t1 - t0) / 1e3);
      buffered = buffered.slice(end);
      if (CLOSE) {
        retire(false);
        return;
      }
      send();
    }
  });
}

function percentile(sorted, p) {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

const cpu0 = process.cpuUsage();
const start = now();
for (let k = 0; k < CONNECTIONS; k++) connection();
setTimeout(() => {
  stopped = true;
  const seconds = Number(now() - start) / 1e9;
  for (const socket of sockets) socket.destroy();
  const cpu = process.cpuUsage(cpu0);
  const sorted = latencies.subarray(0, requests).sort();
  const ms = (micros) => (micros === undefined ? null : micros / 1e3);
  const result = {
    requests,
    seconds,
    rps: requests / seconds,
    p50: ms(percentile(sorted, 0.5)),
    p99: ms(percentile(sorted, 0.99)),
    errors,
    non2xx,
    cpuMicros: cpu.user + cpu.system,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}, MS);
