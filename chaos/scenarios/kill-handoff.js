'use strict';

// kill -9 in the middle of handle hand-offs, both ways.
//
// The parent holds TCP connections (a pool of client sockets it made to its own server on 127.0.0.1, client k) and
// sends the server side of connection k to children (chaos/children/handles.js), with what to do with it: send it
// back, write `child <id> <k>` on it and end it, hold it, close it. It also sends a listening net.Server (to be
// sent back or closed), asks children to make servers of their own and send them over, and sends plain messages
// in between. Victims are SIGKILLed right after the parent's n-th send to them (same tick: the envelope and its fd
// may be in flight, unacknowledged), when the n-th handle comes back, on a timer, or by themselves right after
// their own n-th send.
//
// Afterwards: once the parent has ended what came back and closed the rest, every client sees EOF (no process
// kept a copy of a connection), and what each client read is nothing, `back <k>` (it came back to the parent) or
// `child <id> <k>` (a child wrote it), its own k, once; no listening socket that existed (the parent's and the
// children's) is still held by this process or any process of the round (no copy left); the parent's fds are back to what they were; the
// message checks of kill-burst (no duplicate, in order, no gap, what a victim's callbacks confirmed arrived,
// everything from survivors, survivors got everything); every send callback fired once.

const net = require('node:net');
const { Ledger, tcpFds, listenHolders } = require('../invariants');
const { Rng } = require('../rng');

const KILL_MODES = ['sent', 'returned', 'timer', 'self'];
const SEND_ERRORS = ['EPIPE', 'ECONNRESET', 'ERR_IPC_CHANNEL_CLOSED'];

