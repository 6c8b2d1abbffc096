'use strict';

// Handle passing (NODE_HANDLE + SCM_RIGHTS) between a forkline parent and real node children, both directions,
// with node:child_process as the oracle; faults come from a raw Python peer on the channel.
// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'a peer flooding fds (200 a message, cut short by the kernel) leaks none; every message arrives':
    'fd-flood survival (FORKLINE_STRAY_FD, FORKLINE_FD_LOST)',
  'an fd with no envelope is closed and reported; the messages around it arrive':
    "FORKLINE_STRAY_FD (Node's channel does not report a stray fd)",
  'a bogus handle type: acknowledged on the wire, reported, its fd closed':
    "FORKLINE_BAD_HANDLE (Node's channel throws on an envelope of an unknown type)",
  'a peer that dies between envelope and ACK: later sends fail with EPIPE, no fd kept':
    "the native handshake's held sends failing with EPIPE (Node's never call back)",
  'handles queued behind an ACK go on while the sending thread is busy: the reactor reads the ACKs':
    'the native core reading ACKs off the JS thread',
  'EMFILE in the receiving child: the fd is lost, NACKed, retried, given up with a warning; later messages arrive':
    "resending a NACKed net.Server (Node's channel resends only sockets)",
});
const assert = require('node:assert');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const nodeChildProcess = require('node:child_process');
const forkline = require('..');
const { fdCount, assertNoFdLeak: settleNoFdLeak, once, blockThread, BACKEND } = require('./helpers');
const { mulberry32 } = require('../chaos/rng');

const FIXTURES = path.join(__dirname, 'fixtures');
const CHILD = path.join(FIXTURES, 'handle-child.js');
// More fds than before is a leak; fewer is fine (earlier tests' sockets may finish closing meanwhile).
const assertNoFdLeak = (before) => settleNoFdLeak(before, 1000);

const IMPLS = [
  ['node:child_process', nodeChildProcess],
  ['forkline', forkline],
];

function spawnChild(t, impl, script = CHILD, args = [], options = {}) {
  const child = impl.fork(script, args, options);
  t.after(() => child.kill('SIGKILL'));
  return child;
}

function nextMessage(child) {
  return new Promise((resolve, reject) => {
    child.once('message', (msg, handle) => resolve([msg, handle]));
    child.once('error', reject);
  });
}

// Connects, sends `text` if given, and resolves with everything the server says before it closes.
function ask(target, text) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(target);
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => (data += chunk));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    if (text) socket.write(text);
  });
}

for (const [name, impl] of IMPLS) {
  test(
    `${name}: a listening net.Server shared with two children, which both accept on its port`,
    {
      timeout: 30_000,
    },
    async (t) => {
      const server = net.createServer().listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = server.address();
      const children = [spawnChild(t, impl), spawnChild(t, impl)];
      for (const child of children) {
        const got = nextMessage(child);
        child.send({ do: 'serve' }, server);
        assert.deepStrictEqual((await got)[0], { got: 'server', type: 'Server' });
      }
      server.close(); // the parent stops accepting; the children keep the shared socket
      const pids = new Set(children.map((c) => String(c.pid)));
      for (let i = 0; i < 10; i++) {
        const answer = await ask({ port, host: '127.0.0.1' });
        assert.ok(pids.has(answer.trim().split(' ').pop()), `served by a child: ${answer}`);
      }
    },
  );

  test(
    `${name}: the parent accepts a TCP connection and hands the socket to a child, which answers`,
    {
      timeout: 30_000,
    },
    async (t) => {
      const child = spawnChild(t, impl);
      const server = net.createServer((socket) => {
        socket.once('data', (text) => child.send({ do: 'answer', text: String(text) }, socket));
      });
      t.after(() => server.close());
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const got = nextMessage(child);
      const answer = await ask({ port: server.address().port, host: '127.0.0.1' }, 'hi');
      assert.strictEqual(answer, `answered by ${child.pid}: hi\n`);
      assert.deepStrictEqual((await got)[0], { got: 'socket', type: 'Socket' });
    },
  );
}

