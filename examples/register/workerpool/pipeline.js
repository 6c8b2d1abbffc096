'use strict';

// A two-stage pipeline of small tasks on a workerpool of forked processes, written without forkline: each line of a
// log is parsed by one task and scored by another, and the scores are summed. workerpool hands a worker one task at
// a time, so each task is a request and a reply over the worker's IPC channel.
//
//   node pipeline.js [--lines=N] [--workers=W]      prints one JSON line: { tasks, ms, tasksPerSecond, total }

const path = require('node:path');
const workerpool = require('workerpool');

const option = (name, fallback) => {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg ? Number(arg.slice(name.length + 3)) : fallback;
};
const LINES = option('lines', 5000);
const WORKERS = option('workers', 2);

const METHODS = ['GET', 'POST', 'PUT', 'DELETE'];
const line = (i) =>
  `127.0.0.${i % 250} - - [06/Dec/2026:10:${String(i % 60).padStart(2, '0')}:00 +0000] ` +
  `"${METHODS[i % 4]} /api/items/${i} HTTP/1.1" ${i % 17 === 0 ? 500 : 200} ${(i * 37) % 5000}`;

async function main() {
  const pool = workerpool.pool(path.join(__dirname, 'worker.js'), { workerType: 'process', maxWorkers: WORKERS });
  // The workers are started before the clock, as a long-running program's are.
  await Promise.all(Array.from({ length: WORKERS }, () => pool.exec('parse', [line(0)])));
  const t0 = process.hrtime.bigint();
  const scores = await Promise.all(
    Array.from({ length: LINES }, (_, i) =>
      pool.exec('parse', [line(i)]).then((record) => pool.exec('score', [record])),
    ),
  );
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await pool.terminate();
  const tasks = LINES * 2;
  const total = scores.reduce((a, b) => a + b, 0);
  console.log(JSON.stringify({ tasks, ms, tasksPerSecond: (tasks / ms) * 1000, total }));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
