'use strict';

// A chaos child for handle hand-offs, killed at random moments by the parent (or by itself). argv: <id>.
//
// From the parent, { p: seq, ... } (checked to arrive as 0, 1, 2, ...):
//   { k, kind: 'socket', act }  with a net.Socket: act 'back' sends it back, 'write' writes `child <id> <k>` on it
//                               and ends it, 'hold' keeps it (until we exit), 'close' destroys it;
//   { k, kind: 'server', act }  with a net.Server: 'back' sends it back, otherwise it is closed;
//   { make: true }              make a net.Server on 127.0.0.1 and send it to the parent, then close ours;
//   { plain: true }             nothing to do;
//   { die: n }                  SIGKILL ourselves right after our n-th send (a handle goes with most of them);
//   { fin: n }                  the parent sent n messages: answer { fin, s, sent, got, ok }.
// To the parent: { s: id, seq, k?, kind?, did } (did: 'back' with the handle, 'wrote', 'held', 'closed', 'made'
// with a server and its port), each with a send callback.
//
// Side channel, stdout, written synchronously: `a<seq>` (every send callback up to seq fired: the message and its
// fd are in the kernel), `bad <why>` (a parent message out of order).

const { note } = require('./note');
const net = require('node:net');

const id = process.argv[2];

let seq = 0;
let acked = -1;
let expected = 0;
let bad = false;
let dieAfter = -1;
const held = [];

function send(msg, handle, after) {
  const mine = seq++;
  msg.s = id;
  msg.seq = mine;
  const callback = (err) => {
    if (!err && mine > acked) {
      acked = mine;
      note(`a${acked}`);
    }
    if (after) after(err);
  };
  if (handle) process.send(msg, handle, callback);
  else process.send(msg, callback);
  if (mine === dieAfter) process.kill(process.pid, 'SIGKILL');
}

process.on('message', (msg, handle) => {
  if (msg === null || typeof msg !== 'object') return;
  if (typeof msg.die === 'number') {
    dieAfter = msg.die;
    return;
  }
  if (typeof msg.fin === 'number') {
    process.send({ fin: true, s: id, sent: seq, got: expected, ok: !bad && expected === msg.fin });
    return;
  }
  if (typeof msg.p !== 'number') return;
  if (msg.p !== expected && !bad) {
    bad = true;
    note(`bad parent seq ${msg.p} arrived when ${expected} was due`);
  }
  expected = msg.p + 1;
  if (msg.kind === 'socket') {
    if (!handle) return send({ k: msg.k, kind: 'socket', did: 'nothing-came' });
    if (msg.act === 'back') return send({ k: msg.k, kind: 'socket', did: 'back' }, handle);
    if (msg.act === 'write') {
      handle.on('error', () => {});
      handle.end(`child ${id} ${msg.k}\n`);
      return send({ k: msg.k, kind: 'socket', did: 'wrote' });
    }
    if (msg.act === 'hold') {
      handle.on('error', () => {});
      handle.pause();
      held.push(handle);
      return send({ k: msg.k, kind: 'socket', did: 'held' });
    }
    handle.destroy();
    return send({ k: msg.k, kind: 'socket', did: 'closed' });
  }
  if (msg.kind === 'server') {
    if (!handle) return send({ k: msg.k, kind: 'server', did: 'nothing-came' });
    if (msg.act === 'back') return send({ k: msg.k, kind: 'server', did: 'back' }, handle, () => handle.close());
    handle.close();
    return send({ k: msg.k, kind: 'server', did: 'closed' });
  }
  if (msg.make) {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      send({ kind: 'made', did: 'made', port: server.address().port }, server, () => server.close());
    });
  }
});
// Held sockets would keep us alive: the parent's disconnect ends us.
process.on('disconnect', () => process.exit(0));
process.send({ ready: id, pid: process.pid });