test(
  'Unix-domain: a net.Server on a path and an accepted unix socket both work in the child',
  {
    timeout: 30_000,
  },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-uds-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const child = spawnChild(t, forkline);
    // Parent and child now share the listening socket and both accept; closing the parent's copy would unlink the
    // path (libuv does, as in Node), so the parent keeps answering and we ask until the child has answered.
    const listening = net.createServer((socket) => socket.end('parent\n'));
    listening.listen(path.join(dir, 'served.sock'));
    await once(listening, 'listening');
    let got = nextMessage(child);
    child.send({ do: 'serve' }, listening);
    await got;
    const answers = new Set();
    for (let i = 0; i < 200 && !answers.has(`served by ${child.pid}\n`); i++) {
      answers.add(await ask(path.join(dir, 'served.sock')));
    }
    listening.close();
    assert.ok(answers.has(`served by ${child.pid}\n`), [...answers].join());

    const handing = net.createServer((socket) => child.send({ do: 'answer', text: 'uds' }, socket));
    t.after(() => handing.close());
    handing.listen(path.join(dir, 'handed.sock'));
    await once(handing, 'listening');
    got = nextMessage(child);
    assert.strictEqual(await ask(path.join(dir, 'handed.sock')), `answered by ${child.pid}: uds\n`);
    assert.deepStrictEqual((await got)[0], { got: 'socket', type: 'Socket' });
  },
);

for (const family of ['udp4', 'udp6']) {
  test(`dgram.Socket (${family}) sent to the child receives the datagrams`, { timeout: 30_000 }, async (t) => {
    const host = family === 'udp6' ? '::1' : '127.0.0.1';
    const child = spawnChild(t, forkline);
    const socket = dgram.createSocket(family);
    socket.bind(0, host);
    await once(socket, 'listening');
    const { port } = socket.address();
    let got = nextMessage(child);
    child.send({ do: 'udp' }, socket);
    assert.deepStrictEqual((await got)[0], { got: 'dgram', type: 'Socket' });
    socket.close();
    got = nextMessage(child);
    const sender = dgram.createSocket(family);
    t.after(() => sender.close());
    sender.send('ping', port, host);
    assert.deepStrictEqual((await got)[0], { got: 'datagram', data: 'ping', type: family });
  });
}

// Node 24.22 and 26 send a bound, not yet listening socket as the handle type 'net.BoundSocket'.
const noBoundSocket = typeof net.BoundSocket !== 'function' && `this Node (${process.version}) has no net.BoundSocket`;
for (const [name, impl] of IMPLS) {
  test(`${name}: a net.BoundSocket crosses both ways and is served on`, { skip: noBoundSocket }, async (t) => {
    const child = spawnChild(t, impl);
    const bound = new net.BoundSocket({ port: 0, host: '127.0.0.1' });
    const { port } = bound.address();
    const got = nextMessage(child);
    assert.strictEqual(child.send({ do: 'bound' }, bound), true);
    // Handed over: the sender's BoundSocket is adopted.
    assert.throws(() => bound.address(), { code: 'ERR_SOCKET_HANDLE_ADOPTED' });
    // Sending it again: Node queues the send behind the first handle and throws from its ACK handler, an uncaught
    // exception; forkline throws at once, in the caller (its portable backend is Node's channel).
    if (impl === forkline && BACKEND === 'native') {
      assert.throws(() => child.send({ do: 'bound' }, bound), { code: 'ERR_WORKER_HANDLE_NOT_TRANSFERABLE' });
    }
    assert.deepStrictEqual((await got)[0], { got: 'bound', type: 'BoundSocket', port });
    assert.strictEqual(await ask({ port, host: '127.0.0.1' }), `served by ${child.pid}\n`);

    const back = nextMessage(child);
    child.send({ do: 'give-bound' });
    const [msg, handle] = await back;
    assert.ok(handle instanceof net.BoundSocket);
    assert.deepStrictEqual(handle.address(), { address: '127.0.0.1', family: 'IPv4', port: msg.port });
    handle.close();
  });
}

test('the Native kinds: a raw TCP handle and a raw UDP handle arrive as handles', { timeout: 30_000 }, async (t) => {
  for (const [name, impl] of IMPLS) {
    const child = spawnChild(t, impl);
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    let got = nextMessage(child);
    child.send({ do: 'native' }, server._handle);
    assert.deepStrictEqual((await got)[0], { got: 'native', type: 'TCP', fd: 'number' }, name);
    server.close();
    const udp = dgram.createSocket('udp4');
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    const state = Object.getOwnPropertySymbols(udp).find((s) => s.description === 'state symbol');
    got = nextMessage(child);
    child.send({ do: 'native' }, udp[state].handle);
    assert.deepStrictEqual((await got)[0], { got: 'native', type: 'UDP', fd: 'number' }, name);
    udp.close();
  }
});

