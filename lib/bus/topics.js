'use strict';

// Pub/sub in the host's gateway: which endpoints listen to which topic (one broker subscription per topic, however
// many listeners), publishing, delivering what the broker brings, and cluster.broadcast().
//
// Wire form on the broker (channel `<ns>:t:<topic>`, or `<ns>:broadcast`): `<host>\n<pid>\n<JSON>[\n<JSON>...]`
// (lib/bus/batches.js). Each JSON text is what the publisher encoded, passed on unparsed except for one check per
// host. A gateway skips what its own host published (delivered there at once), except a worker's direct publish.

const process = require('node:process');
const { validateName, encode, checkSize } = require('./codec');
const { PublishBatches, brokerText } = require('./batches');
const { sendEncoded } = require('../backend').channel();

// A write to a worker that has just died fails quietly: its 'exit' detaches it from the bus.
const QUIET = { swallowErrors: true };

class Topics {
  #gw;
  // topic -> Set<Endpoint>
  #topics = new Map();
  #batches;

  // `gw`: what the gateway shares with its parts (lib/bus/gateway.js).
  constructor(gw) {
    this.#gw = gw;
    this.#batches = new PublishBatches(({ topic, pid, texts }) => {
      const text = brokerText(gw.host, pid, texts);
      return gw.remote(() => gw.transport.publish(gw.channel('t', topic), text));
    });
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
    if (this.#gw.transport !== null) await this.#batches.add(topic, ep.pid, m);
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
      const text = brokerText(this.#gw.host, process.pid, [m]);
      await this.#gw.remote(() => transport.publish(this.#gw.channel('broadcast'), text));
    }
  }

  // A plain message (not internal): encoded once for them all.
  #sendToWorkers(message) {
    const memo = new Map();
    for (const worker of this.#gw.workers) sendEncoded(worker.process, message, memo, QUIET);
  }

  // A message from the broker on topic `topic` (undefined: a broadcast). Throws if it does not decode.
  onBrokerMessage(topic, text) {
    const first = text.indexOf('\n');
    const second = text.indexOf('\n', first + 1);
    if (first === -1 || second === -1) throw new Error('no header');
    const h = text.slice(0, first);
    const pid = text.slice(first + 1, second);
    // Delivered locally when it was published, unless a worker published it to the broker itself (lib/bus/batches.js).
    if (h === this.#gw.host && !pid.endsWith('.')) return;
    const p = Number(pid);
    const body = text.slice(second + 1);
    if (topic === undefined) return this.#sendToWorkers(JSON.parse(body));
    if (body.indexOf('\n') === -1) return this.#deliver(topic, body, h, p, JSON.parse(body));
    // A batch: a text that does not decode is reported, the others are delivered.
    const ms = [];
    const vs = [];
    let bad = null;
    for (const m of body.split('\n')) {
      try {
        vs.push(JSON.parse(m));
        ms.push(m);
      } catch (err) {
        bad ??= err;
      }
    }
    const eps = this.#topics.get(topic);
    if (eps !== undefined && ms.length > 0) {
      // One item for the lot: a worker parses the values once, in one line with no per-message envelope.
      let toWorker;
      for (const ep of eps) {
        if (ep === this.#gw.local) ep.send({ t: 'msgs', topic, ms, h, p });
        else ep.send((toWorker ??= { t: 'msgs', topic, vs, h, p }));
      }
    }
    if (bad !== null) throw bad;
  }
}

module.exports = { Topics };
