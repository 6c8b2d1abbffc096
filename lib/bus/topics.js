'use strict';

// Pub/sub in the host's gateway: which endpoints listen to which topic (one broker subscription per topic, however
// many listeners), publishing, delivering what the broker brings, and cluster.broadcast().
//
// Wire form of a published message (broker channel `<ns>:t:<topic>`, or `<ns>:broadcast`): `<host>\n<pid>\n<JSON>`;
// the JSON text is what the publisher encoded, passed on unparsed except for one check per host.

const process = require('node:process');
const { validateName, encode, checkSize } = require('./codec');
const { sendEncoded } = require('../channel');

class Topics {
  #gw;
  // topic → Set<Endpoint>
  #topics = new Map();

  // `gw`: what the gateway shares with its parts (lib/bus/gateway.js).
  constructor(gw) {
    this.#gw = gw;
  }

  async subscribe(ep, topic) {
    validateName(topic, 'topic');
    ep.topics.add(topic);
    let eps = this.#topics.get(topic);
    if (eps === undefined) {
      eps = new Set();
      this.#topics.set(topic, eps);
    }
    eps.add(ep);
    const transport = this.#gw.transport;
    if (eps.size === 1 && transport !== null) {
      // While the broker is away the subscription waits in ioredis's own queue; local delivery works meanwhile.
      const subscribed = transport.subscribe(this.#gw.channel('t', topic));
      if (transport.ready) await subscribed;
      else subscribed.catch(() => {});
    }
  }

  async unsubscribe(ep, topic) {
    ep.topics.delete(topic);
    const eps = this.#topics.get(topic);
    if (eps === undefined || !eps.delete(ep) || eps.size > 0) return;
    this.#topics.delete(topic);
    const transport = this.#gw.transport;
    if (transport !== null) await transport.unsubscribe(this.#gw.channel('t', topic)).catch(() => {});
  }

  detach(ep) {
    for (const topic of [...ep.topics]) this.unsubscribe(ep, topic);
  }

  async publish(ep, topic, m) {
    validateName(topic, 'topic');
    checkSize(m, this.#gw.config.maxMessageSize);
    this.#deliver(topic, m, this.#gw.host, ep.pid);
    const transport = this.#gw.transport;
    if (transport !== null) {
      const text = `${this.#gw.host}\n${ep.pid}\n${m}`;
      await this.#gw.remote(() => transport.publish(this.#gw.channel('t', topic), text));
    }
  }

  // Workers get the value (their channel encodes it once more anyway, and they then parse once); this process's
  // own listeners get the text, so that no listener here can change what the workers get.
  #deliver(topic, m, h, p, value) {
    const eps = this.#topics.get(topic);
    if (eps === undefined) return;
    let toWorker;
    for (const ep of eps) {
      if (ep === this.#gw.local) ep.send({ t: 'msg', topic, m, h, p });
      else ep.send((toWorker ??= { t: 'msg', topic, v: value === undefined ? JSON.parse(m) : value, h, p }));
    }
  }

  // cluster.broadcast(): every worker of every host gets `message` as a plain 'message'.
  async broadcast(message) {
    const m = encode(message);
    checkSize(m, this.#gw.config.maxMessageSize);
    this.#sendToWorkers(message);
    const transport = this.#gw.transport;
    if (transport !== null) {
      const text = `${this.#gw.host}\n${process.pid}\n${m}`;
      await this.#gw.remote(() => transport.publish(this.#gw.channel('broadcast'), text));
    }
  }

  // A plain message (not internal): encoded once for them all.
  #sendToWorkers(message) {
    const memo = new Map();
    for (const worker of this.#gw.workers) sendEncoded(worker.process, message, memo);
  }

  // A message from the broker on topic `topic` (undefined: a broadcast). Throws if it does not decode.
  onBrokerMessage(topic, text) {
    const first = text.indexOf('\n');
    const second = text.indexOf('\n', first + 1);
    if (first === -1 || second === -1) throw new Error('no header');
    const h = text.slice(0, first);
    if (h === this.#gw.host) return; // Delivered locally when it was published.
    const p = Number(text.slice(first + 1, second));
    const m = text.slice(second + 1);
    const value = JSON.parse(m);
    if (topic === undefined) this.#sendToWorkers(value);
    else this.#deliver(topic, m, h, p, value);
  }
}

module.exports = { Topics };
