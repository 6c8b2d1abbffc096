'use strict';

// Requests in the host's gateway: a request goes into its topic's request stream (lib/bus/queues.js, or the local
// backlog), a responder anywhere takes it, and the reply comes back on the asking host's broker channel.

const { makeError } = require('../errors');
const { validateName, checkSize, errorToWire, errorFromWire } = require('./codec');

// Request streams keep about this many entries (requests are acknowledged as soon as they are read).
const REQUEST_STREAM_LEN = 10_000;

class Requests {
  #gw;
  #queues;
  // Request id -> { resolve, reject, timer } of requests made on this host.
  #requests = new Map();
  #ids = 0;

  // `gw`: what the gateway shares with its parts (lib/bus/gateway.js); `queues`: a Queues.
  constructor(gw, queues) {
    this.#gw = gw;
    this.#queues = queues;
  }

  get pending() {
    return this.#requests.size;
  }

  request(topic, m, timeout) {
    validateName(topic, 'topic');
    checkSize(m, this.#gw.config.maxMessageSize);
    if (!Number.isInteger(timeout) || timeout < 1) {
      throw makeError('ERR_OUT_OF_RANGE', 'options.timeout', 'a positive integer', timeout);
    }
    const rid = `${++this.#ids}`;
    const d = Date.now() + timeout;
    const host = this.#gw.host;
    const transport = this.#gw.transport;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#requests.delete(rid);
        // Local-only: take it out of the backlog, or a topic nobody answers would keep every request.
        if (transport === null) this.#queues.withdrawLocal('req', topic, rid);
        reject(makeError('FORKLINE_BUS_TIMEOUT', topic, timeout));
      }, timeout);
      this.#requests.set(rid, { resolve, reject, timer });
      if (transport === null) {
        this.#queues.pushLocal('req', topic, { rid, m, r: host, d });
        return;
      }
      const fields = { m, r: host, rid, d };
      const stream = this.#queues.key('req', topic);
      this.#gw
        .remote(() => transport.add(stream, fields, REQUEST_STREAM_LEN))
        .catch((err) => this.#settle(rid, { e: errorToWire(err), local: true }));
    });
  }

  // A responder on this host finished `job`.
  answer(job, reply) {
    if (job.r === this.#gw.host) return this.#settle(job.rid, reply);
    const text = JSON.stringify({ rid: job.rid, ...reply });
    const transport = this.#gw.transport;
    this.#gw.remote(() => transport.publish(this.#gw.channel('reply', job.r), text)).catch(() => {});
  }

  // A reply from another host, on this host's reply channel. Throws if it does not decode.
  onReply(text) {
    const reply = JSON.parse(text);
    this.#settle(String(reply.rid), reply);
  }

  #settle(rid, reply) {
    const request = this.#requests.get(rid);
    if (request === undefined) return;
    this.#requests.delete(rid);
    clearTimeout(request.timer);
    if (reply.e !== undefined) request.reject(errorFromWire(reply.e, !reply.local));
    else request.resolve(reply.m);
  }

  close(err) {
    for (const request of this.#requests.values()) {
      clearTimeout(request.timer);
      request.reject(err);
    }
    this.#requests.clear();
  }
}

module.exports = { Requests };
