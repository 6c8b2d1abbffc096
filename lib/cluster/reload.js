'use strict';

// cluster.reload(): a rolling restart. Each worker alive now is replaced by a new one, which must be serving
// (listening, if the old one was) before the old one is disconnected, so that a server never stops accepting. The
// next replacement starts once the old worker has exited; one still running `timeout` ms after its disconnect is
// killed. Reloads asked for while one runs queue behind it. From the moment its replacement is forked, the primary
// keeps a copy of each connection it hands the old worker (`hold`): a Node 26 worker closes the connections that
// have not sent a request yet when it disconnects, and those it never touched go to the others once it has exited.

const { makeError } = require('../errors');
const { validateObject } = require('../validators');
const { kEnv, kRestarts } = require('./worker');
const debug = require('../debug');

const RELOAD_TIMEOUT = 10_000;

let reloading = Promise.resolve();

function rollingReload(cluster, options, callback, hold) {
  if (typeof options === 'function') {
    callback = options;
    options = undefined;
  }
  if (options != null) validateObject(options, 'options');
  const timeout = options?.timeout ?? RELOAD_TIMEOUT;
  if (!Number.isInteger(timeout) || timeout < 0) {
    throw makeError('ERR_OUT_OF_RANGE', 'options.timeout', 'a non-negative integer', timeout);
  }
  const run = reloading.then(async () => {
    debug.reload('start');
    for (const old of Object.values(cluster.workers)) {
      if (old.isDead() || !old.isConnected() || old.exitedAfterDisconnect) continue;
      const fresh = cluster.fork(old[kEnv]);
      fresh[kRestarts] = old[kRestarts];
      debug.reload('replace', old, fresh);
      hold(old, true);
      try {
        await workerReached(fresh, old.state === 'listening' ? 'listening' : 'online');
      } catch (err) {
        hold(old, false);
        throw err;
      }
      const exited = new Promise((resolve) => old.once('exit', resolve));
      old.disconnect();
      const killer = setTimeout(() => old.destroy(), timeout);
      await exited;
      clearTimeout(killer);
    }
    debug.reload('done');
  });
  reloading = run.catch(() => {});
  if (typeof callback === 'function') run.then(() => callback(null), callback);
  return run;
}

function workerReached(worker, event) {
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      worker.off('exit', onExit);
      resolve();
    };
    const onExit = (code, signal) => {
      worker.off(event, onEvent);
      const err = new Error(`worker ${worker.id} exited (${signal || code}) before it was ${event}`);
      err.code = 'FORKLINE_RELOAD_FAILED';
      reject(err);
    };
    worker.once(event, onEvent);
    worker.once('exit', onExit);
  });
}

module.exports = { rollingReload };