test(
  'child → parent: a node child sends a net.Server, a net.Socket and dgram sockets to forkline',
  {
    timeout: 30_000,
  },
  async (t) => {
    const child = spawnChild(t, forkline);
    child.send({ do: 'give-server' });
    const [{ port }, server] = await nextMessage(child);
    assert.ok(server instanceof net.Server, 'a net.Server arrives');
    server.on('connection', (socket) => socket.end('parent answers\n'));
    assert.strictEqual(await ask({ port, host: '127.0.0.1' }), 'parent answers\n');
    server.close();

    child.send({ do: 'give-socket' });
    const [{ port: socketPort }] = await nextMessage(child);
    const client = net.connect(socketPort, '127.0.0.1');
    t.after(() => client.destroy());
    const [msg, socket] = await nextMessage(child);
    assert.deepStrictEqual(msg, { gave: 'socket' });
    assert.ok(socket instanceof net.Socket, 'a net.Socket arrives');
    socket.end('over the passed socket');
    let heard = '';
    client.setEncoding('utf8');
    client.on('data', (d) => (heard += d));
    await once(client, 'end');
    assert.strictEqual(heard, 'over the passed socket');

    for (const family of ['udp4', 'udp6']) {
      child.send({ do: 'give-udp', family });
      const [{ port: udpPort }, udp] = await nextMessage(child);
      assert.ok(udp instanceof dgram.Socket, `a dgram.Socket (${family}) arrives`);
      const heardDatagram = once(udp, 'message');
      const sender = dgram.createSocket(family);
      sender.send('to the parent', udpPort, family === 'udp6' ? '::1' : '127.0.0.1');
      assert.strictEqual(String((await heardDatagram)[0]), 'to the parent');
      sender.close();
      udp.close();
    }
  },
);

test(
  'messages sent after a handle wait for its ACK and arrive after it, in order; callbacks fire',
  {
    timeout: 30_000,
  },
  async (t) => {
    for (const [name, impl] of IMPLS) {
      const child = spawnChild(t, impl);
      const server = net.createServer().listen(0, '127.0.0.1');
      await once(server, 'listening');
      const seen = [];
      const all = new Promise((resolve) => {
        child.on('message', (msg) => {
          seen.push(msg);
          if (seen.length === 52) resolve();
        });
      });
      const callbacks = [];
      child.send({ n: -1 }, (err) => callbacks.push(err));
      child.send({ do: 'serve' }, server, (err) => callbacks.push(err));
      for (let n = 0; n < 50; n++) child.send(n, (err) => callbacks.push(err));
      await all;
      server.close();
      assert.deepStrictEqual(seen[0], { echo: { n: -1 }, handle: null }, name);
      assert.deepStrictEqual(seen[1], { got: 'server', type: 'Server' }, name);
      assert.deepStrictEqual(
        seen.slice(2).map((m) => m.echo),
        [...Array(50).keys()],
        name,
      );
      assert.strictEqual(callbacks.length, 52, name);
      assert.ok(
        callbacks.every((err) => err === null),
        name,
      );
    }
  },
);

test('keepOpen leaves the sender its socket; without it the socket is handed over', { timeout: 30_000 }, async (t) => {
  const child = spawnChild(t, forkline);
  const accepted = [];
  const server = net.createServer((socket) => accepted.push(socket));
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect(server.address().port, '127.0.0.1');
  t.after(() => client.destroy());
  await once(client, 'connect');
  while (accepted.length === 0) await new Promise((r) => setTimeout(r, 5));
  const [socket] = accepted;
  const got = nextMessage(child);
  child.send({ do: 'echo' }, socket, { keepOpen: true });
  await got;
  assert.ok(socket._handle, 'keepOpen: the parent still has its handle');
  socket.write('still mine');
  client.setEncoding('utf8');
  assert.strictEqual(String((await once(client, 'data'))[0]), 'still mine');
  child.send({ do: 'answer', text: 'handed' }, socket);
  assert.strictEqual(socket._handle, null, 'without keepOpen the socket is detached at once');
  let rest = '';
  client.on('data', (d) => (rest += d));
  await once(client, 'end');
  assert.strictEqual(rest, `answered by ${child.pid}: handed\n`);
});

