'use strict';

// Handles: sockets passed to the child with `child.send('sock', socket)`, counted from the client's connect to its
// close; the clients in the parent itself, or in a process of their own (a primary that hands connections on).

const net = require('node:net');
const nodeChildProcess = require('node:child_process');
const { now, seconds, fmtRate, fmtMicros, withTimeout, openSession, closeSession } = require('../harness');
const socketClients = require('../socket_clients');

// Connections open at once in the handles row: enough to keep both processes busy, far from any fd limit.
const IN_FLIGHT = 32;

// A net.Server on 127.0.0.1 (port 0) that hands every accepted socket to the session's child with
// `child.send('sock', socket)`. Closed when the measurement ends, whatever happened. Resolves to the port.
function handOffServer(session) {
  const server = net.createServer({ pauseOnConnect: true });
  session.defer(async (notes) => {
    if (!server.listening) return;
    const closed = new Promise((resolve) => server.close(resolve));
    await withTimeout(closed, 5000, 'server.close()').catch(() => notes.push('server not closed 5 s after close()'));
  });
  server.on('error', (err) => session.fail(new Error(`server: ${err.code ?? ''} ${err.message}`)));
  server.on('connection', (socket) => {
    session.child.send('sock', socket, (err) => {
      if (!err) return;
      socket.destroy();
      session.fail(new Error(`send('sock', socket): ${err.code ?? ''} ${err.message}`));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

// The clients in the bench process itself (bench/socket_clients.js): resolves once all `count` are closed. Open
// sockets are destroyed when the measurement ends.
function connectMany(session, port, count) {
  const clients = socketClients.connectMany(port, count, IN_FLIGHT);
  session.defer(() => clients.stop());
  return clients.done;
}

// A plain node process with the clients (children/handle-clients.js), the same for every implementation: a session of
// its own (the harness's: its control replies queue for next(), an early exit fails it), which fails the
// measurement's and is closed when the measurement ends. Resolves to connect(port, count), which resolves once `count`
// connections have closed.
const NODE = { fork: (...args) => nodeChildProcess.fork(...args) };
async function clientProcess(session) {
  const clients = openSession(NODE, 'handle-clients.js', []);
  session.defer((notes) => closeSession(clients, notes));
  clients.failed.catch((err) => session.fail(new Error(`clients: ${err.message}`)));
  const take = async () => {
    const msg = await clients.next();
    if (msg.error) throw new Error(`clients: ${msg.error}`);
    return msg;
  };
  await take();
  return async (port, count) => {
    clients.child.send({ port, count, inFlight: IN_FLIGHT });
    await take();
  };
}

const scenarios = [
  {
    id: 'handles',
    child: 'handle-child.js',
    // Long enough (~1 s a side) that a few slow milliseconds of this VM do not make the row.
    params: { n: 10_000, warm: 1_000 },
    rows: [{ name: 'handles parent → child, sockets/s', key: 'rate', higherIsBetter: true, format: fmtRate }],
    timeoutSeconds: 60,
    async run(session, { n, warm }) {
      const port = await handOffServer(session);
      await connectMany(session, port, warm);
      const t0 = now();
      await connectMany(session, port, n);
      const t1 = now();
      return { rate: n / seconds(t0, t1), seconds: seconds(t0, t1) };
    },
  },
  {
    id: 'handles-apart',
    child: 'handle-child.js',
    params: { n: 10_000, warm: 1_000 },
    rows: [
      {
        name: 'handles parent → child, clients in a process of their own, sockets/s',
        key: 'rate',
        higherIsBetter: true,
        format: fmtRate,
      },
      {
        name: 'handles, clients in a process of their own, parent CPU µs each',
        key: 'cpu',
        higherIsBetter: false,
        format: fmtMicros,
      },
    ],
    timeoutSeconds: 60,
    async run(session, { n, warm }) {
      const port = await handOffServer(session);
      const connect = await clientProcess(session);
      await connect(port, warm);
      const cpu0 = process.cpuUsage();
      const t0 = now();
      await connect(port, n);
      const t1 = now();
      const { user, system } = process.cpuUsage(cpu0);
      return { rate: n / seconds(t0, t1), cpu: (user + system) / n, seconds: seconds(t0, t1) };
    },
  },
];

module.exports = { scenarios, IN_FLIGHT };
