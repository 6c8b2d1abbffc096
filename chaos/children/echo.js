'use strict';

// Echoes every message back, with its handle if it came with one (then closes its own copy). 'exit' exits.
process.on('message', (msg, handle) => {
  if (msg === 'exit') process.exit(0);
  if (!handle) return process.send(msg);
  process.send(msg, handle, () => {
    if (typeof handle.close === 'function') handle.close();
    else handle.destroy();
  });
});
