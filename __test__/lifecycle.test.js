'use strict';

// fork() options, ChildProcess events and exit/close/kill/disconnect/ref/unref, each scenario run through
// node:child_process's fork() (the oracle) and forkline's. Over 600 lines on purpose: many short scenarios sharing
// the oracle helpers at the top; each stands alone.

// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  "no 'message' is emitted after the parent's disconnect()":
    "no delivery once disconnect() is called (Node's channel emits the rest of the chunk it had read)",
});
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const {
  IMPLS,
  forklineFork,
  fixture,
  sleep,
  mustCall,
  mustNotCall,
  spawnChild,
  killQuietly,
  processRef,
  once,
  recordEvents,
  untilDone,
  whenClosed,
  runScenario,
  assertReaped,
  isAlive,
  waitUntil,
  tmpDir,
  blockThread,
  exposedGc,
} = require('./helpers');

const LIFECYCLE = fixture('lifecycle-child.js');
const INFO = fixture('info.js');
const STDIO = fixture('stdio-child.js');
const ECHO = fixture('echo.js');

const names = (log) => log.map((entry) => entry[0]);
const sorted = (log) => log.map((entry) => JSON.stringify(entry)).sort();
const QUIET = { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] };

// Runs one scenario through both forks and returns { node, forkline } results.
async function both(t, modulePath, args, options, extra) {
  const out = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    out[name] = await runScenario(t, forkFn, modulePath, args, options, extra);
  }
  return out;
}

