'use strict';

// A hostile child that floods fds and garbage: chaos/children/hostile.py (python3, the wire protocol by hand) runs
// a plan drawn from the seed: good messages { s: 'h', seq } between bad JSON, bad UTF-8, oversized lines, bad and
// oversized V8 frames (advanced), fds by SCM_RIGHTS (1-8 a message, or 9-40 in the 'ctrunc' variant, more than
// the parent's control buffer takes, so the kernel truncates: MSG_CTRUNC) riding on good messages, on NODE_HANDLE
// envelopes { s: 'hm', seq } (a net.Server: every fd is a copy of one listening socket) and on envelopes of a bogus
// type, envelopes without their fd, messages split across writes. Meanwhile a well-behaved node child exchanges
// messages with the parent.
//
// Afterwards: the parent did not crash; every good message arrived once, in order, with no gap; envelope messages
// at most once, in order; 'error' events only with the FORKLINE_* codes the garbage calls for, and exactly one
// FORKLINE_MALFORMED_MESSAGE per malformed line or frame and one FORKLINE_MESSAGE_TOO_LARGE per oversized one;
// every fd that arrived is accounted for exactly once (a FORKLINE_STRAY_FD, a FORKLINE_BAD_HANDLE, or a handle
// delivered with its message), FORKLINE_FD_LOST only where fds were truncated; every envelope answered once
// (ACK or NACK) and ACKs = handles taken; the peer exits 0 with disconnect/exit/close once; the well-behaved
// child got and sent everything; the parent's fds are back to what they were.

const { Ledger } = require('../invariants');

const MAX_MESSAGE_SIZE = 4096;
const JSON_JUNK = ['notjson', 'utf8', 'binary', 'big'];
const ADVANCED_JUNK = ['frame-junk', 'frame-big'];

// The plan for hostile.py, and what it must cause.
function drawPlan(rng, variant) {
  const advanced = variant === 'advanced';
  const junkKinds = advanced ? ADVANCED_JUNK : JSON_JUNK;
  const maxFds = variant === 'ctrunc' ? 40 : 8;
  const minFds = variant === 'ctrunc' ? 9 : 1;
  const plan = [];
  const expect = { good: 0, envelopes: 0, bogus: 0, malformed: 0, tooLarge: 0, truncated: 0, fdOps: 0 };
  let maySeq = 0;
  const ops = rng.int(40, 200);
  for (let i = 0; i < ops; i++) {
    const r = rng.next();
    if (r < 0.4) {
      plan.push(['good', expect.good++]);
    } else if (r < 0.5) {
      plan.push(['split', expect.good++, rng.int(1, 5)]);
    } else if (r < 0.7) {
      const kind = rng.pick(junkKinds);
      const size =
        kind === 'big' || kind === 'frame-big' ? rng.int(MAX_MESSAGE_SIZE + 1, 5 * MAX_MESSAGE_SIZE) : rng.int(1, 300);
      plan.push(['junk', kind, size]);
      if (kind === 'big' || kind === 'frame-big') expect.tooLarge++;
      else expect.malformed++;
    } else if (r < 0.9) {
      const n = rng.int(minFds, maxFds);
      const carrier = rng.pick(['good', 'envelope', 'envelope', 'bogus']);
      const seq = carrier === 'good' ? expect.good++ : maySeq++;
      plan.push(['fds', n, carrier, seq]);
      expect.fdOps++;
      if (n > 8) expect.truncated++;
      if (carrier === 'envelope') expect.envelopes++;
      if (carrier === 'bogus') expect.bogus++;
    } else if (r < 0.95) {
      plan.push(['envelope-nofd', maySeq++]);
      expect.envelopes++;
    } else {
      plan.push(['pause', rng.int(1, 20)]);
    }
  }
  return { plan, expect };
}

