'use strict';

// Benchmark child (plain Node, built-in IPC only): for every `'sock'` message it gets the socket that came with it,
// writes `ok` on it and ends it. Reading stays on, so the client's FIN is seen and the socket (and its fd) goes away.
process.on('message', (msg, socket) => {
  if (msg !== 'sock' || !socket) return;
  socket.on('error', () => {}); // A client that went away (e.g. the parent gave up) is not the child's problem.
  socket.end('ok');
  socket.resume();
});
process.send({ ready: true });
