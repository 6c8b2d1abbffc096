'use strict';

// kill -9 of children at random moments while they burst messages to the parent and the parent bursts to them.
//
// 2-4 children (chaos/children/burst.js), each json or advanced (the variant) with Node's or forkline's child
// runtime (drawn). Some are victims, killed by one of: a timer, the parent's k-th message received from it, the
// parent's k-th send to it (same tick), the child itself right after its own k-th send (mid-write), with
// child.kill() (which flushes the parent's pending sends first) or a bare process.kill(). The others live: they are
// told to finish, answer with how many they sent and got, and are disconnected; or (drawn) the parent disconnects
// one right in its burst, and everything it sent before must still arrive (docs/api.md: nothing sent is dropped by
// disconnect()).
//
// Afterwards: every message from a child arrives at most once, in order, with no gap; from a victim, at least every
// message whose send callback had fired before the kill (recorded on the child's stdout); from a survivor told to
// finish, all of them, and it got all of the parent's messages in order; a survivor disconnected mid-burst had got
// all the parent sent before disconnect(); every send callback of the parent fired once; a victim's only possible
// 'error' is FORKLINE_TRUNCATED_MESSAGE, a survivor has none; each child emits disconnect/exit/close once.

const { Ledger } = require('../invariants');
const { Rng } = require('../rng');

const KILL_MODES = ['timer', 'received', 'sent', 'self'];
const SEND_ERRORS = ['EPIPE', 'ECONNRESET', 'ERR_IPC_CHANNEL_CLOSED'];

