'use strict';

module.exports = {
  testEnvironment: 'node',
  // Plain CommonJS tests: nothing to transform.
  transform: {},
  maxWorkers: 2,
  // jest runs a small suite it has timed as fast in its own process; with a memory limit it always uses its
  // workers (jest-worker's child processes), as a large project's run does. The limit is far above what they use.
  workerIdleMemoryLimit: '1GB',
};