test('an unsupported handle throws ERR_INVALID_HANDLE_TYPE, as in Node', { timeout: 10_000 }, async (t) => {
  for (const [name, impl] of IMPLS) {
    const child = spawnChild(t, impl);
    assert.throws(() => child.send('x', { not: 'a handle' }), { code: 'ERR_INVALID_HANDLE_TYPE' }, name);
    assert.throws(() => child.send('x', fs.createReadStream(__filename)), { code: 'ERR_INVALID_HANDLE_TYPE' }, name);
    child.kill();
  }
});

test('advanced serialization: the envelope travels in V8 format, both directions', { timeout: 30_000 }, async (t) => {
  const child = spawnChild(t, forkline, CHILD, [], { serialization: 'advanced' });
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  const got = nextMessage(child);
  child.send({ do: 'serve' }, server);
  assert.deepStrictEqual((await got)[0], { got: 'server', type: 'Server' });
  server.close();
  assert.strictEqual(await ask({ port, host: '127.0.0.1' }), `served by ${child.pid}\n`);
  child.send({ do: 'give-server' });
  const [{ port: back }, returned] = await nextMessage(child);
  assert.ok(returned instanceof net.Server);
  returned.on('connection', (s) => s.end('advanced parent\n'));
  assert.strictEqual(await ask({ port: back, host: '127.0.0.1' }), 'advanced parent\n');
  returned.close();
});

// ---- faults, from a raw peer that speaks the wire protocol by hand ----

function rawPeer(t, mode) {
  const child = forkline.fork(path.join(FIXTURES, 'handle-raw.py'), [mode], {
    execPath: 'python3',
    execArgv: [],
    silent: true,
  });
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => (stdout += d));
  const seen = [];
  child.on('message', (m) => seen.push(['message', m]));
  child.on('error', (err) => seen.push(['error', err.code]));
  // Not the shared once(): these peers are expected to cause 'error' events before 'close'.
  const closed = new Promise((resolve) => child.once('close', resolve));
  return { child, seen, closed, stdout: () => stdout };
}

test(
  'an envelope whose fd never came is answered NODE_HANDLE_NACK and not delivered',
  {
    timeout: 20_000,
  },
  async (t) => {
    const before = fdCount();
    const peer = rawPeer(t, 'no-fd');
    await peer.closed;
    assert.deepStrictEqual(peer.seen, [['message', 'after']]);
    assert.strictEqual(peer.stdout(), '{"cmd":"NODE_HANDLE_NACK"}\n');
    await assertNoFdLeak(before);
  },
);

test(
  'a peer flooding fds (200 a message, cut short by the kernel) leaks none; every message arrives',
  { timeout: 20_000 },
  async (t) => {
    const before = fdCount();
    const peer = rawPeer(t, 'fd-flood');
    const handles = [];
    peer.child.on('message', (m, handle) => {
      if (!handle) return;
      handle.close();
      handles.push(handle);
    });
    await peer.closed;
    const messages = peer.seen.filter(([kind]) => kind === 'message').map(([, m]) => m);
    assert.deepStrictEqual(messages, [...Array.from({ length: 50 }, (_, i) => ({ flood: i })), 'after']);
    assert.strictEqual(handles.length, 25, 'each envelope got one of the fds that came with it');
    const errors = new Set(peer.seen.filter(([kind]) => kind === 'error').map(([, code]) => code));
    assert.deepStrictEqual([...errors].sort(), ['FORKLINE_FD_LOST', 'FORKLINE_STRAY_FD']);
    assert.strictEqual(peer.stdout(), '{"cmd":"NODE_HANDLE_ACK"}\n'.repeat(25));
    await assertNoFdLeak(before);
  },
);

test('an fd with no envelope is closed and reported; the messages around it arrive', { timeout: 20_000 }, async (t) => {
  const before = fdCount();
  const peer = rawPeer(t, 'stray-fd');
  await peer.closed;
  assert.deepStrictEqual(peer.seen, [
    ['message', 'with a stray fd'],
    ['message', 'after'],
    ['error', 'FORKLINE_STRAY_FD'],
  ]);
  await assertNoFdLeak(before);
});