async function run(round, variant) {
  const { rng } = round;
  const serialization = variant === 'advanced' ? 'advanced' : 'json';
  const { plan, expect } = drawPlan(rng, variant);
  const ledger = new Ledger('parent');
  ledger.sender('h');
  ledger.sender('hm', { prefix: false });
  round.set('ops', plan.length);
  round.set('fd-ops', expect.fdOps);

  // The well-behaved child, busy the whole time.
  const bystander = round.fork(round.child('burst.js'), ['b', String(rng.fork()), serialization], {
    serialization,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const byRec = round.watch(bystander, `bystander (pid ${bystander.pid})`);
  const byLedger = new Ledger('parent, from the bystander');
  byLedger.sender('b');
  let byReady = false;
  let byFin = null;
  let bySent = 0;
  bystander.on('message', (msg) => {
    if (msg && msg.ready) byReady = true;
    else if (msg && msg.fin) byFin = msg;
    else if (msg && typeof msg.seq === 'number') byLedger.receive(msg.s, msg.seq);
  });
  await round.waitFor(() => byReady, 15_000, 'startup', 'the bystander did not start');
  bystander.send({ go: { count: rng.int(500, 3000), perTick: rng.int(1, 30), bigShare: 0.01, bigMax: 64 * 1024 } });
  let pumping = true;
  const pump = () => {
    if (!pumping || round.over || !bystander.connected) return;
    for (let i = 0; i < 10; i++) bystander.send({ p: bySent++, pad: 'q'.repeat(i * 10) });
    setImmediate(pump);
  };
  pump();

  round.phase = 'hostile';
  const peer = round.fork(round.child('hostile.py'), [serialization], {
    execPath: 'python3',
    execArgv: [],
    serialization,
    maxMessageSize: MAX_MESSAGE_SIZE,
    stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
  });
  const rec = round.watch(peer, `hostile peer (pid ${peer.pid})`);
  peer.stdin.end(JSON.stringify(plan));
  let handles = 0;
  const misc = [];
  peer.on('message', (msg, handle) => {
    if (handle) {
      handles++;
      if (typeof handle.close === 'function') handle.close();
    }
    if (msg && (msg.s === 'h' || msg.s === 'hm') && typeof msg.seq === 'number') ledger.receive(msg.s, msg.seq);
    else misc.push(msg);
    if (msg && msg.s === 'hm' && !handle) misc.push({ envelopeWithoutHandle: msg });
  });
  await round.waitFor(() => round.done(rec), 20_000, 'close', 'the hostile peer did not close');

  round.phase = 'bystander finishing';
  pumping = false;
  bystander.send({ fin: bySent });
  await round.waitFor(() => byFin, 15_000, 'fin', 'the bystander did not answer fin');
  bystander.disconnect();
  await round.waitFor(() => round.done(byRec), 10_000, 'close', 'the bystander did not close');

  round.phase = 'checks';
  round.checkLifecycle(rec, {
    code: 0,
    errors: [
      'FORKLINE_MALFORMED_MESSAGE',
      'FORKLINE_MESSAGE_TOO_LARGE',
      'FORKLINE_STRAY_FD',
      'FORKLINE_BAD_HANDLE',
      ...(variant === 'ctrunc' ? ['FORKLINE_FD_LOST'] : []),
    ],
  });
  const codes = {};
  for (const err of rec.errors) codes[err.code] = (codes[err.code] || 0) + 1;
  const n = (code) => codes[code] || 0;
  round.set(
    'errors',
    Object.entries(codes)
      .map(([c, k]) => `${c.replace('FORKLINE_', '')}:${k}`)
      .join(','),
  );
  round.check(
    n('FORKLINE_MALFORMED_MESSAGE') === expect.malformed,
    'error-count',
    `${expect.malformed} malformed lines/frames sent, ${n('FORKLINE_MALFORMED_MESSAGE')} FORKLINE_MALFORMED_MESSAGE`,
  );
  round.check(
    n('FORKLINE_MESSAGE_TOO_LARGE') === expect.tooLarge,
    'error-count',
    `${expect.tooLarge} oversized messages sent, ${n('FORKLINE_MESSAGE_TOO_LARGE')} FORKLINE_MESSAGE_TOO_LARGE`,
  );
  round.check(
    n('FORKLINE_BAD_HANDLE') <= expect.bogus,
    'error-count',
    `${expect.bogus} bogus envelopes, ${n('FORKLINE_BAD_HANDLE')} FORKLINE_BAD_HANDLE`,
  );
  if (variant === 'ctrunc') {
    round.check(
      n('FORKLINE_FD_LOST') >= 1 && n('FORKLINE_FD_LOST') <= expect.truncated,
      'error-count',
      `${expect.truncated} messages with too many fds, ${n('FORKLINE_FD_LOST')} FORKLINE_FD_LOST`,
    );
  }
  round.check(
    misc.length === 0,
    'unexpected-message',
    () => `messages that should not arrive: ${JSON.stringify(misc.slice(0, 3))}`,
  );
  let report = null;
  try {
    report = JSON.parse(rec.out.trim().split('\n').pop());
  } catch {
    round.problem(
      'peer',
      `the hostile peer printed no report: ${JSON.stringify(rec.out.slice(-200))} ${rec.err.slice(-300)}`,
    );
  }
  if (report) {
    const accounted = n('FORKLINE_STRAY_FD') + n('FORKLINE_BAD_HANDLE') + handles;
    // With MSG_CTRUNC the kernel drops some fds before they reach us: fewer arrive than were sent.
    round.check(
      variant === 'ctrunc' ? accounted <= report.fds : accounted === report.fds,
      'fd-accounting',
      `${report.fds} fds sent; ${n('FORKLINE_STRAY_FD')} stray + ${n('FORKLINE_BAD_HANDLE')} bad handle + ${handles} delivered = ${accounted}`,
    );
    round.check(
      report.acks + report.nacks === expect.envelopes + expect.bogus,
      'handshake',
      `${expect.envelopes + expect.bogus} envelopes sent, answered ${report.acks} ACK + ${report.nacks} NACK`,
    );
    round.check(
      report.acks === handles + n('FORKLINE_BAD_HANDLE'),
      'handshake',
      `${report.acks} ACKs, but ${handles} handles delivered + ${n('FORKLINE_BAD_HANDLE')} bad`,
    );
    round.set('fds', report.fds);
  }
  ledger.mustHave('h', expect.good);
  for (const p of ledger.check()) round.problem(p.id, p.message);
  round.set('good', ledger.count('h'));
  round.set('handles', handles);

  round.checkLifecycle(byRec, { code: 0 });
  if (byFin) {
    byLedger.mustHave('b', byFin.sent);
    round.check(byFin.ok, 'lost', `bystander: the parent sent ${bySent}, it got ${byFin.got} in order`);
  }
  for (const p of byLedger.check()) round.problem(p.id, p.message);
}

module.exports = { name: 'hostile-peer', variants: ['json', 'advanced', 'ctrunc'], timeoutMs: 45_000, run, drawPlan };
