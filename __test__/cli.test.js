'use strict';

// The launcher, `forkline cluster … app.js`, as a user runs it: a real primary process with real workers, HTTP from
// here, and the signals a process manager sends.
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { isAlive, waitUntil, tmpDir } = require('./helpers');

const CLI = path.join(__dirname, '..', 'index.js');
const WORKER = path.join(__dirname, 'fixtures', 'cluster-worker-http.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function launch(t, args, env = {}) {
  // A control directory of this test's own, so that launchers of other test runs never share a socket name.
  const controlDir = tmpDir(t);
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, FORKLINE_CONTROL_DIR: controlDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '', exit: null };
  child.stdout.setEncoding('utf8').on('data', (d) => (out.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (out.stderr += d));
  out.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve((out.exit = { code, signal }))));
  t.after(() => {
    if (out.exit === null) child.kill('SIGKILL');
  });
  return { child, out };
}

// The pid that answered, or null if nobody did.
function ask(port) {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d) => (body += d));
        res.on('end', () => resolve(Number(body.replace('pid ', ''))));
      })
      .on('error', () => resolve(null));
  });
}

async function pidsAnswering(port, n = 20) {
  const pids = new Set();
  for (let i = 0; i < n; i++) {
    const pid = await ask(port);
    assert.ok(pid, 'every request is answered');
    pids.add(pid);
  }
  return pids;
}

test('bad usage exits 2 with the reason and the usage; --help prints it', { timeout: 20_000 }, async (t) => {
  for (const args of [['cluster', '--bogus', 'app.js'], ['cluster', '-w', '0', 'app.js'], ['cluster'], ['serve']]) {
    const { out } = launch(t, args);
    assert.deepStrictEqual(await out.exited, { code: 2, signal: null }, args.join(' '));
    assert.match(out.stderr, /^forkline: .+\n\nUsage: forkline cluster/, args.join(' '));
  }
  const { out } = launch(t, ['cluster', '--help']);
  assert.deepStrictEqual(await out.exited, { code: 0, signal: null });
  assert.match(out.stdout, /SIGHUP\/SIGUSR2 reload/);
});

for (const policy of ['rr', 'reuseport']) {
  test(
    `forkline cluster -w 2 -p ${policy} --restart: serves, restarts a dead worker, reloads on SIGHUP, stops on SIGTERM`,
    { timeout: 60_000 },
    async (t) => {
      const port = await freePort();
      const { child, out } = launch(t, ['cluster', '-w', '2', '-p', policy, '--restart', WORKER], {
        PORT: String(port),
        HOST: '127.0.0.1',
      });
      await waitUntil(async () => (await ask(port)) !== null, 15_000, 'the app answers');
      // The first answer can come while the second worker is still starting: wait until both are listening (were
      // the only listening worker killed, the port would refuse connections until another listens, as in Node),
      // then every request must still be answered.
      await waitUntil(async () => (await pidsAnswering(port)).size === 2, 15_000, 'both answer');
      const first = await pidsAnswering(port);
      if (policy === 'rr') assert.strictEqual(first.size, 2, 'round-robin: both workers answer');

      // A worker that dies is forked again; requests keep being answered meanwhile.
      const victim = [...first][0];
      process.kill(victim, 'SIGKILL');
      await waitUntil(() => /worker \d+ \(pid \d+\) died \(SIGKILL\)/.test(out.stderr), 10_000, 'the death is logged');
      await waitUntil(async () => !(await pidsAnswering(port, 10)).has(victim), 10_000, 'the dead pid is gone');

      // SIGHUP: every worker is replaced, one at a time.
      const before = await pidsAnswering(port);
      child.kill('SIGHUP');
      await waitUntil(() => out.stderr.includes('reload done'), 30_000, 'the reload finishes');
      const after = await pidsAnswering(port);
      for (const pid of after) assert.ok(!before.has(pid), `pid ${pid} answered before and after the reload`);
      for (const pid of before) assert.ok(!isAlive(pid), `old worker ${pid} has exited`);

      // SIGTERM: the workers are disconnected and the primary exits 0.
      child.kill('SIGTERM');
      assert.deepStrictEqual(await out.exited, { code: 0, signal: null }, out.stderr);
      assert.match(out.stderr, /SIGTERM: disconnecting the workers/);
      for (const pid of after) await waitUntil(() => !isAlive(pid), 5_000, `worker ${pid} exits`);
      assert.strictEqual(await ask(port), null, 'nothing listens any more');
    },
  );
}