test('a bogus handle type: acknowledged on the wire, reported, its fd closed', { timeout: 20_000 }, async (t) => {
  const before = fdCount();
  const peer = rawPeer(t, 'bogus-type');
  await peer.closed;
  assert.deepStrictEqual(peer.seen, [
    ['error', 'FORKLINE_BAD_HANDLE'],
    ['message', 'after'],
  ]);
  assert.strictEqual(peer.stdout(), '{"cmd":"NODE_HANDLE_ACK"}\n');
  await assertNoFdLeak(before);
});

test(
  'a peer that dies between envelope and ACK: later sends fail with EPIPE, no fd kept',
  {
    timeout: 20_000,
  },
  async (t) => {
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const before = fdCount();
    const peer = rawPeer(t, 'die-before-ack');
    await new Promise((resolve) => peer.child.once('message', resolve));
    const results = [];
    peer.child.send('with the server', server, (err) => results.push(err && err.code));
    peer.child.send('held behind it', (err) => results.push(err && err.code));
    await peer.closed;
    assert.deepStrictEqual(results, [null, 'EPIPE']);
    assert.match(peer.stdout(), /"type":"net\.Server"/);
    await assertNoFdLeak(before);
  },
);

test(
  'EMFILE in the receiving child: the fd is lost, NACKed, retried, given up with a warning; later messages arrive',
  {
    timeout: 30_000,
  },
  async (t) => {
    const child = spawnChild(t, forkline, path.join(FIXTURES, 'fd-hog.js'));
    assert.strictEqual((await nextMessage(child))[0], 'hogged');
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const warning = new Promise((resolve) => {
      const onWarning = (w) => {
        if (w.name !== 'SentHandleNotReceivedWarning') return;
        process.off('warning', onWarning);
        resolve(w);
      };
      process.on('warning', onWarning);
    });
    const echoes = [];
    const done = new Promise((resolve) => {
      child.on('message', (msg) => {
        echoes.push(msg.echo);
        if (msg.echo === 'release') resolve();
      });
    });
    child.send('handle', server);
    child.send('release');
    assert.strictEqual((await warning).message, 'Handle did not reach the receiving process correctly');
    await done;
    assert.deepStrictEqual(echoes, ['release']);
  },
);

// Node's SocketList: sockets that came from a net.Server and were sent to the peer still count for that server
// (getConnections) and hold its close() until the peer has closed them, both directions, through NODE_SOCKET_*.
const SOCKET_LIST_CHILD = path.join(FIXTURES, 'socket-list-child.js');
const { runHolder, runGiver } = require('./fixtures/socket-list');
const SOCKET_LIST_ENDS = [
  ['node parent, node child', nodeChildProcess.fork],
  ['forkline parent, node child', forkline.fork],
  ['forkline parent, forkline runtime child', (m, a, o) => forkline.fork(m, a, { ...o, childRuntime: 'forkline' })],
  // The portable backend has no child runtime.
].filter(([ends]) => BACKEND === 'native' || !ends.includes('runtime'));

test('SocketList: the parent gives sockets from its server; the child holds them', { timeout: 30_000 }, async (t) => {
  const results = {};
  for (const [ends, forkFn] of SOCKET_LIST_ENDS) {
    const child = forkFn(SOCKET_LIST_CHILD, ['hold']);
    t.after(() => child.kill('SIGKILL'));
    results[ends] = await runGiver(child);
    child.disconnect();
  }
  for (const [ends] of SOCKET_LIST_ENDS) {
    assert.deepStrictEqual(results[ends], { count: 2, closedEarly: false, closed: true }, ends);
  }
});

test('SocketList: the child gives sockets from its server; the parent holds them', { timeout: 30_000 }, async (t) => {
  const results = {};
  for (const [ends, forkFn] of SOCKET_LIST_ENDS) {
    const child = forkFn(SOCKET_LIST_CHILD, ['give']);
    t.after(() => child.kill('SIGKILL'));
    runHolder(child);
    const [{ result }] = await new Promise((resolve) => {
      const onMessage = (msg) => msg && msg.result && (child.off('message', onMessage), resolve([msg]));
      child.on('message', onMessage);
    });
    results[ends] = result;
  }
  for (const [ends] of SOCKET_LIST_ENDS) {
    assert.deepStrictEqual(results[ends], { count: 2, closedEarly: false, closed: true }, ends);
  }
});

