'use strict';

// Takes the listening server its parent sends and answers each connection on it with `child <pid>`.
process.on('message', (message, server) => {
  if (message !== 'server') return;
  server.on('connection', (socket) => socket.end(`child ${process.pid}`));
  process.send('ready');
});
process.on('disconnect', () => process.exit(0));
