'use strict';

// A chaos child that bursts messages to its parent while the parent bursts to it, until it is killed or told to
// finish. argv: <id> <seed> <serialization>.
//
// To the parent: { s: id, seq, pad } with seq 0, 1, 2, ... and a pad of random size (a string, or a Buffer under
// advanced serialization), each with a send callback. From the parent: { p: seq, pad } (checked to arrive as
// 0, 1, 2, ...), { go: spec } (start bursting), { die: n } (SIGKILL ourselves right after sending message n),
// { fin: n } (the parent sent n messages: stop, and answer { fin, s, sent, got, ok }).
//
// Side channel, stdout (fd 1, written synchronously, so what is there was there before any kill): `a<seq>` = the
// send callbacks of every message up to seq have fired (the bytes are in the kernel: the parent must get them even
// if we are killed right after), `bad <why>` = a message from the parent out of order, `got <n> ok|bad` = at
// 'disconnect', how many of the parent's messages had come.

const { note } = require('./note');
const { mulberry32 } = require('../rng');

const id = process.argv[2];
const rand = mulberry32(Number(process.argv[3]) >>> 0 || 1);
const int = (min, max) => min + Math.floor(rand() * (max - min + 1));

const advanced = process.argv[4] === 'advanced';

let seq = 0; // next seq to send
let acked = -1; // every callback up to here fired
let noted = -1;
let pendingNote = false;
const done = new Set(); // callbacks that fired out of order (they do not: a send callback per write, in order)
let expected = 0; // next seq from the parent
let bad = false;
let spec = null;
let dieAfter = -1;
let finishing = null;

function flushNote() {
  pendingNote = false;
  if (acked > noted) {
    noted = acked;
    note(`a${acked}`);
  }
}

function pad(size) {
  if (advanced) return Buffer.alloc(size, seq & 0xff);
  return 'x'.repeat(size);
}

function sendOne() {
  const mine = seq++;
  const size = rand() < spec.bigShare ? int(16 * 1024, spec.bigMax) : int(0, 300);
  const msg = { s: id, seq: mine, pad: pad(size) };
  if (advanced && mine % 7 === 0) msg.extra = new Map([[mine, new Date(0)]]);
  process.send(msg, (err) => {
    if (err) return;
    done.add(mine);
    while (done.has(acked + 1)) done.delete(++acked);
    if (!pendingNote) {
      pendingNote = true;
      process.nextTick(flushNote);
    }
  });
  if (mine === dieAfter) process.kill(process.pid, 'SIGKILL');
}

function burst() {
  if (finishing !== null || !spec) return;
  if (seq >= spec.count) return;
  // Bound what waits in our own queue when the parent reads slowly.
  if (seq - acked > 400) return setTimeout(burst, 1);
  const n = int(1, spec.perTick);
  for (let i = 0; i < n && seq < spec.count; i++) sendOne();
  setImmediate(burst);
}

process.on('message', (msg) => {
  if (msg === null || typeof msg !== 'object') return;
  if (typeof msg.p === 'number') {
    if (msg.p !== expected && !bad) {
      bad = true;
      note(`bad parent seq ${msg.p} arrived when ${expected} was due`);
    }
    expected = msg.p + 1;
  } else if (msg.go) {
    spec = msg.go;
    setImmediate(burst);
  } else if (typeof msg.die === 'number') {
    dieAfter = Math.max(msg.die, seq);
  } else if (typeof msg.fin === 'number') {
    finishing = msg.fin;
    process.send({ fin: true, s: id, sent: seq, got: expected, ok: !bad && expected === msg.fin });
  }
});
// The parent may also end things with disconnect() mid-burst: what it sent before must all be here by then.
process.on('disconnect', () => {
  if (finishing === null) finishing = -1;
  flushNote();
  note(`got ${expected} ${bad ? 'bad' : 'ok'}`);
});
process.send({ ready: id, pid: process.pid });
