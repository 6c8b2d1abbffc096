'use strict';

const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { fork } = require('..');

const ECHO = path.join(__dirname, 'fixtures', 'echo.js');

test('a plain node child echoes a message and exits with its code', { timeout: 20_000 }, async (t) => {
  const child = fork(ECHO);
  t.after(() => child.kill('SIGKILL'));
  const events = [];
  child.on('spawn', () => events.push('spawn'));
  child.on('disconnect', () => events.push('disconnect'));
  const reply = await new Promise((resolve) => {
    child.once('message', resolve);
    child.send({ hello: 'wörld 😀', n: [1, 2, 3] });
  });
  assert.deepStrictEqual(reply, { hello: 'wörld 😀', n: [1, 2, 3] });
  child.send('exit:7');
  const [code, signal] = await new Promise((resolve) => child.on('close', (...args) => resolve(args)));
  assert.deepStrictEqual([code, signal], [7, null]);
  assert.deepStrictEqual(events, ['spawn', 'disconnect']);
  assert.strictEqual(child.connected, false);
});

test('a burst is read off the JS thread, then quiet round trips still flow', { timeout: 30_000 }, async (t) => {
  const child = fork(path.join(__dirname, 'fixtures', 'burst.js'));
  t.after(() => child.kill('SIGKILL'));
  for (let round = 0; round < 3; round++) {
    let expected = 0;
    await new Promise((resolve, reject) => {
      const onMessage = (msg) => {
        if (msg.i !== expected) reject(new Error(`message ${msg.i} arrived where ${expected} was due`));
        if (++expected === 50_000) {
          child.off('message', onMessage);
          resolve();
        }
      };
      child.on('message', onMessage);
      child.send({ burst: 50_000 });
    });
    for (let i = 0; i < 200; i++) {
      const reply = await new Promise((resolve) => {
        child.once('message', resolve);
        child.send({ ping: i });
      });
      assert.deepStrictEqual(reply, { ping: i });
    }
  }
});

// A parent that only forks loads neither node:child_process's machinery nor node:cluster: its re-exports (exec,
// spawnSync, ...) and cluster load on first use, and are then Node's own functions, from CommonJS and from ESM.
// (The portable backend forks with node:child_process itself, so there only node:cluster waits.)
test('require("forkline") loads node:child_process and node:cluster only when used', { timeout: 20_000 }, () => {
  const root = JSON.stringify(path.join(__dirname, '..'));
  const loaded = `const has = (m) => process.moduleLoadList.includes('NativeModule ' + m); const out = []`;
  const cjs = `${loaded}; const f = require(${root}); const child = f.fork(${JSON.stringify(ECHO)});
    out.push(has('child_process'), has('cluster'));
    child.on('message', () => { child.kill(); out.push(has('child_process'));
      out.push(f.execFileSync === require('node:child_process').execFileSync, has('child_process'));
      out.push(typeof f.cluster.fork, has('cluster')); console.log(f.backend, out.join(' ')); });
    child.send('hi');`;
  const [backend, ...loads] = execFileSync(process.execPath, ['-e', cjs], { encoding: 'utf8', timeout: 15_000 })
    .trim()
    .split(' ');
  const early = String(backend === 'portable');
  assert.deepStrictEqual(loads, [early, 'false', early, 'true', 'true', 'function', 'true'], backend);
  const names = ['spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync'];
  const esm = `import { ${names.join(', ')} } from ${JSON.stringify(`file://${path.join(__dirname, '..', 'index.js')}`)};
    import * as cp from 'node:child_process';
    console.log([${names.join(', ')}].every((fn, i) => fn === cp[${JSON.stringify(names)}[i]]))`;
  assert.strictEqual(
    execFileSync(process.execPath, ['--input-type=module', '-e', esm], { encoding: 'utf8', timeout: 15_000 }),
    'true\n',
  );
});
