'use strict';

// A job queue shared by two hosts through Redis. This process starts a throwaway redis-server, then two "hosts"
// (two local processes here; two machines pointed at one Redis in production), each a forkline cluster primary whose
// two workers take jobs from the 'thumbnails' queue. It enqueues the jobs and follows the 'thumbnails:done' topic,
// on which a worker publishes each job it finished, until every job is in. Job 3 throws on its first attempt: the
// bus puts it back and a worker does it again. Needs redis-server on PATH (without it, it says so and exits 0) and
// ioredis (npm install ioredis). `node examples/job-queue.js --quick` enqueues fewer jobs.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { fork, cluster, bus } = require('forkline');

const JOBS = process.argv.includes('--quick') ? 8 : 40;
const NAMESPACE = 'job-queue-example'; // prefixes every key and channel, so apps sharing a Redis stay apart

// Cluster workers run this file with the primary's arguments, so they are told apart first.
if (cluster.isWorker) worker();
else if (process.argv[2] === 'host') host(process.argv[3]);
else
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });

function worker() {
  bus.process(
    'thumbnails',
    async (job, { id, attempt }) => {
      await sleep(20); // the work itself
      if (job.n === 3 && attempt === 1) throw new Error('image store busy'); // back to the end of the queue
      await bus.publish('thumbnails:done', { id, n: job.n, attempt, host: bus.host, pid: process.pid });
    },
    { concurrency: 2 },
  );
  process.send('ready');
}

function host(name) {
  cluster.setupPrimary({ bus: { url: process.env.REDIS_URL, namespace: NAMESPACE, host: name } });
  const workers = [cluster.fork(), cluster.fork()];
  let ready = 0;
  cluster.on('message', (worker, message) => {
    if (message === 'ready' && ++ready === workers.length) process.send({ host: name, pids: pidsOf(workers) });
  });
  // When the producer lets go of this host (or dies), the workers finish their jobs and exit, then so does this.
  process.on('disconnect', () => cluster.disconnect());
}

async function main() {
  if (spawnSync('redis-server', ['--version']).error) {
    console.log('This example needs redis-server on PATH (Debian: apt-get install redis-server). Skipped.');
    return;
  }
  const redis = await startRedis();
  const hosts = [];
  try {
    console.log(`redis-server ${redis.url}`);
    const env = { ...process.env, REDIS_URL: redis.url };
    for (const name of ['host-a', 'host-b']) hosts.push(fork(__filename, ['host', name], { env }));
    for (const { host, pids } of await Promise.all(hosts.map(nextMessage))) {
      console.log(`${host}: a forkline cluster, workers ${pids.join(', ')}, taking jobs from 'thumbnails'`);
    }

    // This process is a host of its own on the bus: it gives the jobs and hears of each one done.
    await bus.connect({ url: redis.url, namespace: NAMESPACE, host: 'producer' });
    const done = [];
    let allDone;
    const finished = new Promise((resolve) => (allDone = resolve));
    await bus.subscribe('thumbnails:done', (report) => done.push(report) === JOBS && allDone());
    const ids = [];
    for (let n = 1; n <= JOBS; n++) ids.push(await bus.enqueue('thumbnails', { n, image: `photo-${n}.jpg` }));
    console.log(`enqueued ${JOBS} jobs`);
    const giveUp = setTimeout(allDone, 30_000); // then what is missing shows below
    await finished;
    clearTimeout(giveUp);

    const doneOnce = ids.every((id) => done.filter((report) => report.id === id).length === 1);
    const perHost = ['host-a', 'host-b'].map((name) => `${name} ${done.filter((r) => r.host === name).length}`);
    console.log(`jobs done: ${done.length} of ${JOBS}${doneOnce ? ', each once' : ''} (${perHost.join(', ')})`);
    const retried = done.find((report) => report.n === 3);
    if (retried) console.log(`job 3 threw on attempt 1, done on attempt ${retried.attempt} by ${retried.host}`);
    process.exitCode = doneOnce && done.length === JOBS ? 0 : 1;
  } finally {
    const exits = hosts.map((child) => new Promise((resolve) => child.on('close', resolve)));
    for (const child of hosts) child.disconnect();
    await Promise.all(exits);
    await bus.close();
    await redis.stop();
  }
}

// Scaffolding for the example: a redis-server of its own, on a free port of 127.0.0.1, in a temp dir.
async function startRedis() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'forkline-job-queue-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
  const server = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => server.on('exit', resolve));
  const stop = async () => {
    server.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const started = await new Promise((resolve) => {
    let output = '';
    server.stdout.on('data', (chunk) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) resolve(true);
    });
    exited.then(() => resolve(false));
  });
  server.stdout.resume();
  if (!started) {
    await stop();
    throw new Error('redis-server did not start');
  }
  return { url: `redis://127.0.0.1:${port}`, stop };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

const nextMessage = (child) => new Promise((resolve) => child.once('message', resolve));
const pidsOf = (workers) => workers.map((worker) => worker.process.pid);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
