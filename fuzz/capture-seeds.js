#!/usr/bin/env node
// Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from the bytes real node children write on their IPC
// channel: `node fuzz/capture-seeds.js` (from anywhere; it replaces the seeds it writes).
//
// Each child is `node capture-seeds.js child <case>` with a socketpair at fd 3 (spawn's 'pipe' is a socketpair on
// Unix) and NODE_CHANNEL_FD=3, so its own process.send() writes Node's wire bytes, in json or advanced mode, and
// this script records every byte it reads. What the child receives comes from here instead:
// - a child that sends a real handle (a net.Server, a connected net.Socket) waits for NODE_HANDLE_ACK before its
//   next message; this side's end is not an IPC pipe (it reads with read(2), so the kernel closes the fd), and it
//   answers with the ACK bytes Node's serializer writes for {cmd: 'NODE_HANDLE_ACK'} (JSON.stringify, v8.serialize);
// - a child sent a NODE_HANDLE envelope without an fd answers with a real NODE_HANDLE_NACK;
// - a cluster worker (NODE_UNIQUE_ID set) sends its real 'online' and 'queryServer', then is killed unanswered.
// The worker's reply to a 'newconn' cannot be had without passing it an fd, so a child sends the same object
// ({cmd: 'NODE_CLUSTER', ack, accepted, seq}, the key order of cluster/utils.js sendHelper) with process.send.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const v8 = require('node:v8');

const JSON_VALUES = () => [
  'hello',
  'line separators \u2028 and \u2029, emoji 😀, 中文, é, a newline \n and a NUL \0',
  { nested: { a: [1, 2, { b: null, c: true }], d: 'x'.repeat(40) }, e: [] },
  [0, -1, 1.5, 1e21, -0, Number.MAX_SAFE_INTEGER, 2 ** 31, 2 ** 53 + 2],
  null,
  { cmd: 'NODE_HANDLE', type: 'net.Socket', msg: { shaped: 'like an envelope' } },
  { cmd: 'NODE_HANDLE_ACK' },
  { cmd: 'NODE_CLUSTER', ack: 7, accepted: true, seq: 2 },
  { cmd: 'NODE_CLUSTER', ack: 2 ** 40, accepted: false, seq: 3 },
  { cmd: 'NODE_CLUSTER', act: 'newconn', key: 'null:0:4:-1:0', seq: 5 },
  'z'.repeat(300),
];

const ADVANCED_VALUES = () => [
  ...JSON_VALUES(),
  Buffer.from('a Buffer, sent as a host object'),
  new Float64Array([1.5, -2, NaN]),
  new Map([
    ['k', 1],
    [2, { v: 'w' }],
  ]),
  new Set(['s', 3]),
  new Date(0),
  { bigint: 123n },
  /a+b/g,
  { undef: undefined, inf: -Infinity, sparse: [1, , 3], big: 2n ** 70n },
  (() => {
    const o = { self: null };
    o.self = o;
    return o;
  })(),
];

// The child: sends what its case says, then disconnects.
async function child(name) {
  const net = require('node:net');
  const send = (msg, handle) => new Promise((resolve) => process.send(msg, handle, resolve));
  const advanced = process.env.CAPTURE_MODE === 'advanced';
  if (name === 'values') {
    for (const v of advanced ? ADVANCED_VALUES() : JSON_VALUES()) await send(v);
  } else if (name === 'handles') {
    const server = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    await send('before the server');
    await send({ here: 'a server' }, server);
    const client = net.connect(server.address().port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    await send({ here: 'a socket', n: 1 }, client);
    await send('after the socket');
    client.destroy();
    server.close();
  } else if (name === 'nack') {
    await new Promise((resolve) => process.on('message', (m) => m === 'bye' && resolve()));
  } else if (name === 'cluster') {
    require('node:net').createServer().listen(0); // queryServer; the primary never answers
    return;
  }
  process.disconnect();
}

// This side: runs one child in `mode` and returns the bytes it wrote.
function capture(name, mode) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, NODE_CHANNEL_FD: '3', NODE_CHANNEL_SERIALIZATION_MODE: mode, CAPTURE_MODE: mode };
    if (name === 'cluster') env.NODE_UNIQUE_ID = '1';
    const proc = spawn(process.execPath, [__filename, 'child', name], {
      stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
      env,
    });
    const channel = proc.stdio[3];
    const chunks = [];
    let seen = 0;
    const write = (value) => channel.write(encode(value, mode));
    if (name === 'nack') {
      // An envelope with no fd, then 'bye' once the child has answered it.
      write({ cmd: 'NODE_HANDLE', type: 'net.Native', msg: { cmd: 'NODE_CLUSTER', act: 'newconn', key: 'k', seq: 1 } });
    }
    channel.on('data', (chunk) => {
      chunks.push(chunk);
      const messages = split(Buffer.concat(chunks), mode);
      for (const m of messages.slice(seen)) {
        // Only a real handle is acknowledged: an ACK with none in flight fails an assert in the child.
        if (name === 'handles' && isCmd(m, mode, 'NODE_HANDLE')) write({ cmd: 'NODE_HANDLE_ACK' });
        if (isCmd(m, mode, 'NODE_HANDLE_NACK')) write('bye');
      }
      seen = messages.length;
      if (name === 'cluster' && seen >= 2) proc.kill();
    });
    channel.on('error', reject);
    proc.on('close', (code, signal) => {
      if (code !== 0 && !(name === 'cluster' && signal === 'SIGTERM')) reject(new Error(`${name} (${mode}): ${code}`));
      resolve(Buffer.concat(chunks));
    });
  });
}