// Every order of "same handle twice / closed handle / handle then plain message", both directions: what arrives,
// the send callbacks, and that both ends finish (a stall here once hung a cluster worker under forkline's primary).
const ORDERS = path.join(FIXTURES, 'handle-orders.js');
const { VARIANTS, sendSequence, receiveUntilDone } = require('./fixtures/handle-orders');

function resultOf(child) {
  return new Promise((resolve, reject) => {
    child.on('message', (msg) => msg && (msg.got || msg.errors) && resolve(msg));
    child.once('error', reject);
  });
}

for (const variant of Object.keys(VARIANTS)) {
  test(
    `handle orders, ${variant}: parent → child and child → parent, as node:child_process`,
    { timeout: 30_000 },
    async (t) => {
      const results = {};
      for (const [name, impl] of IMPLS) {
        const toChild = spawnChild(t, impl, ORDERS, ['receive']);
        const [errors, { got }] = await Promise.all([sendSequence(toChild, variant), resultOf(toChild)]);
        await once(toChild, 'exit');
        const fromChild = spawnChild(t, impl, ORDERS, ['send', variant]);
        const received = receiveUntilDone(fromChild);
        const [{ errors: childErrors }, gotFromChild] = await Promise.all([resultOf(fromChild), received]);
        const [code] = await once(fromChild, 'exit');
        results[name] = { toChild: { errors, got }, fromChild: { errors: childErrors, got: gotFromChild, code } };
      }
      assert.deepStrictEqual(results.forkline, results['node:child_process']);
    },
  );
}

// Node's send() while a handle waits for its ACK: later messages queue behind it and only the first one queued
// returns true (`_handleQueue.length === 1` in Node's setupChannel). All arrive, in order.
test(
  'send() returns false for the second message queued behind an unacknowledged handle, as Node',
  { timeout: 20_000 },
  async (t) => {
    const results = {};
    for (const [name, impl] of IMPLS) {
      const child = spawnChild(t, impl, ORDERS, ['receive']);
      const server = net.createServer();
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      const returned = [child.send('one', server), child.send('two', server), child.send('three'), child.send('four')];
      child.send('done');
      const [{ got }] = await Promise.all([resultOf(child)]);
      server.close();
      await once(child, 'exit');
      results[name] = { returned, got };
    }
    assert.deepStrictEqual(results['node:child_process'], {
      returned: [true, true, false, false],
      got: [
        ['one', 'Server'],
        ['two', 'Server'],
        ['three', null],
        ['four', null],
      ],
    });
    assert.deepStrictEqual(results.forkline, results['node:child_process']);
  },
);

// When the ACK comes, Node sends what waited, up to and including the next handle, and what followed that handle
// makes a new queue behind it: the next send() is its first one again and returns true. The child stops reading for
// a while after its first answer, so that the second handle's ACK cannot come before the sends that check this.
test('after an ACK, send() counts only what queued behind the next handle, as Node', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, impl] of IMPLS) {
    const child = spawnChild(t, impl, CHILD);
    const server = net.createServer();
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const served = [];
    let onServed = null;
    child.on('message', (msg) => {
      if (msg && msg.got === 'server') served.push(msg);
      if (onServed && served.length === onServed.count) onServed.resolve();
    });
    const servedCount = (count) => new Promise((resolve) => (onServed = { count, resolve }));
    const first = servedCount(1);
    const returned = [
      child.send({ do: 'serve-then-block', ms: 1000 }, server),
      child.send('two'),
      child.send({ do: 'serve' }, server),
    ];
    // The child answers after its ACK, so by then this end has had the ACK: 'two' and the second server have gone.
    await first;
    returned.push(child.send('four'), child.send('five'));
    await servedCount(2);
    server.close();
    results[name] = returned;
  }
  assert.deepStrictEqual(results['node:child_process'], [true, true, false, true, false], 'node:child_process');
  // A forkline runtime child pipelines handles (src/core/channel/handles.rs) from its announce, which this end reads
  // after the first three sends and before the first ACK: from then on nothing waits behind a handle, so 'five'
  // is not held either.
  const pipelined =
    BACKEND === 'native' &&
    process.env.FORKLINE_CHILD_RUNTIME === 'forkline' &&
    process.env.FORKLINE_HANDLE_PIPELINE !== '0';
  const expected = pipelined ? [true, true, false, true, true] : results['node:child_process'];
  assert.deepStrictEqual(results.forkline, expected, 'forkline');
});

