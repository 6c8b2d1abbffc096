'use strict';

// stdio slots as Node makes them (#11): every 'pipe' slot is a socketpair, so the parent's end of stdout, stderr
// and extra slots is writable too, and the child can read what the parent writes there. node:child_process is the
// oracle, for fork() and for a cluster's setupPrimary({ stdio }).

const test = require('node:test');
const assert = require('node:assert');
const { IMPLS, fixture, once, spawnChild, whenClosed } = require('./helpers');

const DUPLEX = fixture('stdio-duplex.js');
const STDIO = [0, 'ignore', 'pipe', 'ipc', 'pipe'];

const shape = (child) => child.stdio.map((s) => (s ? { readable: s.readable, writable: s.writable } : null));

test(
  "every 'pipe' slot is duplex: the parent writes to stdio[4] and stderr, and reads the answers",
  { timeout: 20_000 },
  async (t) => {
    const results = {};
    for (const [impl, forkFn] of Object.entries(IMPLS)) {
      const child = spawnChild(t, forkFn, DUPLEX, [], { stdio: STDIO });
      assert.deepStrictEqual(await once(child, 'message'), ['ready', undefined], impl);
      const result = { shape: shape(child) };
      const extra = child.stdio[4];
      extra.setEncoding('utf8');
      extra.write('ping');
      [result.extra] = await once(extra, 'data');
      child.stderr.write('into stderr');
      child.send('read-stderr');
      [result.stderr] = await once(child, 'message');
      child.send('bye');
      result.closed = await whenClosed(child);
      results[impl] = result;
    }
    assert.deepStrictEqual(results.node, {
      shape: [null, null, { readable: true, writable: true }, null, { readable: true, writable: true }],
      extra: 'pong:ping',
      stderr: { stderrGot: 'into stderr' },
      closed: [0, null],
    });
    assert.deepStrictEqual(results.forkline, results.node);
  },
);

test("stdin, stdout and stderr 'pipe' slots have Node's readable/writable sides", { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [impl, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, fixture('stdio-child.js'), [], { silent: true });
    results[impl] = shape(child);
    child.stdin.end();
    child.stdout.resume();
    child.stderr.resume();
    await whenClosed(child);
  }
  assert.deepStrictEqual(results.forkline, results.node);
});

test(
  "cluster.setupPrimary({ stdio }) with an extra 'pipe' slot: the worker's slot is duplex",
  { timeout: 30_000 },
  async () => {
    const { spawnSync } = require('node:child_process');
    const results = {};
    for (const impl of ['node', 'forkline']) {
      const out = spawnSync(process.execPath, [fixture('cluster-stdio.js'), impl], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      assert.strictEqual(out.status, 0, `${impl}: ${out.stdout} ${out.stderr}`);
      results[impl] = JSON.parse(out.stdout.trim().split('\n').pop());
    }
    assert.deepStrictEqual(results.node.extra, 'pong:ping');
    assert.deepStrictEqual(results.forkline, results.node);
  },
);
