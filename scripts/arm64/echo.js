'use strict';

// Echoes each message back. 'addons' asks which native addons this child loaded (forkline's child runtime loads
// forkline's); 'exit' disconnects, and so ends the child.
process.on('message', (message) => {
  if (message === 'addons') process.send(Object.keys(require.cache).filter((file) => file.endsWith('.node')));
  else if (message === 'exit') process.disconnect();
  else process.send(message);
});
