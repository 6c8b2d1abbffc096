'use strict';

// Cluster workers on the forkline runtime (#15): forkline's primary with `settings.childRuntime: 'forkline'` (or
// FORKLINE_CHILD_RUNTIME=forkline) forks workers whose channel is forkline's, and the runtime starts Node's worker
// side on it; Node's bootstrap never sees NODE_UNIQUE_ID. The rest of Node's cluster behaviour with such workers is
// cluster.test.js and cli.test.js run again under FORKLINE_CHILD_RUNTIME=forkline (npm run test:runtime).
// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  "settings.childRuntime 'forkline': workers run on forkline's channel, as Node's workers":
    "the child runtime (childRuntime: 'forkline'); the portable backend throws FORKLINE_UNSUPPORTED (portable.test.js)",
});
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const { fixture, killQuietly, BACKEND } = require('./helpers');

// Runs fixtures/cluster-runtime.js with `setting` and `env` on top of ours; resolves with its JSON result. The primary
// and its workers are killed when the test ends.
function runPrimary(t, setting, env = {}) {
  const childEnv = { ...process.env, ...env };
  for (const key of ['NODE_UNIQUE_ID', 'NODE_CHANNEL_FD', 'NODE_TEST_CONTEXT', 'NODE_OPTIONS']) delete childEnv[key];
  if (!('FORKLINE_CHILD_RUNTIME' in env)) delete childEnv.FORKLINE_CHILD_RUNTIME;
  const primary = spawn(process.execPath, [fixture('cluster-runtime.js'), 'forkline', setting], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => killQuietly(primary));
  let stdout = '';
  let stderr = '';
  primary.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  primary.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => {
    primary.on('close', (code) => {
      let result;
      try {
        result = JSON.parse(stdout.trim().split('\n').pop());
      } catch {
        // reported below
      }
      assert.ok(code === 0 && result && !result.error, `primary failed (${code}): ${stdout}\n${stderr}`);
      resolve(result);
    });
  });
}

// What the fixture reports for two workers on `runtime`.
function expected(runtime) {
  const forkline = runtime === 'forkline';
  const worker = (id) => ({
    forklineChannel: forkline,
    isWorker: true,
    sameAsNodeCluster: true,
    workerId: id,
    workerState: 'online',
    // Node deletes NODE_UNIQUE_ID (and NODE_CHANNEL_FD) once it used them; the runtime deletes its own too.
    envKeys: [],
    grandchild: { isPrimary: true, keys: [] },
  });
  const atExec = forkline ? ['FORKLINE_CHANNEL_FD', 'FORKLINE_UNIQUE_ID'] : ['NODE_CHANNEL_FD', 'NODE_UNIQUE_ID'];
  return {
    workers: [worker(1), worker(2)],
    envAtExec: [atExec, atExec],
    allAnswered: true,
    answeredBy: [0, 1],
    exits: [
      [0, null],
      [0, null],
    ],
  };
}

test("settings.childRuntime 'forkline': workers run on forkline's channel, as Node's workers", async (t) => {
  assert.deepStrictEqual(await runPrimary(t, 'forkline'), expected('forkline'));
});

test("workers stay on Node's channel by default, and with childRuntime 'node'", async (t) => {
  assert.deepStrictEqual(await runPrimary(t, 'default'), expected('node'));
  assert.deepStrictEqual(await runPrimary(t, 'node', { FORKLINE_CHILD_RUNTIME: 'forkline' }), expected('node'));
});

// The portable backend has no runtime: there the process default falls back to Node's channel (docs/api.md).
test("FORKLINE_CHILD_RUNTIME=forkline puts workers on the forkline runtime (portable: on Node's channel)", async (t) => {
  const runtime = BACKEND === 'native' ? 'forkline' : 'node';
  assert.deepStrictEqual(await runPrimary(t, 'default', { FORKLINE_CHILD_RUNTIME: 'forkline' }), expected(runtime));
});

test("a worker that never yields still says 'online' and can be killed, on either runtime, as Node's", async (t) => {
  const run = (impl, setting) =>
    new Promise((resolve, reject) => {
      const env = { ...process.env };
      for (const key of ['NODE_UNIQUE_ID', 'NODE_CHANNEL_FD', 'NODE_TEST_CONTEXT', 'FORKLINE_CHILD_RUNTIME']) {
        delete env[key];
      }
      const primary = spawn(process.execPath, [fixture('cluster-kill-infinite-loop.js'), impl, setting], {
        env,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      t.after(() => killQuietly(primary));
      let stdout = '';
      primary.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
      primary.on('error', reject);
      primary.on('close', () => resolve(JSON.parse(stdout.trim().split('\n').pop())));
    });
  const node = await run('node', 'default');
  assert.deepStrictEqual(node, { events: ['online', ['exit', null, 'SIGTERM']] });
  // The portable backend has no child runtime.
  if (BACKEND === 'native') assert.deepStrictEqual(await run('forkline', 'forkline'), node);
  assert.deepStrictEqual(await run('forkline', 'node'), node);
});
