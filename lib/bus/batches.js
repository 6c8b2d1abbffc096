'use strict';

// Publishes on their way to the broker: what one publisher (a pid) publishes to one topic in one tick leaves as one
// broker message, `<host>\n<pid>\n<JSON>[\n<JSON>...]` (JSON.stringify never writes a raw newline), of at most about
// BATCH_BYTES. Shared by the gateway (lib/bus/topics.js) and a worker's direct publisher (lib/bus/direct.js), whose
// pid ends with a '.' (`Number()` reads it all the same): its own host's gateway delivers that one too.

// The pid line of a worker's direct publish.
const directPid = (pid) => `${pid}.`;

const process = require('node:process');

const BATCH_BYTES = 64 * 1024;

// The broker message of `texts` (JSON texts) published by `pid` on `host`.
function brokerText(host, pid, texts) {
  return `${host}\n${pid}\n${texts.length === 1 ? texts[0] : texts.join('\n')}`;
}

class PublishBatches {
  #send;
  // `<pid>\n<topic>` -> { topic, pid, texts, bytes, sent, resolve } for this tick
  #batches = null;

  // `send({ topic, pid, texts })` -> a promise of the broker's taking that batch.
  constructor(send) {
    this.#send = send;
  }

  // Resolves (or rejects) as the broker takes (or fails to take) the batch `m` joined.
  add(topic, pid, m) {
    if (this.#batches === null) {
      this.#batches = new Map();
      process.nextTick(() => this.#sendAll());
    }
    const key = `${pid}\n${topic}`;
    let batch = this.#batches.get(key);
    if (batch === undefined) {
      batch = { topic, pid, texts: [], bytes: 0, sent: null, resolve: null };
      batch.sent = new Promise((resolve) => (batch.resolve = resolve));
      this.#batches.set(key, batch);
    }
    batch.texts.push(m);
    batch.bytes += m.length;
    const sent = batch.sent;
    if (batch.bytes >= BATCH_BYTES) {
      this.#batches.delete(key);
      batch.resolve(this.#send(batch));
    }
    return sent;
  }

  #sendAll() {
    const batches = this.#batches;
    this.#batches = null;
    for (const batch of batches.values()) batch.resolve(this.#send(batch));
  }
}

module.exports = { PublishBatches, brokerText, directPid };
