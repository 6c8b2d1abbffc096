'use strict';

const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
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
