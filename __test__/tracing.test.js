'use strict';

// Tracing: NODE_DEBUG=forkline lines for a fork/send/exit cycle (a real parent process, its stderr read here), and
// node:diagnostics_channel subscribers seeing the same steps in-process.
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const dc = require('node:diagnostics_channel');
const net = require('node:net');
const { forklineFork, fixture, spawnChild, once, BACKEND } = require('./helpers');

function runParent(t, env) {
  const parent = spawn(process.execPath, [fixture('trace-parent.js')], {
    env: { ...process.env, NODE_DEBUG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => parent.kill('SIGKILL'));
  const out = { stdout: '', stderr: '' };
  parent.stdout.setEncoding('utf8').on('data', (d) => (out.stdout += d));
  parent.stderr.setEncoding('utf8').on('data', (d) => (out.stderr += d));
  return new Promise((resolve) => parent.on('close', (code) => resolve({ ...out, code, pid: parent.pid })));
}

test('NODE_DEBUG=forkline tells a fork/send/exit cycle, in order', { timeout: 30_000 }, async (t) => {
  const { stdout, stderr, code, pid } = await runParent(t, { NODE_DEBUG: 'forkline' });
  assert.strictEqual(code, 0, stderr);
  assert.strictEqual(stdout, 'done\n');
  const lines = stderr.split('\n').filter(Boolean);
  const child = /spawn pid (\d+)/.exec(stderr)?.[1];
  assert.ok(child, stderr);
  // The portable backend says so first, and has no malformed-input survival to trace (the fixture sends no bad
  // lines there).
  const native = BACKEND === 'native';
  const expected = [
    ...(native ? [] : ['backend: portable (FORKLINE_BACKEND=portable)']),
    `channel: spawn pid ${child}: ${process.execPath} [`,
    `channel: open (child pid ${child}, json)`,
    `channel: handle send (child pid ${child}): net.Server`,
    `channel: handle ack (child pid ${child})`,
    `channel: backpressure on (child pid ${child}): `,
    `channel: backpressure off (child pid ${child}): 0 bytes queued`,
    ...(native
      ? [`channel: error (child pid ${child}): FORKLINE_MALFORMED_MESSAGE IPC message is not valid JSON`]
      : []),
    `channel: closed (child pid ${child}): disconnect`,
    `channel: closed (child pid ${child}): eof`,
    `channel: exit pid ${child}: code 0 signal null`,
  ];
  assert.strictEqual(lines.length, expected.length, stderr);
  lines.forEach((line, i) =>
    assert.ok(line.startsWith(`FORKLINE ${pid}: ${expected[i]}`), `${line}\n≠ ${expected[i]}`),
  );
});

test(
  'without NODE_DEBUG nothing is printed; forkline:cluster shows no channel lines',
  { timeout: 30_000 },
  async (t) => {
    for (const env of [{}, { NODE_DEBUG: 'forkline:cluster' }]) {
      const { stdout, stderr, code } = await runParent(t, env);
      assert.strictEqual(code, 0, stderr);
      assert.strictEqual(stdout, 'done\n');
      assert.strictEqual(stderr, '', JSON.stringify(env));
    }
    const { stderr } = await runParent(t, { NODE_DEBUG: 'forkline:channel' });
    assert.match(stderr, /^FORKLINE:CHANNEL \d+: spawn pid \d+/);
  },
);

test(
  'diagnostics_channel subscribers see spawn, open, the handshake, errors, close and exit',
  { timeout: 30_000 },
  async (t) => {
    const names = [
      'forkline:spawn',
      'forkline:channel:open',
      'forkline:channel:handle',
      'forkline:channel:backpressure',
      'forkline:channel:error',
      'forkline:channel:close',
      'forkline:exit',
    ];
    const seen = [];
    const subscribers = names.map((name) => {
      const fn = (message) => seen.push([name, message]);
      dc.subscribe(name, fn);
      return [name, fn];
    });
    t.after(() => subscribers.forEach(([name, fn]) => dc.unsubscribe(name, fn)));

    const child = spawnChild(t, forklineFork, fixture('stats-child.js'), []);
    child.on('error', () => {});
    child.send('hello');
    await once(child, 'message');
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    child.send('h', server);
    await once(child, 'message');
    // Bad lines make Node's channel throw: the portable backend skips them.
    const native = BACKEND === 'native';
    if (native) {
      child.send('bad');
      await new Promise((resolve) => child.on('message', (m) => m === 'after' && resolve()));
    }
    child.disconnect();
    await once(child, 'exit');

    const steps = seen.map(([name, m]) => {
      if (name === 'forkline:channel:handle') return `${name} ${m.step} ${m.type ?? ''}`.trim();
      if (name === 'forkline:channel:close') return `${name} ${m.reason}`;
      if (name === 'forkline:channel:error') return `${name} ${m.error.code}`;
      return name;
    });
    assert.deepStrictEqual(steps, [
      'forkline:spawn',
      'forkline:channel:open',
      'forkline:channel:handle send net.Server',
      'forkline:channel:handle ack',
      ...(native ? ['forkline:channel:error FORKLINE_MALFORMED_MESSAGE'] : []),
      'forkline:channel:close disconnect',
      'forkline:channel:close eof',
      'forkline:exit',
    ]);
    const [, spawned] = seen[0];
    assert.strictEqual(spawned.child, child);
    assert.strictEqual(spawned.pid, child.pid);
    assert.strictEqual(seen[1][1].end, child);
    assert.strictEqual(seen[1][1].runtime, 'parent');
    assert.deepStrictEqual(seen.at(-1)[1].code, 0);
  },
);