async function run(round, variant) {
  const { rng } = round;
  const count = rng.int(2, 4);
  const ledger = new Ledger('parent');
  const kids = [];

  round.phase = 'spawn';
  for (let i = 0; i < count; i++) {
    const id = `c${i}`;
    const runtime = rng.pick(['node', 'forkline']);
    const child = round.fork(round.child('burst.js'), [id, String(rng.fork()), variant], {
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
      received: 0,
      foreign: 0,
      fin: null,
      sent: 0,
      callbacks: 0,
      sendErrors: [],
      victim: false,
      kill: null,
      killed: false,
      // The child's own burst and the parent's burst to it.
      spec: {
        count: rng.int(500, 6000),
        perTick: rng.int(1, 60),
        bigShare: rng.pick([0, 0.01, 0.05]),
        bigMax: rng.pick([64 * 1024, 256 * 1024]),
      },
      parentCount: rng.int(200, 4000),
      parentPerTick: rng.int(1, 40),
      parentBigShare: rng.pick([0, 0.01, 0.05]),
    };
    ledger.sender(id);
    child.on('message', (msg) => {
      if (msg && msg.ready === id) {
        kid.ready = true;
      } else if (msg && msg.fin) {
        kid.fin = msg;
      } else if (msg && typeof msg.seq === 'number') {
        if (msg.s !== id) kid.foreign++;
        ledger.receive(msg.s, msg.seq);
        kid.received++;
        if (kid.kill && kid.kill.mode === 'received' && kid.received === kid.kill.at) kill(kid);
      }
    });
    kids.push(kid);
  }

  // The plan: which die, and how.
  const victims = rng.chance(0.2) ? kids : rng.shuffle(kids).slice(0, rng.int(1, count - 1));
  for (const kid of victims) {
    kid.victim = true;
    const mode = rng.pick(KILL_MODES);
    const at =
      mode === 'timer'
        ? rng.int(0, 700)
        : mode === 'sent'
          ? rng.int(0, kid.parentCount - 1)
          : rng.int(0, kid.spec.count - 1);
    kid.kill = { mode, at, how: rng.pick(['child.kill', 'process.kill']) };
  }
  for (const kid of kids) if (!kid.victim) kid.abrupt = rng.chance(0.3);
  round.set('children', count);
  round.set(
    'abrupt',
    kids
      .filter((k) => k.abrupt)
      .map((k) => k.id)
      .join(' ') || 'none',
  );
  round.set('victims', victims.map((k) => `${k.id}:${k.kill.mode}@${k.kill.at}`).join(' '));

  await round.waitFor(
    () => kids.every((k) => k.ready),
    15_000,
    'startup',
    () => 'the children did not all start',
  );
  if (round.over) return;

  round.phase = 'burst';
  const started = Date.now();
  for (const kid of kids) {
    if (kid.kill && kid.kill.mode === 'self') kid.child.send({ die: kid.kill.at });
    kid.child.send({ go: kid.spec });
    if (kid.kill && kid.kill.mode === 'timer') setTimeout(() => kill(kid), kid.kill.at);
    setImmediate(pump, kid);
  }

  // Victims die by their trigger, or at the latest after 4 s.
  await round.waitFor(() => victims.every((k) => k.killed || k.rec.isClosed) || Date.now() - started > 4000, 10_000);
  for (const kid of victims) if (!kid.killed && !kid.rec.isClosed) kill(kid);
  round.phase = 'victims closing';
  await round.waitFor(
    () => victims.every((k) => round.done(k.rec)),
    10_000,
    'close',
    () => `victims not closed 10 s after SIGKILL: ${victims.filter((k) => !k.rec.isClosed).map((k) => k.id)}`,
  );
  await round.sleep(rng.int(0, 300));

  // The survivors finish: the parent stops, tells each how many it sent, and waits for its answer; or it stops
  // with disconnect() right in its burst (what it sent before must all arrive: the child says how many came).
  round.phase = 'survivors finishing';
  const survivors = kids.filter((k) => !k.victim);
  for (const kid of survivors) {
    kid.stopped = true;
    if (kid.abrupt) kid.child.disconnect();
    else kid.child.send({ fin: kid.sent });
  }
  await round.waitFor(
    () => survivors.every((k) => k.fin || k.abrupt),
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
  // Send callbacks may trail 'close' a little.
  await round.waitFor(() => kids.every((k) => k.callbacks === k.sent), 2000);

  round.phase = 'checks';
  for (const kid of kids) {
    const acked = sideChannel(round, kid);
    if (kid.victim) {
      if (acked >= 0) ledger.mustHave(kid.id, acked + 1);
      round.checkLifecycle(kid.rec, { signal: 'SIGKILL', errors: ['FORKLINE_TRUNCATED_MESSAGE'] });
    } else {
      if (kid.abrupt) {
        const got = /^got (\d+) (ok|bad)$/m.exec(kid.rec.out);
        round.check(
          got && Number(got[1]) === kid.sent && got[2] === 'ok',
          'lost',
          () =>
            `${kid.rec.label}: disconnect() after ${kid.sent} sends; the child got ${got ? `${got[1]} (${got[2]})` : 'no report'}`,
        );
      } else if (kid.fin) {
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
      () => `${kid.id}: ${kid.sent} sends, ${kid.callbacks} callbacks fired`,
    );
    for (const err of kid.sendErrors) {
      round.check(
        kid.victim && SEND_ERRORS.includes(err.code),
        'send-error',
        () => `${kid.id}: a send callback got ${err.code}: ${err.message}`,
      );
    }
  }
  for (const p of ledger.check()) round.problem(p.id, p.message);
  round.set('received', ledger.total());
  round.set(
    'sent',
    kids.reduce((n, k) => n + k.sent, 0),
  );

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

  // The parent's burst to one child: a few messages a tick, with callbacks; waits for 'drain' when send() says so.
  function pump(kid) {
    if (kid.stopped || round.over) return;
    const n = kid.rng.int(1, kid.parentPerTick);
    for (let i = 0; i < n && kid.sent < kid.parentCount; i++) {
      if (!kid.child.connected) return;
      const seq = kid.sent++;
      const size = kid.rng.chance(kid.parentBigShare) ? kid.rng.int(16 * 1024, 200 * 1024) : kid.rng.int(0, 200);
      const pad = variant === 'advanced' ? Buffer.alloc(size, 7) : 'p'.repeat(size);
      const ok = kid.child.send({ p: seq, pad }, (err) => {
        kid.callbacks++;
        if (err) kid.sendErrors.push(err);
      });
      if (kid.kill && kid.kill.mode === 'sent' && seq === kid.kill.at) kill(kid);
      if (!ok) {
        kid.child.once('drain', () => setImmediate(pump, kid));
        return;
      }
    }
    if (kid.sent < kid.parentCount) setImmediate(pump, kid);
  }
}

// Reads the child's side channel: returns the highest seq whose send callback had fired; reports disorder.
function sideChannel(round, kid) {
  let acked = -1;
  for (const line of kid.rec.out.split('\n')) {
    if (line.startsWith('a')) acked = Math.max(acked, Number(line.slice(1)));
    else if (line.startsWith('bad')) round.problem('reordered', `${kid.rec.label}: ${line}`);
  }
  return acked;
}

module.exports = { name: 'kill-burst', variants: ['json', 'advanced'], timeoutMs: 45_000, run };