// Runs a scenario `runs` times through each fork and checks forkline's event order equals Node's every time.
async function sameOrderAsNode(t, runs, modulePath, args, options, extra, forklineExtra = []) {
  const expected = names((await runScenario(t, IMPLS.node, modulePath, args, options, extra)).log);
  for (let i = 0; i < runs; i++) {
    const { log } = await runScenario(t, IMPLS.forkline, modulePath, args, options, {
      ...extra,
      noClose: false,
    });
    assert.deepStrictEqual(names(log), [...expected, ...forklineExtra], `run ${i}: ${JSON.stringify(log)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Event sequences.

test('child exits by itself with a code: same events and arguments as Node', { timeout: 20_000 }, async (t) => {
  const { node, forkline } = await both(t, LIFECYCLE, ['exit', '5'], QUIET);
  assert.deepStrictEqual(sorted(forkline.log), sorted(node.log));
  assert.deepStrictEqual(
    sorted(forkline.log),
    sorted([['spawn'], ['message', 'ready'], ['disconnect'], ['exit', 5, null], ['close', 5, null]]),
  );
  for (const { child } of [node, forkline]) {
    assert.strictEqual(child.exitCode, 5);
    assert.strictEqual(child.signalCode, null);
    assert.strictEqual(child.killed, false);
    assert.strictEqual(child.connected, false);
  }
  await assertReaped(forkline.child.pid);
});

test(
  'child exits by itself: spawn → message → disconnect → exit → close, as Node (10 runs)',
  {
    timeout: 30_000,
  },
  async (t) => {
    await sameOrderAsNode(t, 10, LIFECYCLE, ['exit', '5'], QUIET);
  },
);

test('child calls process.disconnect(): same events, order and arguments as Node', { timeout: 20_000 }, async (t) => {
  const { node, forkline } = await both(t, LIFECYCLE, ['self-disconnect'], QUIET);
  assert.deepStrictEqual(forkline.log, node.log);
  assert.deepStrictEqual(forkline.log, [
    ['spawn'],
    ['message', 'ready'],
    ['disconnect'],
    ['exit', 0, null],
    ['close', 0, null],
  ]);
  await sameOrderAsNode(t, 5, LIFECYCLE, ['self-disconnect'], QUIET);
});

test("parent calls child.disconnect(): as Node, plus the documented 'close'", { timeout: 20_000 }, async (t) => {
  const act = mustCall(
    t,
    (child) => {
      child.disconnect();
      assert.strictEqual(child.connected, false);
    },
    2,
  );
  // Node never emits 'close' here (so wait for 'exit'); forkline does, once the child has exited.
  const node = await runScenario(t, IMPLS.node, LIFECYCLE, ['linger'], QUIET, { act, noClose: true });
  const forkline = await runScenario(t, IMPLS.forkline, LIFECYCLE, ['linger'], QUIET, { act });
  assert.deepStrictEqual(node.log, [['spawn'], ['message', 'ready'], ['disconnect'], ['exit', 0, null]]);
  assert.deepStrictEqual(forkline.log, [...node.log, ['close', 0, null]]);
  assert.strictEqual(forkline.child.connected, false);
  await assertReaped(forkline.child.pid);
});

for (const signal of ['SIGTERM', 'SIGKILL', 'SIGINT', 'SIGHUP']) {
  test(`kill('${signal}'): exit/close (null, '${signal}'), killed true, as Node`, { timeout: 20_000 }, async (t) => {
    const returned = [];
    const act = mustCall(t, (child) => returned.push(child.kill(signal)), 2);
    const { node, forkline } = await both(t, LIFECYCLE, ['hang'], QUIET, { act });
    assert.deepStrictEqual(returned, [true, true]);
    assert.deepStrictEqual(sorted(forkline.log), sorted(node.log));
    assert.deepStrictEqual(
      sorted(forkline.log),
      sorted([['spawn'], ['message', 'ready'], ['disconnect'], ['exit', null, signal], ['close', null, signal]]),
    );
    for (const { child } of [node, forkline]) {
      assert.strictEqual(child.signalCode, signal);
      assert.strictEqual(child.exitCode, null);
      assert.strictEqual(child.killed, true);
    }
    await assertReaped(forkline.child.pid);
  });
}

test(
  'kill(): spawn → message → disconnect → exit → close, as Node (3 runs per signal)',
  {
    timeout: 30_000,
  },
  async (t) => {
    for (const signal of ['SIGTERM', 'SIGKILL', 'SIGINT', 'SIGHUP']) {
      await sameOrderAsNode(t, 3, LIFECYCLE, ['hang'], QUIET, { act: (child) => child.kill(signal) });
    }
  },
);

test('kill() with a signal number and kill(0)', { timeout: 20_000 }, async (t) => {
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, LIFECYCLE, ['hang'], QUIET);
    await once(child, 'message');
    assert.strictEqual(child.kill(0), true, name);
    assert.ok(isAlive(child.pid), name);
    assert.strictEqual(child.kill(9), true, name);
    assert.deepStrictEqual(await whenClosed(child), [null, 'SIGKILL'], name);
  }
});

test(
  'kill() defaults to SIGTERM; a child killed by someone else has killed false, as Node',
  { timeout: 20_000 },
  async (t) => {
    const results = {};
    for (const [name, forkFn] of Object.entries(IMPLS)) {
      const byUs = spawnChild(t, forkFn, LIFECYCLE, ['hang'], QUIET);
      const byOther = spawnChild(t, forkFn, LIFECYCLE, ['hang'], QUIET);
      await Promise.all([once(byUs, 'message'), once(byOther, 'message')]);
      byUs.kill();
      process.kill(byOther.pid, 'SIGTERM');
      results[name] = {
        byUs: [await whenClosed(byUs), byUs.killed, byUs.signalCode],
        byOther: [await whenClosed(byOther), byOther.killed, byOther.signalCode],
      };
    }
    assert.deepStrictEqual(results.forkline, results.node);
    assert.deepStrictEqual(results.forkline, {
      byUs: [[null, 'SIGTERM'], true, 'SIGTERM'],
      byOther: [[null, 'SIGTERM'], false, 'SIGTERM'],
    });
  },
);

test(
  'many children exiting at once, beside node:child_process.spawn children: each gets its own code',
  { timeout: 20_000 },
  async (t) => {
    const waits = [];
    const expected = [];
    for (let i = 0; i < 8; i++) {
      const child = spawnChild(t, forklineFork, LIFECYCLE, ['exit', String(i)], QUIET);
      waits.push(whenClosed(child));
      expected.push([i, null]);
      // forkline's reaper must not take node's own children (nor the other way round).
      const other = spawn('/bin/sh', ['-c', `exit ${20 + i}`], { stdio: 'ignore' });
      t.after(() => killQuietly(other));
      waits.push(whenClosed(other));
      expected.push([20 + i, null]);
    }
    assert.deepStrictEqual(await Promise.all(waits), expected);
  },
);

// Node's docs: after disconnect() "it is no longer possible to send or receive messages". Node itself still emits
// the rest of the chunk it had read (180 messages in one run); forkline emits none, from the call on.
test(
  "no 'message' is emitted after the parent's disconnect()",
  {
    timeout: 20_000,
  },
  async (t) => {
    const child = spawnChild(t, IMPLS.forkline, fixture('flood.js'), [], QUIET);
    let received = 0;
    let afterDisconnect = 0;
    let disconnected = false;
    child.on('message', () => {
      if (disconnected) afterDisconnect++;
      if (++received === 1000) {
        child.disconnect();
        disconnected = true;
      }
    });
    await untilDone(child);
    assert.strictEqual(received, 1000 + afterDisconnect);
    assert.strictEqual(afterDisconnect, 0);
  },
);

test('kill() after exit returns false, as Node', { timeout: 20_000 }, async (t) => {
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, LIFECYCLE, ['exit', '0'], QUIET);
    await once(child, 'exit');
    assert.strictEqual(child.kill(), false, name);
    assert.strictEqual(child.kill('SIGKILL'), false, name);
    assert.strictEqual(child.killed, false, name);
    await untilDone(child);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// send() and disconnect() errors.

test(
  'send() after disconnect: ERR_IPC_CHANNEL_CLOSED via callback, or via an error event',
  { timeout: 20_000 },
  async (t) => {
    const results = {};
    for (const [name, forkFn] of Object.entries(IMPLS)) {
      const child = spawnChild(t, forkFn, LIFECYCLE, ['linger'], QUIET);
      await once(child, 'message');
      child.disconnect();
      const viaCallback = await new Promise((resolve) => {
        const ret = child.send(
          'late',
          mustCall(t, (err) => resolve({ ret, code: err.code, message: err.message })),
        );
      });
      const viaEvent = await new Promise((resolve) => {
        let ret;
        child.once(
          'error',
          mustCall(t, (err) => resolve({ ret, code: err.code, message: err.message, name: err.name })),
        );
        ret = child.send('late');
      });
      results[name] = { viaCallback, viaEvent };
      await untilDone(child, { noClose: name === 'node' });
    }
    assert.deepStrictEqual(results.forkline, results.node);
    assert.deepStrictEqual(results.forkline.viaCallback, {
      ret: false,
      code: 'ERR_IPC_CHANNEL_CLOSED',
      message: 'Channel closed',
    });
    assert.strictEqual(results.forkline.viaEvent.code, 'ERR_IPC_CHANNEL_CLOSED');
  },
);

test('disconnect() twice: error event ERR_IPC_DISCONNECTED, as Node', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, LIFECYCLE, ['linger'], QUIET);
    await once(child, 'message');
    const log = recordEvents(child, ['disconnect', 'error']);
    child.disconnect();
    const err = await new Promise((resolve) => {
      child.once('error', mustCall(t, resolve));
      child.disconnect();
    });
    results[name] = { code: err.code, message: err.message, name: err.name };
    await untilDone(child, { noClose: name === 'node' });
    results[name].log = log;
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.strictEqual(results.forkline.code, 'ERR_IPC_DISCONNECTED');
});

function thrown(fn) {
  try {
    fn();
  } catch (err) {
    return { name: err.name, code: err.code, message: err.message, string: String(err) };
  }
  assert.fail('did not throw');
}

test('send(undefined), send(Symbol()) and kill(unknown signal) throw as Node', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, LIFECYCLE, ['hang'], QUIET);
    await once(child, 'message');
    results[name] = {
      undef: thrown(() => child.send(undefined)),
      symbol: thrown(() => child.send(Symbol('s'))),
      fn: thrown(() => child.send(() => {})),
      bigint: thrown(() => child.send(1n)),
      signal: thrown(() => child.kill('SIGFOO')),
      signalNumber: thrown(() => child.kill(12345)),
      badOptions: thrown(() => child.send('x', null, 'not an object')),
    };
    child.kill('SIGKILL');
    await untilDone(child);
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.strictEqual(results.forkline.undef.code, 'ERR_MISSING_ARGS');
  assert.strictEqual(results.forkline.symbol.code, 'ERR_INVALID_ARG_TYPE');
  assert.strictEqual(results.forkline.signal.code, 'ERR_UNKNOWN_SIGNAL');
});

// ---------------------------------------------------------------------------------------------------------------
// Options.

async function readAll(stream) {
  stream.setEncoding('utf8');
  let out = '';
  for await (const chunk of stream) out += chunk;
  return out;
}

test('silent: true gives stdin/stdout/stderr streams', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, STDIO, [], { silent: true });
    assert.ok(child.stdin && child.stdout && child.stderr, name);
    assert.strictEqual(child.stdio[0], child.stdin);
    assert.strictEqual(child.stdio[1], child.stdout);
    assert.strictEqual(child.stdio[2], child.stderr);
    const message = once(child, 'message');
    const stdout = readAll(child.stdout);
    const stderr = readAll(child.stderr);
    child.stdin.end('to the child\n');
    const closed = whenClosed(child);
    results[name] = { message: (await message)[0], stdout: await stdout, stderr: await stderr, close: await closed };
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline, {
    message: { stdin: 'to the child\n' },
    stdout: 'hello stdout\n',
    stderr: 'hello stderr\n',
    close: [0, null],
  });
});

test("stdio arrays: 'pipe', 'inherit', 'ignore', numbers, with 'ipc' anywhere", { timeout: 20_000 }, async (t) => {
  const dir = tmpDir(t);
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const outFile = path.join(dir, `${name}.out`);
    const fd = fs.openSync(outFile, 'w');
    t.after(() => fs.closeSync(fd));
    // stdin piped, stdout to a file by fd number, stderr ignored, fd 3 ignored, the channel on fd 4.
    const child = spawnChild(t, forkFn, STDIO, [], { stdio: ['pipe', fd, 'ignore', 'ignore', 'ipc'] });
    assert.ok(child.stdin, name);
    assert.strictEqual(child.stdout, null, name);
    assert.strictEqual(child.stderr, null, name);
    assert.strictEqual(child.stdio.length, 5, name);
    const message = once(child, 'message');
    child.stdin.end('piped');
    const closed = whenClosed(child);
    results[name] = { message: (await message)[0], close: await closed, file: fs.readFileSync(outFile, 'utf8') };

    // 'inherit' and 'ignore' everywhere, the channel at fd 3.
    for (const stdio of [
      ['ignore', 'ignore', 'ignore', 'ipc'],
      ['inherit', 'ignore', 'ignore', 'ipc'],
      ['ignore', 'pipe', 'pipe', 'ipc'],
    ]) {
      const other = spawnChild(t, forkFn, INFO, ['x'], { stdio });
      if (stdio[1] === 'pipe') other.stdout.resume();
      if (stdio[2] === 'pipe') other.stderr.resume();
      assert.strictEqual(other.stdin, null, name);
      assert.strictEqual(other.stdout !== null, stdio[1] === 'pipe', name);
      const [info] = await once(other, 'message');
      assert.deepStrictEqual(info.argv, ['x'], name);
      assert.deepStrictEqual(await whenClosed(other), [0, null], name);
    }
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline, { message: { stdin: 'piped' }, close: [0, null], file: 'hello stdout\n' });
});

test(
  'stdio with two ipc throws ERR_IPC_ONE_PIPE, with none ERR_CHILD_PROCESS_IPC_REQUIRED',
  { timeout: 20_000 },
  (t) => {
    const results = {};
    for (const [name, forkFn] of Object.entries(IMPLS)) {
      results[name] = {
        two: thrown(() => spawnChild(t, forkFn, INFO, [], { stdio: ['pipe', 'pipe', 'pipe', 'ipc', 'ipc'] })),
        none: thrown(() => spawnChild(t, forkFn, INFO, [], { stdio: ['pipe', 'pipe', 'pipe'] })),
      };
    }
    assert.deepStrictEqual(results.forkline, results.node);
    assert.strictEqual(results.forkline.two.code, 'ERR_IPC_ONE_PIPE');
    assert.strictEqual(results.forkline.none.code, 'ERR_CHILD_PROCESS_IPC_REQUIRED');
  },
);

test(
  'execArgv, args, env, cwd reach the child as with Node; NODE_CHANNEL_FD is not in its env',
  { timeout: 20_000 },
  async (t) => {
    const dir = fs.realpathSync(tmpDir(t));
    const options = {
      ...QUIET,
      execArgv: ['--expose-gc'],
      env: { PATH: process.env.PATH, FORKLINE_TEST_VAR: 'héllo wörld' },
      cwd: dir,
      argv0: 'custom-argv0',
    };
    const args = ['a', 'b c', '', '--flag', 'ünï'];
    const infos = {};
    for (const [name, forkFn] of Object.entries(IMPLS)) {
      const child = spawnChild(t, forkFn, INFO, args, options);
      [infos[name]] = await once(child, 'message');
      assert.deepStrictEqual(await whenClosed(child), [0, null], name);
    }
    assert.deepStrictEqual(infos.forkline, infos.node);
    const info = infos.forkline;
    assert.deepStrictEqual(info.execArgv, ['--expose-gc']);
    assert.strictEqual(info.gc, 'function');
    assert.deepStrictEqual(info.argv, args);
    assert.strictEqual(info.testVar, 'héllo wörld');
    assert.strictEqual(info.hasChannelFd, false);
    assert.strictEqual(info.cwd, dir);
    assert.strictEqual(info.argv0, 'custom-argv0');
  },
);

test('default env, execArgv and cwd are inherited as with Node', { timeout: 20_000 }, async (t) => {
  const infos = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, INFO, [], QUIET);
    [infos[name]] = await once(child, 'message');
    await untilDone(child);
  }
  assert.deepStrictEqual(infos.forkline, infos.node);
  assert.strictEqual(infos.forkline.cwd, process.cwd());
  assert.strictEqual(infos.forkline.hasChannelFd, false);
});

test('AbortSignal: abort() gives an AbortError, then exit with killSignal, as Node', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    results[name] = {};
    for (const killSignal of [undefined, 'SIGKILL']) {
      const controller = new AbortController();
      const child = spawnChild(t, forkFn, LIFECYCLE, ['hang'], { ...QUIET, signal: controller.signal, killSignal });
      const log = recordEvents(child, ['error', 'exit', 'close']);
      const errors = [];
      child.on('error', (err) => errors.push({ name: err.name, code: err.code, cause: err.cause }));
      await once(child, 'message');
      controller.abort('why');
      await untilDone(child);
      results[name][killSignal ?? 'default'] = { log, errors, killed: child.killed };
    }
    // Already aborted before fork().
    const child = spawnChild(t, forkFn, LIFECYCLE, ['hang'], { ...QUIET, signal: AbortSignal.abort() });
    const log = recordEvents(child, ['error', 'exit', 'close']);
    await untilDone(child);
    results[name].preAborted = log;
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline.default.log, [
    ['error', 'ABORT_ERR'],
    ['exit', null, 'SIGTERM'],
    ['close', null, 'SIGTERM'],
  ]);
  assert.deepStrictEqual(results.forkline.SIGKILL.errors, [{ name: 'AbortError', code: 'ABORT_ERR', cause: 'why' }]);
});

test('timeout option kills the child with killSignal, as Node', { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, LIFECYCLE, ['hang'], { ...QUIET, timeout: 300, killSignal: 'SIGINT' });
    const log = recordEvents(child, ['message', 'exit', 'close', 'error']);
    await untilDone(child);
    // Whether the child said 'ready' within the 300 ms is up to the machine's load; the kill is what is tested.
    results[name] = { log: log.filter(([event]) => event !== 'message'), killed: child.killed };
    // A child that exits before its timeout is left alone.
    const quick = spawnChild(t, forkFn, LIFECYCLE, ['exit', '4'], { ...QUIET, timeout: 20_000 });
    assert.deepStrictEqual(await whenClosed(quick), [4, null], name);
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.deepStrictEqual(results.forkline.log, [
    ['exit', null, 'SIGINT'],
    ['close', null, 'SIGINT'],
  ]);
});

test("execPath that does not exist: 'error' ENOENT and 'close' (-2, null), as Node", { timeout: 20_000 }, async (t) => {
  const results = {};
  for (const [name, forkFn] of Object.entries(IMPLS)) {
    const child = spawnChild(t, forkFn, INFO, ['arg'], { execPath: '/nonexistent/node', ...QUIET });
    const log = recordEvents(child);
    const [err] = await once(child, 'error');
    await untilDone(child);
    await sleep(50);
    results[name] = {
      log: sorted(log),
      first: log[0],
      err: { message: err.message, errno: err.errno, code: err.code, syscall: err.syscall, path: err.path },
      spawnargs: err.spawnargs,
      pid: child.pid,
      exitCode: child.exitCode,
      connected: child.connected,
    };
  }
  assert.deepStrictEqual(results.forkline, results.node);
  assert.strictEqual(results.forkline.err.code, 'ENOENT');
  assert.deepStrictEqual(results.forkline.first, ['error', 'ENOENT']);
  assert.ok(results.forkline.log.includes(JSON.stringify(['close', -2, null])));
});

test(
  "a spawn that fails (execPath, cwd): 'error' → 'close' → 'disconnect', in Node's order",
  {
    timeout: 20_000,
  },
  async (t) => {
    for (const options of [{ execPath: '/nonexistent/node' }, { cwd: '/nonexistent/dir' }]) {
      const logs = {};
      for (const [name, forkFn] of Object.entries(IMPLS)) {
        const child = spawnChild(t, forkFn, INFO, [], { ...options, ...QUIET });
        logs[name] = recordEvents(child);
        await untilDone(child);
        await sleep(50);
      }
      assert.deepStrictEqual(logs.node, [['error', 'ENOENT'], ['close', -2, null], ['disconnect']]);
      assert.deepStrictEqual(logs.forkline, logs.node, JSON.stringify(options));
    }
  },
);

// ---------------------------------------------------------------------------------------------------------------
// ref/unref and the parent's own exit.

// Runs a parent fixture to its end; it prints the pid of a child it leaves running. Returns { result, pid }, the
// child killed when the test ends if it still runs then.
function runParent(t, args) {
  const result = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 10_000, killSignal: 'SIGKILL' });
  const pid = Number(result.stdout.trim());
  const orphan = processRef(pid);
  t.after(() => killQuietly(orphan));
  return { result, pid, orphan };
}

// The child (disconnect-marker.js) saw 'disconnect', wrote its marker and then left by itself.
async function assertDisconnectedAndGone(marker, pid, who) {
  await waitUntil(() => fs.existsSync(marker), 10_000, `${who}'s child to see 'disconnect'`);
  assert.strictEqual(fs.readFileSync(marker, 'utf8'), `disconnected ${pid}\n`);
  await waitUntil(() => !isAlive(pid), 10_000, `${who}'s child to exit`);
}

test('a parent that unrefs its child and channel exits by itself, as Node', { timeout: 30_000 }, (t) => {
  for (const impl of ['node', 'forkline']) {
    const { result, pid, orphan } = runParent(t, [fixture('parent-unref.js'), impl, 'unref']);
    assert.ok(pid > 0, `${impl}: no pid printed: ${result.stdout} ${result.stderr}`);
    assert.deepStrictEqual([result.status, result.signal, result.stderr], [0, null, ''], impl);
    // The orphan still runs.
    assert.ok(isAlive(pid), impl);
    killQuietly(orphan);
  }
});

test('a parent that does not unref stays alive while its child runs', { timeout: 30_000 }, async (t) => {
  for (const impl of ['node', 'forkline']) {
    const parent = spawn(process.execPath, [fixture('parent-unref.js'), impl, 'ref'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => killQuietly(parent));
    let out = '';
    parent.stdout.setEncoding('utf8');
    parent.stdout.on('data', (chunk) => (out += chunk));
    await waitUntil(() => out.includes('\n'), 10_000, 'the child pid');
    const pid = Number(out.trim());
    const orphan = processRef(pid);
    t.after(() => killQuietly(orphan));
    await sleep(500);
    assert.strictEqual(parent.exitCode, null, `${impl}: the parent exited`);
    assert.ok(isAlive(parent.pid), impl);
    assert.ok(isAlive(pid), impl);
    const exited = once(parent, 'exit');
    parent.kill('SIGKILL');
    await exited;
    killQuietly(orphan);
  }
});

test(
  "a parent that exits while its child runs: the child gets 'disconnect', as Node",
  { timeout: 30_000 },
  async (t) => {
    const dir = tmpDir(t);
    for (const impl of ['node', 'forkline']) {
      const marker = path.join(dir, `${impl}.marker`);
      const { result, pid } = runParent(t, [fixture('parent-exits.js'), impl, marker]);
      assert.deepStrictEqual([result.status, result.signal], [0, null], `${impl}: ${result.stderr}`);
      // Having seen 'disconnect', the child leaves by itself.
      await assertDisconnectedAndGone(marker, pid, impl);
    }
  },
);

test(
  "a worker thread that forks is terminated while its child runs: no crash, the child gets 'disconnect', as Node",
  { timeout: 30_000 },
  async (t) => {
    const dir = tmpDir(t);
    // Unless busyPoll is 0, the thread has an idle handle beside the channel's poll handle: both must be closed by
    // then (the default polls while it pays, a number always).
    for (const [impl, busyPoll] of [
      ['node', 'default'],
      ['forkline', 'default'],
      ['forkline', '0'],
      ['forkline', '50'],
    ]) {
      const marker = path.join(dir, `${impl}-${busyPoll}.marker`);
      const args = [fixture('worker-forks.js'), impl, marker, ...(busyPoll === 'default' ? [] : [busyPoll])];
      const { result, pid } = runParent(t, args);
      // The worker's teardown closes the channel's libuv handles after its napi environment is gone.
      assert.deepStrictEqual([result.status, result.signal, result.stderr], [0, null, ''], `${impl} ${busyPoll}`);
      await assertDisconnectedAndGone(marker, pid, impl);
    }
  },
);

test(
  'child.ref()/unref() and channel.ref()/unref() are callable at any time; channel.fd is a number',
  { timeout: 20_000 },
  async (t) => {
    const child = spawnChild(t, forklineFork, ECHO, [], QUIET);
    assert.strictEqual(typeof child.channel.fd, 'number');
    child.unref();
    child.channel.unref();
    child.ref();
    child.channel.ref();
    child.send('hi');
    assert.deepStrictEqual(await once(child, 'message'), ['hi', undefined]);
    child.on('error', mustNotCall());
    child.send('exit:0');
    assert.deepStrictEqual(await whenClosed(child), [0, null]);
    assert.strictEqual(child.channel, null);
    child.ref();
    child.unref();
  },
);

// tinypool destroys a pool right after replacing a worker: send() then kill() in one tick. Node's send() has written
// the bytes before kill() runs, so nothing fails; forkline must not fail either, whatever it batches.
test("send() then kill() in the same tick: no 'error', every child killed", { timeout: 60_000 }, async (t) => {
  for (const [impl, forkFn] of Object.entries(IMPLS)) {
    const children = [];
    for (let i = 0; i < 20; i++) {
      const child = spawnChild(t, forkFn, ECHO, [], QUIET);
      const log = recordEvents(child, ['error', 'exit']);
      // Half before the child is up (the bytes wait in the socket), half once it echoes.
      if (i % 2 === 1) {
        child.send('up?');
        await once(child, 'message');
      }
      child.send({ last: i });
      assert.strictEqual(child.kill(), true, `${impl}: kill() of child ${i}`);
      children.push({ child, log });
    }
    for (const { child, log } of children) {
      await whenClosed(child);
      assert.deepStrictEqual(log, [['exit', null, 'SIGTERM']], `${impl}: child ${child.pid}'s events`);
    }
  }
});

// Run in a fresh process per implementation: a deprecation warns once per process.
const CHANNEL_ALIAS_SCRIPT = `
const warnings = [];
process.on('warning', (warning) => warnings.push(warning.code));
const child = require(process.argv[1]).fork(process.argv[2], [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
const result = {
  has: '_channel' in child,
  same: child._channel === child.channel,
  enumerable: Object.keys(child).includes('_channel'),
};
child._channel;
child.on('close', () => {
  result.afterClose = [child._channel, child.channel];
  setImmediate(() => console.log(JSON.stringify({ ...result, warnings })));
});
child.send('exit:0');
`;

test(
  'child._channel is the deprecated alias of child.channel (DEP0129, once), null once closed; gone where Node dropped it',
  { timeout: 20_000 },
  () => {
    const results = {};
    for (const [impl, module] of [
      ['node', 'node:child_process'],
      ['forkline', path.join(__dirname, '..')],
    ]) {
      const out = spawnSync(process.execPath, ['--no-warnings', '-e', CHANNEL_ALIAS_SCRIPT, module, ECHO], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      assert.strictEqual(out.status, 0, `${impl}: ${out.stderr}`);
      results[impl] = JSON.parse(out.stdout);
    }
    // Node 26 dropped the alias (DEP0129's end of life); before, it warned once.
    const alias = results.node.has;
    assert.deepStrictEqual(results.node, {
      has: alias,
      same: alias,
      enumerable: false,
      afterClose: [null, null],
      warnings: alias ? ['DEP0129'] : [],
    });
    assert.deepStrictEqual(results.forkline, results.node);
  },
);

// Node's test-child-process-send-returns-boolean: a child that exits at once, two handles and two messages sent to
// it. What is queued behind the first handle is never acknowledged; whatever becomes of it, a program with no
// 'error' listener must not crash (Node emits no 'error' for a write that fails after send() returned). Run in a
// fresh process per implementation, so that a crash shows as its exit status.
const SEND_RETURNS_SCRIPT = `
const net = require('node:net');
const { fork, spawn } = require(process.argv[1]);
const empty = process.argv[2];
const withCallbacks = process.argv[3] === 'callbacks';
const result = { returns: [], callbacks: {} };
const n = fork(empty, [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
result.returns.push(n.send({ hello: 'world' }));
const s = spawn(process.execPath, [empty], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
let handle = null;
const cb = (name) => withCallbacks ? (err) => (result.callbacks[name] = (result.callbacks[name] || []).concat(err ? err.code : null)) : undefined;
s.on('exit', () => {
  handle.close();
  setTimeout(() => console.log(JSON.stringify(result)), 200);
});
net.createServer().listen(0, '127.0.0.1', function () {
  handle = this._handle;
  result.returns.push(s.send('one', handle, cb('one')), s.send('two', handle, cb('two')));
  result.returns.push(s.send('three', cb('three')), s.send('four', cb('four')));
});
`;

test("sends queued behind an unacknowledged handle to a child that exits: no 'error', no crash, as Node", async (t) => {
  const EMPTY = fixture('exit-at-once.js');
  const results = {};
  for (const [impl, module] of [
    ['node', 'node:child_process'],
    ['forkline', path.join(__dirname, '..')],
  ]) {
    for (const mode of ['bare', 'callbacks']) {
      const out = spawnSync(process.execPath, ['-e', SEND_RETURNS_SCRIPT, module, EMPTY, mode], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      assert.strictEqual(out.status, 0, `${impl} (${mode}): exit ${out.status}, ${out.stderr}`);
      results[`${impl} ${mode}`] = JSON.parse(out.stdout);
    }
  }
  // send()'s return values: true, then true for the handle in flight and the first one queued behind it, false
  // for the rest (Node's `_handleQueue.length === 1`).
  assert.deepStrictEqual(results['node bare'].returns, [true, true, true, false, false]);
  assert.deepStrictEqual(results['forkline bare'], results['node bare']);
  // With callbacks: the first handle's write succeeded; what was held behind it may fail once the child is gone,
  // and then its callback says so (Node drops those sends without a word), once each.
  const { callbacks } = results['forkline callbacks'];
  assert.deepStrictEqual(callbacks.one, [null]);
  for (const name of ['two', 'three', 'four']) {
    const got = callbacks[name] ?? [];
    assert.ok(got.length <= 1, `${name}'s callback at most once: ${JSON.stringify(got)}`);
    for (const code of got) assert.ok([null, 'EPIPE', 'ECONNRESET', 'ERR_IPC_CHANNEL_CLOSED'].includes(code), code);
  }
});

// Node's ChildProcess can be collected once it has closed; forkline's native end held its JS wake function (and
// through it the ChildProcess) from Rust until it retires at 'close'.
test('a ChildProcess that has closed is collected, as Node', { timeout: 30_000 }, async () => {
  const gc = exposedGc();
  const EMPTY = fixture('exit-at-once.js');
  for (const [name, fork] of Object.entries(IMPLS)) {
    const refs = [];
    await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise((resolve) => {
            const child = fork(EMPTY);
            refs.push(new WeakRef(child));
            child.on('close', resolve);
          }),
      ),
    );
    // Collections run between turns: whatever the close's own callbacks still held is let go by then.
    for (let i = 0; i < 80 && refs.some((ref) => ref.deref()); i++) {
      await sleep(25);
      gc();
    }
    assert.strictEqual(refs.filter((ref) => ref.deref()).length, 0, `${name}: children still reachable after 'close'`);
  }
});

// In Node 'exit' comes from the process handle, an I/O callback of its own, so the ticks and promise jobs of what
// came before it (the last messages, 'disconnect') run first. forkline can read the EOF after the exit is known
// (here: JS is blocked while the child exits), and then hands both to JS in one batch.
test(
  "'exit' comes after the promise jobs of 'disconnect' and the last messages, as Node",
  { timeout: 30_000 },
  async () => {
    for (const [name, fork] of Object.entries(IMPLS)) {
      const child = fork(fixture('burst-exit.js'), ['1']);
      child.once('message', () => blockThread(1000));
      await new Promise((resolve, reject) => {
        child.on('disconnect', async () => {
          await null;
          if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`${name}: 'exit' came first`));
          else child.once('exit', resolve);
        });
      });
    }
  },
);