// Node's sender answers an ACK from its event loop, so a handle queued behind another waits while the sender's JS
// runs; forkline's core reads the ACKs on the reactor while handles wait behind a thread that has been busy lately
// (src/napi/side.rs, queue_handle; src/core/loop_load.rs).
test(
  'handles queued behind an ACK go on while the sending thread is busy: the reactor reads the ACKs',
  { timeout: 20_000 },
  async (t) => {
    const child = spawnChild(t, forkline, CHILD);
    const server = net.createServer();
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const stamps = [];
    let onStamps = null;
    child.on('message', (msg) => {
      if (msg && msg.stamped !== undefined) stamps.push(msg);
      if (onStamps && stamps.length === onStamps.count) onStamps.resolve();
    });
    const stampsReach = (count) => new Promise((resolve) => (onStamps = { count, resolve }));
    // A first handle, answered: the child is up and reading before this thread stops.
    const first = stampsReach(1);
    child.send({ do: 'stamp', n: 0 }, server);
    await first;
    const all = stampsReach(4);
    // Busy already when it sends, and for 3 s after (no event loop turn).
    blockThread(50);
    for (const n of [1, 2, 3]) child.send({ do: 'stamp', n }, server);
    blockThread(3000);
    const unblocked = Date.now();
    await all;
    assert.deepStrictEqual(
      stamps.map((s) => s.stamped),
      [0, 1, 2, 3],
    );
    for (const { stamped, at } of stamps.slice(1)) {
      assert.ok(at < unblocked, `handle ${stamped} arrived ${at - unblocked} ms after this thread was free again`);
    }
  },
);

// Who reads the ACKs follows how busy the sending thread has been (src/core/loop_load.rs): a thread that goes from
// busy to idle and back hands the reading to the reactor and takes it back, again and again, while the child streams
// messages the other way. Nothing may be lost or reordered at any of those changes.
for (const [name, impl] of IMPLS) {
  test(
    `${name}: sockets and streams of messages while the sending thread goes from busy to idle and back: all arrive, in order`,
    { timeout: 60_000 },
    async (t) => {
      const SOCKETS = 1500;
      const child = spawnChild(t, impl, CHILD);
      const server = net.createServer({ pauseOnConnect: true }, (socket) => child.send({ do: 'count-socket' }, socket));
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      t.after(() => server.close());
      const { port } = server.address();
      let next = 0;
      let outOfOrder = 0;
      let counted = null;
      child.on('message', (msg) => {
        if (msg && msg.seq !== undefined) {
          if (msg.seq !== next) outOfOrder++;
          next = msg.seq + 1;
        } else if (msg && msg.sockets !== undefined) counted(msg);
      });
      // The same busy and idle stretches in every run.
      const random = mulberry32(12345);
      let closed = 0;
      await new Promise((resolve, reject) => {
        let started = 0;
        const connect = () => {
          started++;
          const socket = net.connect(port, '127.0.0.1');
          socket.on('error', () => {}); // the child destroys it
          socket.on('close', () => {
            if (++closed === SOCKETS) resolve();
            else if (started < SOCKETS) connect();
          });
        };
        for (let k = 0; k < 16; k++) connect();
        child.once('error', reject);
        const flap = () => {
          if (closed >= SOCKETS) return;
          blockThread(3 + random() * 5);
          if (random() < 0.3) child.send({ do: 'stream', n: 200 + Math.floor(random() * 2000) });
          setTimeout(flap, 2 + random() * 10);
        };
        flap();
      });
      const counts = await new Promise((resolve) => {
        counted = resolve;
        child.send({ do: 'counted' });
      });
      assert.deepStrictEqual(
        { sockets: counts.sockets, messages: next, outOfOrder },
        { sockets: SOCKETS, messages: counts.streamed, outOfOrder: 0 },
      );
      assert.ok(counts.streamed > 0, 'the child streamed messages meanwhile');
    },
  );
}
