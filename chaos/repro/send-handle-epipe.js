'use strict';

// Reproduction (chaos suite, issue #11): child.send(message, socket, callback) to a child that has died but whose
// 'disconnect' has not been emitted yet (connected is still true). forkline's write fails at once with EPIPE, and
// _sendHandle (lib/channel.js) returns before postSend(): the socket stays open and attached in the parent
// (socket._handle still set), although docs/api.md says "A socket sent without `keepOpen` is detached at once" and
// Node's net.Socket send() detaches it before writing. Code written for Node does not destroy a socket it has sent,
// so the connection leaks (its client never sees EOF) unless the callback's error is taken as "still yours".
// (Node itself, here, detaches the socket, reports success, and keeps it as its _pendingMessage, which it never
// closes either since _disconnect() waits for the handle queue: Node leaks it out of reach.)
//
//   node chaos/repro/send-handle-epipe.js                 # forkline: callback EPIPE, socket still attached and open
//   node chaos/repro/send-handle-epipe.js child_process   # Node: callback null, socket detached (and leaked)

const net = require('node:net');

const impl = process.argv[2] === 'child_process' ? require('node:child_process') : require('../..');
const server = net.createServer({ pauseOnConnect: true });
server.listen(0, '127.0.0.1', () => {
  const client = net.connect(server.address().port, '127.0.0.1');
  let clientClosed = false;
  client.on('close', () => (clientClosed = true));
  server.once('connection', (socket) => {
    const child = impl.fork('-e', ['process.kill(process.pid, "SIGKILL")'], { stdio: 'inherit' });
    child.on('spawn', () => {
      // Busy until the child is surely dead: 'disconnect' cannot have been emitted, so send() goes ahead.
      const until = Date.now() + 500;
      while (Date.now() < until);
      console.log(`connected before send: ${child.connected}`);
      child.send('take this', socket, (err) => {
        console.log(`send callback: ${err && err.code}`);
        console.log(
          `socket in the parent: _handle ${socket._handle ? 'still attached' : 'null'}, destroyed ${socket.destroyed}`,
        );
        setTimeout(() => {
          console.log(
            `after 1 s, the client saw EOF: ${clientClosed}; child signal ${child.signalCode}, connected ${child.connected}`,
          );
          server.close();
          client.destroy();
          socket.destroy();
          process.exit(clientClosed ? 0 : 1);
        }, 1000);
      });
    });
  });
});
