'use strict';

// Benchmark child (plain Node, built-in IPC only) of the plain round-trip loop: the whole program.
process.on('message', (m) => process.send(m));
