'use strict';

// kill -9 of a forkline cluster primary (chaos/children/cluster-primary.js, its own process, 2-3 HTTP workers,
// the variant's scheduling policy): early (while workers start), as soon as all listen, or under HTTP load (with
// slow answers sometimes, so requests are in flight). The workers are Node's own worker side: each must see
// 'disconnect' and exit by itself (code 0) within a bound, found gone in /proc; no process carrying the round's
// token may be left (the orphaned workers are no descendants of ours any more); every HTTP request ends (answered
// by one of the workers, or failed) and none hangs; no process of the round (nor this one) still listens on the port.

const http = require('node:http');
const { tagged, listenHolders, isAlive } = require('../invariants');

const KILL_MOMENTS = ['early', 'ready', 'load'];
const EXIT_BOUND_MS = 8000;

async function run(round, variant) {
  const { rng } = round;
  const workers = rng.int(2, 3);
  const moment = rng.pick(KILL_MOMENTS);
  const slowMs = moment === 'load' && rng.chance(0.5) ? rng.int(50, 400) : 0;
  round.set('workers', workers);
  round.set('kill', moment + (slowMs ? ` slow=${slowMs}` : ''));
  round.set('policy', variant);

  round.phase = 'start';
  const primary = round.spawn(
    process.execPath,
    [round.child('cluster-primary.js'), variant, String(workers), String(slowMs)],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  let eof = false;
  let ready = null;
  let exited = null;
  primary.stdout.setEncoding('utf8').on('data', (d) => {
    out += d;
    if (!ready) {
      const m = /^ready (.*)$/m.exec(out);
      if (m) ready = JSON.parse(m[1]);
    }
  });
  primary.stdout.on('end', () => (eof = true));
  primary.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  primary.on('exit', (code, signal) => (exited = { code, signal }));
  round.defer(() => primary.kill('SIGKILL'));

  const requests = [];
  let loading = false;
  if (moment === 'early') {
    await round.sleep(rng.int(20, 400));
  } else {
    await round.waitFor(
      () => ready || exited,
      20_000,
      'startup',
      () => `the primary did not get ready: ${tail(err)}`,
    );
    if (!ready) return;
    if (moment === 'load') {
      loading = true;
      const concurrency = rng.int(1, 8);
      for (let i = 0; i < concurrency; i++) load(ready.port);
      await round.sleep(rng.int(50, 500));
    }
  }

  round.phase = 'kill';
  const killedAt = Date.now();
  const requestsBefore = requests.length;
  primary.kill('SIGKILL');
  loading = false;

  round.phase = 'workers exiting';
  // Every holder of the shared stdout is gone once it reaches EOF.
  await round.waitFor(
    () => eof && exited,
    EXIT_BOUND_MS,
    'worker-survived',
    () => {
      const alive = tagged(round.token).map((p) => `${p.pid} (${p.comm}, ${p.state})`);
      return `${EXIT_BOUND_MS} ms after the primary's SIGKILL: stdout EOF ${eof}, processes of the round alive: ${alive.join(', ') || 'none'}`;
    },
  );
  const lines = out.split('\n').filter(Boolean);
  const pidsOf = (word) => lines.filter((l) => l.startsWith(`${word} `)).map((l) => Number(l.split(' ')[1]));
  const forked = pidsOf('fork');
  const up = pidsOf('up');
  const disconnected = new Set(pidsOf('disconnect'));
  const exits = new Map(lines.filter((l) => l.startsWith('exit ')).map((l) => l.split(' ').slice(1).map(Number)));
  round.set('forked', forked.length);
  round.set('up', up.length);

  round.phase = 'checks';
  round.check(exited && exited.signal === 'SIGKILL', 'exit', () => `the primary exited ${JSON.stringify(exited)}`);
  for (const pid of new Set([...forked, ...up])) {
    round.check(
      !isAlive(pid),
      'worker-survived',
      `worker ${pid} is still alive ${Date.now() - killedAt} ms after its primary's SIGKILL`,
    );
  }
  // A worker that sees 'disconnect' exits 0 (Node's worker side). One that is still starting, or that answers the
  // round-robin hand-off, when the primary dies may first fail its own send to the dead primary and crash, exit
  // code 1 with EPIPE on stderr: node:cluster's workers do the same (measured with cluster-primary.js's 'node'
  // argument), so that is accepted, except for idle workers (the 'ready' moment), which must see 'disconnect'.
  const epipe = /EPIPE/.test(err);
  for (const pid of up) {
    const code = exits.get(pid);
    const where = `worker ${pid} (lines: ${lines.filter((l) => l.endsWith(` ${pid}`) || l.includes(` ${pid} `)).join('; ')})`;
    if (code === 0 || moment === 'ready') {
      round.check(disconnected.has(pid), 'no-disconnect', `${where} never saw 'disconnect'`);
      round.check(code === 0, 'worker-exit', `${where} exited with ${code}, expected 0 after 'disconnect'`);
    } else {
      round.check(
        code === 1 && epipe,
        'worker-exit',
        `${where} exited with ${code} without 'disconnect'${epipe ? '' : ' and no EPIPE'}: ${tail(err)}`,
      );
    }
  }
  if (ready) {
    round.check(
      ready.pids.every((pid) => up.includes(pid)),
      'startup',
      `ready workers ${ready.pids} but only ${up} wrote 'up'`,
    );
  }
  // Every request ends within the bound; before the kill, each was answered by one of the workers.
  await round.waitFor(
    () => requests.every((r) => r.done),
    5000,
    'hung-request',
    () => {
      const hung = requests.filter((r) => !r.done);
      return `${hung.length} HTTP request(s) still pending 5 s after the workers were gone`;
    },
  );
  const pids = new Set(forked);
  for (const r of requests) {
    if (r.answer !== undefined) {
      round.check(
        /^pid \d+$/.test(r.answer) && pids.has(Number(r.answer.slice(4))),
        'http',
        `an answer from nobody: ${JSON.stringify(r.answer)}`,
      );
    } else if (r.done && r.startedAt < killedAt - 20 && r.endedAt < killedAt) {
      round.problem('http', `a request failed before the primary was killed: ${r.error}`);
    }
  }
  round.set('requests', requests.length);
  round.set('answered', requests.filter((r) => r.answer !== undefined).length);
  round.set('before-kill', requestsBefore);
  if (ready) {
    const holders = listenHolders(ready.port, round.token);
    round.check(
      holders.length === 0,
      'socket-leak',
      `port ${ready.port} is still listened on by ${holders.join(', ')}`,
    );
  }

  const otherErrors = err.split('\n').filter((l) => /Error|error:/.test(l) && !/EPIPE/.test(l));
  round.check(otherErrors.length === 0, 'stderr', () => `the primary or a worker wrote errors: ${tail(err)}`);

  function load(port) {
    if (!loading || round.over) return;
    const r = { startedAt: Date.now(), done: false };
    requests.push(r);
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => finish(body));
      res.on('error', (e) => finish(undefined, e));
    });
    req.on('error', (e) => finish(undefined, e));
    function finish(answer, error) {
      if (r.done) return;
      r.done = true;
      r.endedAt = Date.now();
      if (error) r.error = error.code || error.message;
      else r.answer = answer;
      setImmediate(load, port);
    }
  }
}

const tail = (text) => text.trim().split('\n').slice(-5).join(' | ');

module.exports = { name: 'kill-primary', variants: ['rr', 'none', 'reuseport'], timeoutMs: 45_000, run };
