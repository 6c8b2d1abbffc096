'use strict';

// Benchmark child (plain Node, built-in IPC only): sends every message back as it came.
process.on('message', (msg) => process.send(msg));
process.send({ ready: true });