function encode(value, mode) {
  if (mode === 'json') return JSON.stringify(value) + '\n';
  const body = v8.serialize(value);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

// Complete messages: json lines without their newline, or frame bodies without their prefix.
function split(bytes, mode) {
  const out = [];
  let at = 0;
  if (mode === 'json') {
    for (let nl; (nl = bytes.indexOf(10, at)) !== -1; at = nl + 1) out.push(bytes.subarray(at, nl));
  } else {
    for (let len; at + 4 <= bytes.length && at + 4 + (len = bytes.readUInt32BE(at)) <= bytes.length; at += 4 + len) {
      out.push(bytes.subarray(at + 4, at + 4 + len));
    }
  }
  return out;
}

// Whether a message is {cmd: <cmd>, ...}, cmd first in advanced mode as Node writes its internal messages.
function isCmd(message, mode, cmd) {
  if (mode === 'json') {
    try {
      return JSON.parse(message).cmd === cmd;
    } catch {
      return false;
    }
  }
  const head = Buffer.from([0xff, 0x0f, 0x6f, 0x22, 3, ...Buffer.from('cmd'), 0x22, cmd.length, ...Buffer.from(cmd)]);
  return message.subarray(0, head.length).equals(head);
}

async function main() {
  const seeds = path.join(__dirname, 'seeds');
  const dirs = {};
  for (const target of ['json_lines', 'advanced_frames', 'internal', 'fd_pairing']) {
    dirs[target] = path.join(seeds, target);
    fs.rmSync(dirs[target], { recursive: true, force: true });
    fs.mkdirSync(dirs[target], { recursive: true });
  }
  const put = (target, name, bytes) => fs.writeFileSync(path.join(dirs[target], name), bytes);
  // The decoders' input: max (u16 little-endian), the seed of the cut points, the stream (invariants.rs).
  const stream = (max, seed, bytes) => Buffer.concat([Buffer.from([max & 0xff, max >> 8, seed]), bytes]);

  for (const mode of ['json', 'advanced']) {
    const decoder = mode === 'json' ? 'json_lines' : 'advanced_frames';
    const fd = mode === 'json' ? 0 : 1;
    for (const name of ['values', 'handles', 'nack', 'cluster']) {
      const wire = await capture(name, mode);
      if (wire.length === 0) throw new Error(`${name} (${mode}): the child wrote nothing`);
      const messages = split(wire, mode);
      console.log(`${mode} ${name}: ${wire.length} bytes, ${messages.length} messages`);

      // Cut at a few points and byte by byte (seed 0); roomy, and small enough that long messages are dropped.
      put(decoder, `${name}-4096`, stream(4096, 1, wire));
      put(decoder, `${name}-64-bytewise`, stream(64, 0, wire));
      if (name === 'values') put(decoder, `${name}-cut-short`, stream(4096, 3, wire.subarray(0, wire.length - 5)));

      // One message each: envelopes, handshakes, cluster messages, and a plain value or two.
      messages.forEach((m, i) => {
        const text = m.toString('latin1');
        if (/NODE_|accepted/.test(text) || i < 2) put('internal', `${mode}-${name}-${i}`, m);
      });

      // Reads of up to 63 bytes (invariants.rs `fd_pairing`), an fd with each envelope's first byte.
      for (const variant of ['paired', 'lost-and-stray']) {
        const reads = [];
        let at = 0;
        let envelope = 0;
        for (const m of messages) {
          const start = at;
          const len = m.length + (mode === 'json' ? 1 : 4);
          let fds = isCmd(m, mode, 'NODE_HANDLE') ? 1 : 0;
          if (variant !== 'paired' && fds) fds = envelope++ % 2 === 0 ? 0 : 2; // lost, then one too many
          for (let off = 0; off < len; off += 63) {
            const piece = wire.subarray(start + off, start + Math.min(len, off + 63));
            reads.push(Buffer.from([(piece.length << 2) | (off === 0 ? fds : 0)]), piece);
          }
          at += len;
        }
        // The mode, and max 1024: 16 << 6.
        put('fd_pairing', `${mode}-${name}-${variant}`, Buffer.concat([Buffer.from([fd | (6 << 1)]), ...reads]));
      }
    }
  }
  for (const target of Object.keys(dirs)) console.log(`${target}: ${fs.readdirSync(dirs[target]).length} seeds`);
}

if (process.argv[2] === 'child') {
  child(process.argv[3]);
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