async function run(round, variant) {
  const { rng } = round;
  const count = rng.int(2, 4);
  const poolSize = rng.int(20, 60);
  const ledger = new Ledger('parent');
  const kids = [];
  const ports = []; // every listening port of the round: nobody of the round may still listen on one at the end
  const received = []; // handles that came to the parent, closed at the end at the latest

  // The parent's server and the pool of connections to it.
  round.phase = 'connections';
  const server = net.createServer({ pauseOnConnect: true });
  const accepted = new Map(); // client's local port -> server-side socket
  server.on('connection', (socket) => accepted.set(socket.remotePort, socket));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  round.defer(() => server.close());
  ports.push(server.address().port);
  const giveaway = net.createServer();
  await new Promise((resolve) => giveaway.listen(0, '127.0.0.1', resolve));
  round.defer(() => giveaway.close());
  ports.push(giveaway.address().port);

  const clients = [];
  for (let k = 0; k < poolSize; k++) {
    const client = net.connect(server.address().port, '127.0.0.1');
    const entry = { k, client, data: '', closed: false, sentTo: null, serverSide: null };
    client.setEncoding('utf8');
    client.on('data', (d) => (entry.data += d));
    client.on('error', () => {});
    client.on('close', () => (entry.closed = true));
    clients.push(entry);
    round.defer(() => client.destroy());
  }
  await Promise.all(clients.map((e) => new Promise((resolve) => e.client.once('connect', resolve))));
  await round.waitFor(() => accepted.size === poolSize, 5000, 'setup', 'the pool of connections was not accepted');
  for (const entry of clients) {
    entry.serverSide = accepted.get(entry.client.localPort);
    if (entry.serverSide) entry.serverSide.on('error', () => {});
  }
  let nextClient = 0;
  // After a throw or a timeout: whatever the parent still holds.
  round.defer(() => {
    for (const entry of clients) if (entry.sentTo === null && entry.serverSide) entry.serverSide.destroy();
    for (const handle of received) closeHandle(handle);
  });

  round.phase = 'spawn';
  for (let i = 0; i < count; i++) {
    const id = `h${i}`;
    const runtime = rng.pick(['node', 'forkline']);
    const child = round.fork(round.child('handles.js'), [id], {
      serialization: variant,
      childRuntime: runtime,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const kid = {
      id,
      runtime,
      child,
      rec: round.watch(child, `${id} (pid ${child.pid}, ${runtime} runtime)`),
      rng: new Rng(rng.fork()),
      ready: false,
      sent: 0,
      handlesSent: 0,
      callbacks: 0,
      sendErrors: [],
      returned: 0,
      foreign: 0,
      fin: null,
      did: [],
      ops: rng.int(20, 120),
      victim: false,
      kill: null,
      killed: false,
    };
    ledger.sender(id);
    child.on('message', (msg, handle) => {
      if (msg && msg.ready === id) {
        kid.ready = true;
        return;
      }
      if (msg && msg.fin) {
        kid.fin = msg;
        return;
      }
      if (!msg || typeof msg.seq !== 'number') return;
      if (msg.s !== id) kid.foreign++;
      ledger.receive(msg.s, msg.seq);
      kid.did.push(msg);
      if (handle) {
        received.push(handle);
        kid.returned++;
        onHandle(kid, msg, handle);
        if (kid.kill && kid.kill.mode === 'returned' && kid.returned === kid.kill.at) kill(kid);
      }
    });
    kids.push(kid);
  }

  const victims = rng.chance(0.2) ? kids : rng.shuffle(kids).slice(0, rng.int(1, count - 1));
  for (const kid of victims) {
    kid.victim = true;
    const mode = rng.pick(KILL_MODES);
    const at = mode === 'timer' ? rng.int(0, 400) : rng.int(mode === 'returned' ? 1 : 0, Math.max(1, kid.ops >> 1));
    kid.kill = { mode, at, how: rng.pick(['child.kill', 'process.kill']) };
  }
  round.set('children', count);
  round.set('victims', victims.map((k) => `${k.id}:${k.kill.mode}@${k.kill.at}`).join(' '));

  await round.waitFor(() => kids.every((k) => k.ready), 15_000, 'startup', 'the children did not all start');
  if (round.over) return;

  round.phase = 'hand-offs';
  const started = Date.now();
  for (const kid of kids) {
    if (kid.kill && kid.kill.mode === 'self') kid.child.send({ die: kid.kill.at });
    if (kid.kill && kid.kill.mode === 'timer') setTimeout(() => kill(kid), kid.kill.at);
    setImmediate(pump, kid);
  }
  await round.waitFor(
    () => kids.every((k) => k.opsDone || k.killed || k.rec.isClosed) || Date.now() - started > 5000,
    10_000,
  );
  for (const kid of victims) if (!kid.killed && !kid.rec.isClosed) kill(kid);
  round.phase = 'victims closing';
  await round.waitFor(
    () => victims.every((k) => round.done(k.rec)),
    10_000,
    'close',
    () => `victims not closed 10 s after SIGKILL: ${victims.filter((k) => !k.rec.isClosed).map((k) => k.id)}`,
  );

  round.phase = 'survivors finishing';
  const survivors = kids.filter((k) => !k.victim);
  for (const kid of survivors) {
    kid.stopped = true;
    kid.child.send({ fin: kid.sent });
  }
  await round.waitFor(
    () => survivors.every((k) => k.fin),
    15_000,
    'fin',
    () => `survivors did not answer fin: ${survivors.filter((k) => !k.fin).map((k) => k.id)}`,
  );
  for (const kid of survivors) if (kid.child.connected) kid.child.disconnect();
  round.phase = 'survivors closing';
  await round.waitFor(
    () => kids.every((k) => round.done(k.rec)),
    10_000,
    'close',
    () => `children not closed after disconnect: ${kids.filter((k) => !k.rec.isClosed).map((k) => k.id)}`,
  );
  await round.waitFor(() => kids.every((k) => k.callbacks === k.sent), 2000);

  // The parent lets go of everything: what came back is closed or ended already; the pool it never sent, too.
  round.phase = 'release';
  // A socket whose send() failed at once is still attached in the parent (forkline; Node detaches every socket it
  // is given to send): reported, then closed, so that the checks below are about anything else.
  const kept = clients.filter((e) => e.sentTo && e.sendError && e.serverSide && e.serverSide._handle);
  if (kept.length > 0) {
    round.problem(
      'kept-after-failed-send',
      `${kept.length} socket(s) whose send failed (${[...new Set(kept.map((e) => e.sendError.code))]}) stayed open ` +
        `and attached in the parent: ${kept.map((e) => `k=${e.k} (to ${e.sentTo})`).join(', ')}`,
    );
    for (const entry of kept) entry.serverSide.destroy();
  }
  for (const entry of clients) {
    if (entry.sentTo === null && entry.serverSide) entry.serverSide.destroy();
  }
  for (const handle of received) closeHandle(handle);
  server.close();
  giveaway.close();
  // A child whose channel never saw EOF (problem 'no-eof') keeps the connection it was sent and not acknowledged in
  // the parent's core: those are that problem, not new ones.
  const stuck = new Set(kids.filter((k) => !k.rec.isClosed && k.rec.exitAt !== null).map((k) => k.id));
  const stuckPorts = new Set();
  if (stuck.size > 0) {
    await round.sleep(500);
    const byPort = new Map(clients.filter((e) => stuck.has(e.sentTo) && !e.closed).map((e) => [e.client.localPort, e]));
    for (const [fd, { local, remote }] of tcpFds()) {
      if (byPort.has(remote)) {
        round.stuckFds.add(fd);
        byPort.get(remote).stuck = true;
      } else if (remote === 0 && ports.includes(local)) {
        round.stuckFds.add(fd);
        stuckPorts.add(local);
      }
    }
  }
  await round.waitFor(
    () => clients.every((e) => e.closed || e.stuck),
    5000,
    'socket-leak',
    () =>
      `connections still open (a copy of their server side is left somewhere): ${clients
        .filter((e) => !e.closed)
        .map((e) => `k=${e.k} (sent to ${e.sentTo})`)
        .join(', ')}`,
  );

  round.phase = 'checks';
  const wrote = new Map(); // k -> child id that reported writing it
  const back = new Set(); // k that came back to the parent
  for (const kid of kids) {
    const acked = sideChannel(round, kid);
    for (const msg of kid.did) {
      if (msg.did === 'wrote') wrote.set(msg.k, kid.id);
      if (msg.did === 'back' && msg.kind === 'socket') back.add(msg.k);
      if (msg.did === 'nothing-came')
        round.problem('lost-handle', `${kid.id}: message for k=${msg.k} came without its handle`);
      if (msg.did === 'made') ports.push(msg.port);
    }
    if (kid.victim) {
      if (acked >= 0) ledger.mustHave(kid.id, acked + 1);
      round.checkLifecycle(kid.rec, { signal: 'SIGKILL', errors: ['FORKLINE_TRUNCATED_MESSAGE'] });
    } else {
      if (kid.fin) {
        ledger.mustHave(kid.id, kid.fin.sent);
        round.check(
          kid.fin.ok,
          'lost',
          () => `${kid.rec.label}: the parent sent ${kid.sent} messages, the child got ${kid.fin.got} in order`,
        );
      }
      round.checkLifecycle(kid.rec, { code: 0 });
    }
    round.check(kid.foreign === 0, 'misdelivered', () => `${kid.id}: ${kid.foreign} messages from another child`);
    round.check(
      kid.callbacks === kid.sent,
      'callbacks',
      () => `${kid.id}: ${kid.sent} sends, ${kid.callbacks} callbacks`,
    );
    for (const err of kid.sendErrors) {
      round.check(
        kid.victim && SEND_ERRORS.includes(err.code),
        'send-error',
        () => `${kid.id}: a send callback got ${err.code}: ${err.message}`,
      );
    }
  }
  for (const entry of clients) {
    const allowed = ['', `back ${entry.k}\n`];
    if (wrote.has(entry.k)) allowed.push(`child ${wrote.get(entry.k)} ${entry.k}\n`);
    else if (entry.sentTo) allowed.push(`child ${entry.sentTo} ${entry.k}\n`);
    round.check(
      allowed.includes(entry.data),
      'misdelivered',
      () => `client k=${entry.k} (sent to ${entry.sentTo}) read ${JSON.stringify(entry.data)}`,
    );
    if (back.has(entry.k)) {
      round.check(
        entry.data === `back ${entry.k}\n`,
        'lost-handle',
        () => `client k=${entry.k} came back but read ${JSON.stringify(entry.data)}`,
      );
    }
    const writer = wrote.get(entry.k);
    if (writer && !kids.find((k) => k.id === writer).victim) {
      round.check(
        entry.data === `child ${writer} ${entry.k}\n`,
        'lost',
        () => `client k=${entry.k}: survivor ${writer} wrote on it, the client read ${JSON.stringify(entry.data)}`,
      );
    }
  }
  for (const port of ports) {
    if (stuckPorts.has(port)) continue;
    await round.waitFor(() => listenHolders(port, round.token).length === 0, 2000);
    const holders = listenHolders(port, round.token);
    round.check(holders.length === 0, 'socket-leak', `port ${port} is still listened on by ${holders.join(', ')}`);
  }
  for (const p of ledger.check()) round.problem(p.id, p.message);
  round.set(
    'handles',
    kids.reduce((n, k) => n + k.handlesSent, 0),
  );
  round.set(
    'returned',
    kids.reduce((n, k) => n + k.returned, 0),
  );
  round.set('received', ledger.total());

  function kill(kid) {
    if (kid.killed) return;
    kid.killed = true;
    if (kid.kill.how === 'child.kill') {
      kid.child.kill('SIGKILL');
    } else {
      try {
        process.kill(kid.child.pid, 'SIGKILL');
      } catch {
        // it killed itself already
      }
    }
  }

  function onHandle(kid, msg, handle) {
    if (msg.kind === 'socket' && handle instanceof net.Socket) {
      handle.on('error', () => {});
      handle.end(`back ${msg.k}\n`);
    } else {
      closeHandle(handle);
    }
  }

  // The parent's hand-offs to one child, a few a tick, each with a callback.
  function pump(kid) {
    if (kid.stopped || round.over || kid.killed) return;
    const n = kid.rng.int(1, 4);
    for (let i = 0; i < n; i++) {
      if (kid.sent >= kid.ops) {
        kid.opsDone = true;
        return;
      }
      if (!kid.child.connected) return;
      const op = kid.rng.pick(['socket', 'socket', 'socket', 'server', 'make', 'plain']);
      const msg = { p: kid.sent };
      let handle;
      let entry = null;
      if (op === 'socket' && nextClient < clients.length && clients[nextClient].serverSide) {
        entry = clients[nextClient++];
        entry.sentTo = kid.id;
        Object.assign(msg, {
          k: entry.k,
          kind: 'socket',
          act: kid.rng.pick(['back', 'back', 'write', 'hold', 'close']),
        });
        handle = entry.serverSide;
      } else if (op === 'server') {
        Object.assign(msg, { k: -1, kind: 'server', act: kid.rng.pick(['back', 'close']) });
        handle = giveaway;
      } else if (op === 'make') {
        msg.make = true;
      } else {
        msg.plain = true;
      }
      kid.sent++;
      if (handle) kid.handlesSent++;
      const callback = (err) => {
        kid.callbacks++;
        if (err) kid.sendErrors.push(err);
        if (err && entry) entry.sendError = err;
      };
      if (handle) kid.child.send(msg, handle, callback);
      else kid.child.send(msg, callback);
      if (kid.kill && kid.kill.mode === 'sent' && kid.sent - 1 === kid.kill.at) {
        kill(kid);
        return;
      }
    }
    setTimeout(pump, kid.rng.int(0, 3), kid);
  }
}

function closeHandle(handle) {
  try {
    if (handle instanceof net.Server) handle.close();
    else if (typeof handle.destroy === 'function') handle.destroy();
    else if (typeof handle.close === 'function') handle.close();
  } catch {
    // closed already
  }
}

function sideChannel(round, kid) {
  let acked = -1;
  for (const line of kid.rec.out.split('\n')) {
    if (line.startsWith('a')) acked = Math.max(acked, Number(line.slice(1)));
    else if (line.startsWith('bad')) round.problem('reordered', `${kid.rec.label}: ${line}`);
  }
  return acked;
}

module.exports = { name: 'kill-handoff', variants: ['json', 'advanced'], timeoutMs: 60_000, run };
