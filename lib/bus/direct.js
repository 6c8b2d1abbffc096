'use strict';

// A worker's own broker connection for publishing (`directPublish: true` in the primary's bus settings): the worker
// publishes to the broker itself instead of through its primary, one IPC hop and the gateway's work less on the way,
// for one more connection per worker. Every subscriber, on its own host too, gets the message through the broker
// (the pid line marks it: lib/bus/batches.js), so nothing reaches them while the broker is away. The rest is the
// gateway's: a tick's publishes to one topic leave as one broker message, and while the broker is away they wait in
// a bounded queue (lib/bus/pending.js), then reject with FORKLINE_BUS_UNAVAILABLE.

const process = require('node:process');
const { makeError } = require('../errors');
const { PublishBatches, brokerText, directPid } = require('./batches');
const { BrokerQueue } = require('./pending');

class DirectPublisher {
  #settings;
  #transport;
  #pending;
  #batches;

  // `settings`: what the gateway sent (lib/bus/gateway.js #directSettings).
  constructor(settings) {
    this.#settings = settings;
    const { RedisTransport } = require('./transports/redis');
    const transport = new RedisTransport(settings, { publishOnly: true });
    this.#transport = transport;
    this.#pending = new BrokerQueue(transport, settings);
    transport.on('ready', () => this.#pending.flush());
    transport.on('connectionError', () => {});
    transport.connect().catch(() => {}); // ioredis keeps trying; publishes wait in the bounded queue.
    this.#batches = new PublishBatches(({ topic, texts }) => {
      const text = brokerText(settings.host, directPid(process.pid), texts);
      return this.#pending.run(() => transport.publish(`${settings.namespace}:t:${topic}`, text));
    });
  }

  get maxMessageSize() {
    return this.#settings.maxMessageSize;
  }

  publish(topic, m) {
    if (this.#transport === null) return Promise.reject(makeError('FORKLINE_BUS_CLOSED', 'The bus was closed'));
    return this.#batches.add(topic, process.pid, m);
  }

  // On 'disconnect' from the primary: the connection must not keep the worker alive.
  close() {
    const transport = this.#transport;
    if (transport === null) return;
    this.#transport = null;
    this.#pending.close(makeError('FORKLINE_BUS_CLOSED', 'The bus was closed'));
    transport.close().catch(() => {});
  }
}

module.exports = { DirectPublisher };
