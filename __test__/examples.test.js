'use strict';

// Runs every example as a user would, `node <file> [args]` from examples/ (short forms where one takes long), and
// checks what it prints, so that an example that rots fails CI. Each runs as the leader of a process group of its
// own: once it has exited, the group must be empty (no child, worker or server left behind), and it is killed
// whole if the example overruns its time or the test fails.

const assert = require('node:assert');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { test } = require('node:test');
const { redisServerPath } = require('./redis-server');
const { sleep } = require('./helpers');

const EXAMPLES = path.join(__dirname, '..', 'examples');
const HAVE_REDIS = redisServerPath() !== null;

// One line per example: its command line (after `node`, run in examples/), then a check of its stdout.
example('demo.js --quick', checkDemo);
example('cluster-http.js --quick', checkClusterHttp);
example('job-queue.js --quick', checkJobQueue);
example('handles.js --quick', checkHandles);
example('bus-demo.js', checkBusDemo);

function checkDemo(out) {
  assert.match(out, /^\s+node:child_process\s+forkline\s+forkline\/node$/m);
  const rows = [...out.matchAll(/^(\S.*?)\s{2,}([\d,.]+)\s+([\d,.]+)\s+(\d+\.\d\d)x$/gm)].map((row) => row[1]);
  assert.strictEqual(rows.length, 4, 'four rows, each with both numbers and their ratio');
  for (const [i, what] of ['round trip', 'parent → child', 'child → parent', '1 MB'].entries()) {
    assert.ok(rows[i].startsWith(what), `row ${i}: ${rows[i]}`);
  }
  assert.match(out, /Every answer checked, the same from both/);
}

function checkClusterHttp(out) {
  assert.match(out, /cluster\.reload\(\): pids \d+, \d+ replaced by \d+, \d+ in \d+ ms/);
  const [, served, after, byOld] =
    /requests served: (\d+) \(.*, (\d+) after it, (\d+) of those by an old worker\)/.exec(out);
  assert.ok(Number(served) > 0 && Number(after) > 0, `requests served: ${served}, after the reload: ${after}`);
  assert.strictEqual(Number(byOld), 0);
  assert.match(out, /^requests failed: 0$/m);
}

function checkJobQueue(out) {
  if (!HAVE_REDIS) {
    if (process.env.CI) assert.fail('redis-server is not on PATH (CI must install it: see .ci/run)');
    assert.match(out, /needs redis-server on PATH.*Skipped/);
    return;
  }
  assert.match(out, /^host-a: a forkline cluster, workers \d+, \d+/m);
  assert.match(out, /^host-b: a forkline cluster, workers \d+, \d+/m);
  assert.match(out, /^jobs done: 8 of 8, each once \(host-a \d+, host-b \d+\)$/m);
  assert.match(out, /^job 3 threw on attempt 1, done on attempt 2 by host-[ab]$/m);
}

function checkHandles(out) {
  assert.match(out, /^20 connections handed over; answered by child \d+: [1-9]\d*, child \d+: [1-9]\d*; failed: 0$/m);
}

function checkBusDemo(out) {
  const lines = (pattern) => [...out.matchAll(pattern)];
  assert.strictEqual(lines(/\] broadcast: \{ note: 'hello from the primary of /g).length, 3);
  assert.strictEqual(lines(/\] news from \S+: worker \d is up$/gm).length, 9, 'three news, each to three workers');
  const squares = lines(/\] (\d)² = (\d+)$/gm).map(([, n, square]) => [Number(n), Number(square)]);
  assert.deepStrictEqual(squares.sort(), [
    [1, 1],
    [2, 4],
    [3, 9],
  ]);
  const jobs = lines(/\] job (\d) \(attempt 1\)$/gm).map(([, n]) => Number(n));
  assert.deepStrictEqual(jobs.sort(), [1, 2, 3]);
}

function example(commandLine, check, { timeout = 30_000 } = {}) {
  test(`node examples/${commandLine}`, { timeout: timeout + 10_000 }, async (t) => {
    const child = spawn(process.execPath, commandLine.split(' '), {
      cwd: EXAMPLES,
      env: withoutBusUrl(process.env),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // a process group of its own, the example's children in it
    });
    t.after(() => killGroup(child.pid));
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => killGroup(child.pid), timeout);
    const [code, signal] = await new Promise((resolve) => child.on('close', (...args) => resolve(args)));
    clearTimeout(timer);
    const output = `stdout:\n${stdout}\nstderr:\n${stderr}`;
    assert.deepStrictEqual([code, signal], [0, null], `exit code and signal\n${output}`);
    try {
      check(stdout);
    } catch (err) {
      err.message += `\n${output}`;
      throw err;
    }
    assert.ok(await groupEmpties(child.pid, 5000), `processes of the example still alive after it exited\n${output}`);
  });
}

// A bus URL in the developer's environment would send bus-demo.js to that broker.
function withoutBusUrl(env) {
  const copy = { ...env };
  delete copy.FORKLINE_BUS_URL;
  return copy;
}

function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function groupEmpties(pgid, ms) {
  const deadline = Date.now() + ms;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

function killGroup(pgid) {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}
