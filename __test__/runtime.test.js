'use strict';

// The child runtime (#7): a child written for Node's fork() runs under forkline's channel (childRuntime:
// 'forkline') as it does under Node's own. Each scenario runs with Node on both ends (the oracle) and with forkline
// on both ends, and the results are compared.

// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), "the child runtime (childRuntime: 'forkline')");
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const {
  nodeFork,
  forklineFork,
  fixture,
  sleep,
  spawnChild,
  killQuietly,
  processRef,
  once,
  recordEvents,
  whenClosed,
  fdCount,
  assertNoFdLeak,
  assertReaped,
  isAlive,
  waitUntil,
  tmpDir,
  blockThread,
} = require('./helpers');

const CHILD = fixture('runtime-child.js');
const QUIET = { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] };

// Node on both ends, and forkline on both ends.
const RUNTIMES = {
  node: nodeFork,
  forkline: (modulePath, args, options) => forklineFork(modulePath, args, { ...options, childRuntime: 'forkline' }),
};

// [code, signal] of the child's exit. After the parent's own disconnect() Node's ChildProcess never emits 'close'.
function whenExited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve([child.exitCode, child.signalCode]);
  return once(child, 'exit');
}

// Runs `scenario(t, fork, name)` under both runtimes and returns { node, forkline }.
async function both(t, scenario) {
  const results = {};
  for (const [name, forkFn] of Object.entries(RUNTIMES)) results[name] = await scenario(t, forkFn, name);
  return results;
}

// The parent's events for a CHILD run in `mode`, until 'close', under both runtimes.
function eventsUntilClosed(t, mode) {
  return both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, [mode], QUIET);
    const log = recordEvents(child);
    await whenClosed(child);
    return log;
  });
}

test('a child without listeners is not kept alive by its channel', { timeout: 20_000 }, async (t) => {
  const results = await eventsUntilClosed(t, 'silent');
  const expected = [['spawn'], ['message', 'ready'], ['disconnect'], ['exit', 0, null], ['close', 0, null]];
  assert.deepStrictEqual(results.forkline, expected);
  // Node's own 'exit' may come before its 'disconnect' (seen under load); the events are the same.
  const sorted = (log) => log.map((e) => JSON.stringify(e)).sort();
  assert.deepStrictEqual(sorted(results.node), sorted(expected));
});

test("a 'message' listener keeps the child alive until the parent disconnects", { timeout: 20_000 }, async (t) => {
  await both(t, async (t, forkFn, name) => {
    const child = spawnChild(t, forkFn, CHILD, ['listen'], QUIET);
    await once(child, 'message');
    child.send({ a: 1 });
    assert.deepStrictEqual((await once(child, 'message'))[0], { a: 1 });
    await sleep(300);
    assert.ok(isAlive(child.pid), `${name}: the child stays while it listens`);
    child.disconnect();
    assert.deepStrictEqual(await whenExited(child), [0, null], name);
  });
});

test('removing the last listener, or channel.unref(), lets the child end', { timeout: 20_000 }, async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const out = {};
    const removing = spawnChild(t, forkFn, CHILD, ['listen-remove'], QUIET);
    await once(removing, 'message');
    removing.send('once');
    out.removed = [(await once(removing, 'message'))[0], await whenClosed(removing)];
    const unref = spawnChild(t, forkFn, CHILD, ['unref'], QUIET);
    await once(unref, 'message');
    out.unref = await whenClosed(unref);
    return out;
  });
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline, { removed: ['once', [0, null]], unref: [0, null] });
});

test('messages that arrive before the first listener are not lost', { timeout: 20_000 }, async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, ['late'], QUIET);
    const got = [];
    child.on('message', (msg) => got.push(msg));
    for (let i = 0; i < 100; i++) child.send(i);
    await waitUntil(() => got.length === 101, 5000, 'the echoes');
    child.disconnect();
    await whenExited(child);
    return got;
  });
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline, ['ready', ...Array.from({ length: 100 }, (_, i) => i)]);
});

test("send() callbacks, and false past the high-water mark, as in Node's child", { timeout: 30_000 }, async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, ['callbacks'], QUIET);
    await once(child, 'message');
    const got = [];
    child.on('message', (msg) => got.push(msg));
    child.send('flood');
    // Stop reading while the child floods (after the tick, so that 'flood' has left): its queue must grow.
    setImmediate(() => blockThread(1000));
    await waitUntil(() => got.length === 12, 20_000, 'the flood and the report');
    await whenClosed(child);
    assert.strictEqual(got[0], 'small');
    for (const big of got.slice(1, 11)) assert.strictEqual(big.length, 4 << 20);
    const { results } = got[11];
    return {
      order: results.map(([what]) => what),
      small: results[0][1],
      lastLarge: results[10][1],
      errors: results.filter(([what]) => what.endsWith(' cb')).map(([, err]) => err),
    };
  });
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline, {
    order: ['small', ...Array(10).fill('large'), 'small cb', ...Array(10).fill('large cb')],
    small: true,
    lastLarge: false,
    errors: Array(11).fill(null),
  });
});

