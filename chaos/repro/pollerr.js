'use strict';

// Reproduction (chaos suite, issue #11): a peer that dies with unread data in its queue while its last message is
// still unread by us. libuv reports POLLERR, stops the poll handle itself and calls the callback with UV_EBADF;
// forkline's on_poll (src/uv.rs) ignores the status, reads once (the last message) and is never called again: the
// EOF is never read, so no 'disconnect' and no 'close', `connected` stays true, the channel's fd stays open and the
// event loop stays alive. node:child_process gets 'disconnect', 'exit', 'close'.
//
//   node chaos/repro/pollerr.js                 # forkline: usually "message last, exit" and then nothing
//   node chaos/repro/pollerr.js child_process   # Node: message last, disconnect, exit, close
//
// Timing-dependent (the busy wait makes it likely): run it a few times.

const path = require('node:path');

const impl = process.argv[2] === 'child_process' ? require('node:child_process') : require('../..');
const child = impl.fork(path.join(__dirname, 'peer-dies-unread.py'), [], {
  execPath: 'python3',
  execArgv: [],
  stdio: 'inherit',
});
const t0 = Date.now();
for (const event of ['message', 'disconnect', 'exit', 'close']) {
  child.on(event, (arg) => console.log(`${Date.now() - t0} ms ${event} ${event === 'message' ? arg : ''}`));
}
child.once('message', () => {
  child.send('hello');
  // Busy for a moment, so that the last message and the close both happen before the loop polls again.
  const until = Date.now() + 300;
  while (Date.now() < until);
});
setTimeout(() => {
  console.log(`after 3 s: connected = ${child.connected}`);
  process.exit(child.connected ? 1 : 0);
}, 3000);
