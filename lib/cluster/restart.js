'use strict';

// forkline's restart policy (`settings.restart: true | { maxRestarts, windowMs }`): a worker that dies on its own
// is forked again, unless too many died lately; then the cluster emits 'giveup', once, and restarts no more.

const { kEnv, kNoRestart, kRestarts } = require('./worker');
const debug = require('../debug');

const RESTART_DEFAULTS = { maxRestarts: 5, windowMs: 60_000 };

// The restart settings in force, or null when workers are not restarted.
function restartSettings(settings) {
  const restart = settings.restart;
  if (!restart) return null;
  return { ...RESTART_DEFAULTS, ...(typeof restart === 'object' ? restart : {}) };
}

class Restarts {
  #deaths = [];
  #gaveUp = false;
  #stopped = false;

  // cluster.disconnect(): the workers are meant to go.
  stop() {
    this.#stopped = true;
  }

  // Called on every worker's exit.
  onExit(cluster, worker) {
    const restart = restartSettings(cluster.settings);
    if (!restart || this.#stopped || this.#gaveUp) return;
    if (worker.exitedAfterDisconnect || worker[kNoRestart]) return;
    const now = Date.now();
    this.#deaths = this.#deaths.filter((t) => now - t < restart.windowMs);
    this.#deaths.push(now);
    if (this.#deaths.length > restart.maxRestarts) {
      this.#gaveUp = true;
      debug.restart(worker, this.#deaths.length, true);
      cluster.emit('giveup', worker, this.#deaths.length);
      return;
    }
    debug.restart(worker, this.#deaths.length);
    cluster.fork(worker[kEnv])[kRestarts] = (worker[kRestarts] || 0) + 1;
  }
}

module.exports = { RESTART_DEFAULTS, restartSettings, Restarts };