test("NODE_ messages are 'internalMessage' in the child, others 'message'", { timeout: 20_000 }, async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, ['internal'], QUIET);
    await once(child, 'message');
    const got = [];
    child.on('message', (msg) => got.push(msg));
    child.send({ cmd: 'NODE_TEST', n: 1 });
    child.send({ cmd: 'NODE_', n: 2 });
    child.send('plain');
    await waitUntil(() => got.length === 3, 5000, 'three reports');
    child.disconnect();
    await whenExited(child);
    return got;
  });
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline[0], ['internalMessage', { cmd: 'NODE_TEST', n: 1 }]);
});

test('process.disconnect() in the child: the parent sees disconnect, the child sees it too', async (t) => {
  const results = await eventsUntilClosed(t, 'disconnect-self');
  const expected = [['spawn'], ['message', 'bye'], ['disconnect'], ['exit', 0, null], ['close', 0, null]];
  assert.deepStrictEqual(results.forkline, expected);
  // Node's own 'exit' may come before its 'disconnect' (seen under load); the events are the same.
  const sorted = (log) => log.map((e) => JSON.stringify(e)).sort();
  assert.deepStrictEqual(sorted(results.node), sorted(expected));
});

// Node's own child hangs here (its failed write keeps it alive and it never sees 'disconnect'), so forkline is checked
// on its own: the failure of a send without a callback is no 'error' event, 'disconnect' comes and the child exits.
test("a queued send that fails when the parent disconnects is no 'error' in the child", async (t) => {
  const child = spawnChild(t, RUNTIMES.forkline, CHILD, ['big-then-wait'], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.on('error', () => {}); // The parent may report the cut-off message; not what this test is about.
  await once(child.stdout, 'data');
  // The 64 MiB write is still under way in the child: it fails once the channel is gone.
  child.disconnect();
  const [code, signal] = await new Promise((resolve) => child.once('exit', (...args) => resolve(args)));
  assert.deepStrictEqual({ code, signal, stderr }, { code: 0, signal: null, stderr: '' });
});

test("process.channel says 'unref' as this Node's does when its last counted listener goes", async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, ['unref-event'], QUIET);
    const [report] = await once(child, 'message');
    await whenClosed(child);
    return report;
  });
  assert.deepStrictEqual(results.forkline, results.node);
});

test('process looks as under Node: connected, channel, send, disconnect, enumerable keys', async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, ['state'], QUIET);
    const [state] = await once(child, 'message');
    await whenClosed(child);
    state.keys.sort();
    return state;
  });
  assert.deepStrictEqual(results.forkline, results.node);
});

test('a child that replaces globalThis.process keeps its channel, as under Node', { timeout: 20_000 }, async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, ['replaced-global'], QUIET);
    const log = recordEvents(child, ['message', 'exit', 'error']);
    await once(child, 'message');
    child.send('one');
    await waitUntil(() => log.some(([, msg]) => msg === 'done'), 10_000, "the child's 'done'");
    child.disconnect();
    await whenExited(child);
    return log;
  });
  assert.deepStrictEqual(results.node, [
    ['message', 'ready'],
    ['message', ['got', 'one']],
    ['message', 'done'],
    ['exit', 0, null],
  ]);
  assert.deepStrictEqual(results.forkline, results.node);
});

test('argv, execArgv and env look as under Node, NODE_OPTIONS included', { timeout: 20_000 }, async (t) => {
  for (const env of [
    { PATH: process.env.PATH, FORKLINE_TEST_VAR: 'x' },
    { PATH: process.env.PATH, NODE_OPTIONS: '--no-deprecation --max-old-space-size=200', Z: 'last' },
    { NODE_OPTIONS: '' },
  ]) {
    const results = await both(t, async (t, forkFn) => {
      const child = spawnChild(t, forkFn, CHILD, ['env', 'more', 'args'], {
        ...QUIET,
        env,
        execArgv: ['--no-warnings'],
      });
      const [info] = await once(child, 'message');
      assert.deepStrictEqual(await whenClosed(child), [0, null]);
      return { ...info, envOrder: Object.keys(info.env) };
    });
    assert.deepStrictEqual(results.forkline, results.node);
    assert.deepStrictEqual(results.forkline.execArgv, ['--no-warnings']);
  }
});

test('process.exit() right after process.send() still delivers, 16 MB included', { timeout: 60_000 }, async (t) => {
  for (const size of [10, 1 << 20, 16 << 20]) {
    const child = spawnChild(t, RUNTIMES.forkline, CHILD, ['exit-after', String(size)], QUIET);
    const got = [];
    child.on('message', (msg) => got.push(msg.length));
    assert.deepStrictEqual(await whenClosed(child), [0, null]);
    assert.deepStrictEqual(got, [size], `${size} bytes`);
  }
});

