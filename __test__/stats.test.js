'use strict';

// channel.stats() and process.channel.stats(): the counts equal what the test sent and received, message for message
// and byte for byte, in both serializations, with a handle, for a Node child and under the child runtime.
// What of this file needs the native core: skipped, with the reason, under the portable backend.
const test = require('./helpers').withNativeOnly(require('node:test'), {
  'stats() count what crossed (json, childRuntime forkline)': "the child runtime (childRuntime: 'forkline')",
  'stats() count what crossed (advanced, childRuntime forkline)': "the child runtime (childRuntime: 'forkline')",
  'stats(): send() returning false, errors by code (JS and core), readable after the channel closed':
    'maxMessageSize and malformed-input survival, whose errors it counts (portable.test.js has the rest)',
});
const assert = require('node:assert');
const net = require('node:net');
const v8 = require('node:v8');
const { forklineFork, fixture, spawnChild, once } = require('./helpers');

const CHILD = fixture('stats-child.js');

// A message's size on the wire: a json line, or an advanced frame with its 4-byte length.
function wire(message, serialization) {
  if (serialization === 'json') return Buffer.byteLength(JSON.stringify(message)) + 1;
  return 4 + v8.serialize(message).length;
}
const sum = (messages, serialization) => messages.reduce((n, m) => n + wire(m, serialization), 0);

// The next `n` messages from `child`.
function nextMessages(child, n) {
  return new Promise((resolve) => {
    const got = [];
    const onMessage = (m) => {
      got.push(m);
      if (got.length === n) {
        child.off('message', onMessage);
        resolve(got);
      }
    };
    child.on('message', onMessage);
  });
}

async function listeningServer(t) {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return server;
}

for (const serialization of ['json', 'advanced']) {
  for (const childRuntime of ['node', 'forkline']) {
    test(
      `stats() count what crossed (${serialization}, childRuntime ${childRuntime})`,
      { timeout: 30_000 },
      async (t) => {
        const child = spawnChild(t, forklineFork, CHILD, [], { serialization, childRuntime });
        const sent = ['a', { b: 1, c: [1, 2, 3] }, [1, 'two', null]];
        const envelope = { cmd: 'NODE_HANDLE', type: 'net.Server', msg: 'h' };
        // Their size as sent: V8 writes an array by how it holds it, and the deepStrictEqual below may change that
        // (Node 26's makes them holey, which V8 writes sparse).
        const sentBytes = sum([...sent, envelope], serialization);
        const echoed = nextMessages(child, sent.length);
        for (const m of sent) assert.strictEqual(child.send(m), true);
        const received = await echoed;
        assert.deepStrictEqual(received, sent);

        const server = await listeningServer(t);
        const answered = nextMessages(child, 1);
        child.send('h', server);
        assert.deepStrictEqual(await answered, ['handle']);

        const ack = { cmd: 'NODE_HANDLE_ACK' };
        const stats = child.channel.stats();
        assert.deepStrictEqual(stats, {
          // Three messages and the handle's envelope.
          messagesSent: 4,
          bytesSent: sentBytes,
          handlesSent: 1,
          // Three echoes, the child's ACK of the handle (the channel's own messages count too) and its answer. V8
          // may encode a value it deserialized in other bytes than the literal: count what came.
          messagesReceived: 5,
          bytesReceived: sum([...received, ack, 'handle'], serialization),
          handlesReceived: 0,
          bytesQueued: 0,
          errors: {},
          backpressureEvents: 0,
        });

        if (childRuntime === 'node') return;
        // The child's side counts the same traffic the other way round.
        const reply = nextMessages(child, 1);
        child.send('stats');
        const [theirs] = await reply;
        assert.deepStrictEqual(theirs, {
          messagesSent: 5,
          bytesSent: stats.bytesReceived,
          handlesSent: 0,
          messagesReceived: 5,
          bytesReceived: stats.bytesSent + wire('stats', serialization),
          handlesReceived: 1,
          bytesQueued: 0,
          errors: {},
          backpressureEvents: 0,
        });
      },
    );
  }
}

test(
  'stats(): send() returning false, errors by code (JS and core), readable after the channel closed',
  {
    timeout: 30_000,
  },
  async (t) => {
    const child = spawnChild(t, forklineFork, CHILD, [], { maxMessageSize: 100 });
    const control = child.channel;
    const errors = [];
    child.on('error', (err) => errors.push(err.code));

    // A message far above the high-water mark: send() says false until 'drain'.
    const big = 'x'.repeat(4 * 1024 * 1024);
    let falses = 0;
    const echoed = nextMessages(child, 1);
    if (!child.send(big)) falses++;
    if (!child.send('small')) falses++;
    assert.ok(falses >= 1, 'send() of 4 MiB returns false');
    await once(child, 'drain');
    assert.strictEqual(control.stats().bytesQueued, 0);
    await echoed;

    // Not JSON (found in JS) and longer than maxMessageSize (found by the core), then a good message.
    const after = new Promise((resolve) => child.on('message', (m) => m === 'after' && resolve()));
    child.send('bad');
    await after;
    child.disconnect();
    assert.strictEqual(
      child.send('late', () => {}),
      false,
    );
    falses++;
    await once(child, 'exit');
    assert.deepStrictEqual(errors.sort(), ['FORKLINE_MALFORMED_MESSAGE', 'FORKLINE_MESSAGE_TOO_LARGE']);
    const stats = control.stats();
    assert.strictEqual(stats.backpressureEvents, falses);
    assert.deepStrictEqual(stats.errors, {
      FORKLINE_MALFORMED_MESSAGE: 1,
      FORKLINE_MESSAGE_TOO_LARGE: 1,
      ERR_IPC_CHANNEL_CLOSED: 1,
    });
    assert.strictEqual(stats.messagesSent, 3);
    assert.strictEqual(stats.bytesQueued, 0);
  },
);
