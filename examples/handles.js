'use strict';

// A parent that accepts TCP connections and hands each one to a child process with child.send(message, socket), as
// in Node's docs for node:child_process; the children are plain Node (the socket arrives with the 'message' event).
// A built-in client then makes the connections and prints how many each child answered.
// `node examples/handles.js --quick` makes fewer connections.

const net = require('node:net');
const { fork } = require('forkline'); // was: require('node:child_process')

const CHILDREN = 2;
const CONNECTIONS = process.argv.includes('--quick') ? 20 : 500;
const CONCURRENCY = 8;

if (process.argv[2] === 'child') child();
else parent();

function child() {
  process.on('message', (message, socket) => {
    // The socket may be gone already if the client closed it while it was on its way.
    if (message !== 'connection' || !socket) return;
    socket.setEncoding('utf8');
    let line = '';
    socket.on('data', (chunk) => {
      line += chunk;
      if (line.endsWith('\n')) socket.end(`${line.trim().toUpperCase()}, said child ${process.pid}\n`);
    });
  });
}

async function parent() {
  const children = Array.from({ length: CHILDREN }, () => fork(__filename, ['child']));
  // pauseOnConnect: the parent reads nothing from a connection it only passes on.
  const server = net.createServer({ pauseOnConnect: true });
  let next = 0;
  server.on('connection', (socket) => {
    const child = children[next++ % CHILDREN]; // round robin
    child.send('connection', socket, (err) => err && console.error('could not hand the connection over:', err));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  console.log(`parent ${process.pid} listening on 127.0.0.1:${port}, children ${pids(children)}`);

  const answeredBy = new Map();
  let failed = 0;
  let started = 0;
  const client = async () => {
    while (started < CONNECTIONS) {
      const i = started++;
      try {
        const reply = await talk(port, `hello ${i}`);
        const [, n, pid] = /^HELLO (\d+), said child (\d+)\n$/.exec(reply) || [];
        if (Number(n) !== i) throw new Error(`unexpected answer ${JSON.stringify(reply)}`);
        answeredBy.set(Number(pid), (answeredBy.get(Number(pid)) || 0) + 1);
      } catch (err) {
        failed++;
        console.error(`connection ${i}:`, err.message);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));

  const counts = children.map((child) => `child ${child.pid}: ${answeredBy.get(child.pid) || 0}`).join(', ');
  console.log(`${CONNECTIONS} connections handed over; answered by ${counts}; failed: ${failed}`);
  server.close();
  for (const child of children) child.disconnect(); // each child then has nothing left to do, and exits
  process.exitCode = failed === 0 && children.every((child) => answeredBy.has(child.pid)) ? 0 : 1;
}

// Connects, sends one line, resolves with everything the other end wrote before it closed.
function talk(port, line) {
  return new Promise((resolve, reject) => {
    let reply = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.write(line + '\n'));
    socket.setEncoding('utf8');
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer within 5 s')));
    socket.on('data', (chunk) => (reply += chunk));
    socket.on('end', () => resolve(reply));
    socket.on('error', reject);
  });
}

const pids = (children) => children.map((child) => child.pid).join(', ');