test('grandchildren, forked with node:child_process or forkline, do not inherit the runtime', async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, CHILD, ['grandchildren'], { stdio: 'inherit' });
    const [report] = await once(child, 'message');
    assert.deepStrictEqual(await whenClosed(child), [0, null]);
    return report;
  });
  assert.deepStrictEqual(results.forkline, results.node);
  const report = results.forkline;
  for (const name of ['node', 'forkline', 'forkline+runtime']) {
    assert.deepStrictEqual(report[name].env, report.self.env, `${name}: same env as the child's own`);
    assert.deepStrictEqual(report[name].execArgv, report.self.execArgv, name);
    assert.strictEqual(report[name].exitCode, 0, name);
  }
  assert.ok(!Object.keys(report.self.env).some((key) => key.startsWith('FORKLINE_CHANNEL')));
});

test("a child whose parent is killed sees 'disconnect' and can exit", { timeout: 30_000 }, async (t) => {
  const marker = path.join(tmpDir(t), 'marker');
  const parent = spawn(process.execPath, [fixture('runtime-parent.js'), marker], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => killQuietly(parent));
  const [line] = await once(parent.stdout, 'data');
  const pid = Number(String(line).trim());
  const orphan = processRef(pid);
  t.after(() => killQuietly(orphan));
  assert.ok(isAlive(pid));
  parent.kill('SIGKILL');
  await waitUntil(() => fs.existsSync(marker), 10_000, "the child to see 'disconnect'");
  assert.strictEqual(fs.readFileSync(marker, 'utf8'), `disconnected ${pid}\n`);
  await waitUntil(() => !isAlive(pid), 10_000, 'the child to exit');
});

test('a runtime that cannot start fails loudly', { timeout: 20_000 }, () => {
  const preload = `--require "${path.join(__dirname, '..', 'index.js')}"`;
  for (const fd of ['99', '0', 'nope']) {
    const result = spawnSync(process.execPath, ['-e', 'console.log("user code ran")'], {
      env: { ...process.env, FORKLINE_CHANNEL_FD: fd, NODE_OPTIONS: preload },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    assert.strictEqual(result.status, 1, `fd ${fd}: ${result.stderr}`);
    assert.strictEqual(result.stdout, '', `fd ${fd}: user code must not run`);
    assert.match(result.stderr, /^forkline: the child runtime cannot start: /, `fd ${fd}`);
  }
});

test('no fd, thread or process outlives a runtime child', { timeout: 20_000 }, async (t) => {
  const threads = () => fs.readdirSync('/proc/self/task').length;
  // One child first, so that lazily started threads (libuv's pool, the burst reader) exist before counting.
  const warm = spawnChild(t, RUNTIMES.forkline, CHILD, ['silent'], QUIET);
  await whenClosed(warm);
  await sleep(100);
  const [fdsBefore, threadsBefore] = [fdCount(), threads()];
  const pids = [];
  for (let i = 0; i < 5; i++) {
    const child = spawnChild(t, RUNTIMES.forkline, CHILD, ['listen'], QUIET);
    pids.push(child.pid);
    await once(child, 'message');
    child.send('x'.repeat(1 << 20));
    await once(child, 'message');
    child.disconnect();
    await whenExited(child);
  }
  await assertNoFdLeak(fdsBefore);
  await waitUntil(() => threads() <= threadsBefore, 2000, `threads back to ${threadsBefore}`);
  for (const pid of pids) await assertReaped(pid);
});

test('advanced serialization in the runtime: V8 values both ways, as under Node', { timeout: 20_000 }, async (t) => {
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, fixture('adv-echo.js'), [], { ...QUIET, serialization: 'advanced' });
    const sent = { m: new Map([[1, { deep: [1n, new Date(0)] }]]), b: Buffer.from('héllo'), s: new Set(['x']) };
    child.send(sent);
    const [back] = await once(child, 'message');
    assert.deepStrictEqual(back, sent);
    child.send({ buffer: 3 << 20 });
    const [buf] = await once(child, 'message');
    child.disconnect();
    await whenExited(child);
    return { back, isBuffer: Buffer.isBuffer(buf), length: buf.length };
  });
  assert.deepStrictEqual(results.forkline, results.node);
});

test('handles both ways in the runtime: a server from the child, a socket to it', { timeout: 20_000 }, async (t) => {
  const net = require('node:net');
  const results = await both(t, async (t, forkFn) => {
    const child = spawnChild(t, forkFn, fixture('handle-child.js'), [], QUIET);
    child.send({ do: 'give-server' });
    const [info, server] = await once(child, 'message');
    assert.ok(server instanceof net.Server, 'a net.Server arrived');
    // The child closed its copy: connections now reach the server the parent got.
    server.on('connection', (socket) => socket.end('parent\n'));
    const reply = await new Promise((resolve, reject) => {
      const socket = net.connect(info.port, '127.0.0.1');
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (d) => (text += d));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    server.close();
    // And a socket the other way: the child answers on it.
    const echo = net.createServer((socket) => child.send({ do: 'answer', text: 'hi' }, socket));
    await new Promise((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const answer = await new Promise((resolve, reject) => {
      const socket = net.connect(echo.address().port, '127.0.0.1');
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (d) => (text += d));
      socket.on('end', () => resolve(text.replace(String(child.pid), 'PID')));
      socket.on('error', reject);
    });
    echo.close();
    child.disconnect();
    await whenExited(child);
    return { reply, answer };
  });
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline, { reply: 'parent\n', answer: 'answered by PID: hi\n' });
});
