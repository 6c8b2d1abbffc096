'use strict';

// Broker operations of one set of connections (a gateway's, or a worker's direct publisher's): run at once while the
// transport is ready, else held in a bounded queue (maxPending operations, each at most pendingTimeout ms) and run in
// order when it is back; past either bound they reject with FORKLINE_BUS_UNAVAILABLE. A failure that means "no
// usable broker" (the connection went, a failover's reply) becomes FORKLINE_BUS_UNAVAILABLE too; a reply error that
// is the caller's stays as it is.

const { makeError } = require('../errors');

class BrokerQueue {
  #transport;
  #maxPending;
  #pendingTimeout;
  #held = [];

  constructor(transport, { maxPending, pendingTimeout }) {
    this.#transport = transport;
    this.#maxPending = maxPending;
    this.#pendingTimeout = pendingTimeout;
  }

  run(op) {
    if (this.#transport.ready && this.#held.length === 0) return op().catch((err) => Promise.reject(this.#map(err)));
    return new Promise((resolve, reject) => {
      if (this.#held.length >= this.#maxPending) {
        return reject(makeError('FORKLINE_BUS_UNAVAILABLE', `${this.#maxPending} operations already wait for it`));
      }
      const item = { op, resolve, reject, timer: null };
      item.timer = setTimeout(() => {
        const at = this.#held.indexOf(item);
        if (at !== -1) this.#held.splice(at, 1);
        reject(makeError('FORKLINE_BUS_UNAVAILABLE', `no connection within ${this.#pendingTimeout} ms`));
      }, this.#pendingTimeout);
      this.#held.push(item);
    });
  }

  // The transport is (back) up: what waited runs, in order (the command connection pipelines one tick's commands).
  flush() {
    for (const item of this.#held.splice(0)) {
      clearTimeout(item.timer);
      item.op().then(item.resolve, (err) => item.reject(this.#map(err)));
    }
  }

  close(err) {
    for (const item of this.#held.splice(0)) {
      clearTimeout(item.timer);
      item.reject(err);
    }
  }

  #map(err) {
    if ((err && err.code === 'FORKLINE_BUS_UNAVAILABLE') || !this.#transport.isUnavailable(err)) return err;
    return makeError('FORKLINE_BUS_UNAVAILABLE', err && err.message);
  }
}

module.exports = { BrokerQueue };
