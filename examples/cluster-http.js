'use strict';

// An HTTP server under forkline's cluster, reloaded under load without dropping a request. The primary forks two
// workers, puts them under load with a built-in client, and meanwhile replaces each worker in turn with
// cluster.reload() (what SIGHUP does under `npx forkline cluster app.js`). It prints the requests served and failed.
// `node examples/cluster-http.js --quick` runs a shorter load; PORT=8000 picks the port (default: any free one).

const http = require('node:http');
const { cluster } = require('forkline'); // was: require('node:cluster')

const WORKERS = 2;
const CLIENTS = 4;
const LOAD_MS = process.argv.includes('--quick') ? 300 : 2000; // of load before the reload, and again after it
const PORT = Number(process.env.PORT) || 0;

if (cluster.isPrimary) {
  primary().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  // An ordinary worker: in a worker process forkline's cluster is node:cluster itself.
  http.createServer((req, res) => res.end(`hello from ${process.pid}\n`)).listen(PORT, '127.0.0.1');
}

async function primary() {
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  const port = await new Promise((resolve) => {
    let listening = 0;
    cluster.on('listening', (worker, address) => ++listening === WORKERS && resolve(address.port));
  });
  const oldPids = pidsOf(cluster.workers);
  console.log(`${WORKERS} workers (pids ${oldPids.join(', ')}) listening on http://127.0.0.1:${port}/`);

  const load = startLoad(port);
  console.log(`${CLIENTS} clients sending requests, a new connection each`);
  await sleep(LOAD_MS);

  const startedAt = performance.now();
  load.phase = 'during';
  await cluster.reload(); // one worker at a time: fork its replacement, wait until it listens, then retire it
  load.phase = 'after';
  const newPids = pidsOf(cluster.workers);
  const took = Math.round(performance.now() - startedAt);
  console.log(`cluster.reload(): pids ${oldPids.join(', ')} replaced by ${newPids.join(', ')} in ${took} ms`);
  await sleep(LOAD_MS);

  const { served, failed, errors } = await load.stop();
  const afterByOld = served.after.filter((pid) => oldPids.includes(pid)).length;
  const total = served.before.length + served.during.length + served.after.length;
  console.log(
    `requests served: ${total} (${served.before.length} before the reload, ${served.during.length} during it, ` +
      `${served.after.length} after it, ${afterByOld} of those by an old worker)`,
  );
  console.log(`requests failed: ${failed}${failed ? ' ' + JSON.stringify(errors) : ''}`);

  cluster.disconnect(); // the workers close their servers and exit; then so does the primary
  process.exitCode = total > 0 && failed === 0 && afterByOld === 0 ? 0 : 1;
}

// CLIENTS loops, each sending a request as soon as the last one is answered, until stop(). Every answer goes under
// the phase (before, during or after the reload) in which its request started.
function startLoad(port) {
  const load = { phase: 'before', running: true, failed: 0, errors: {} };
  const served = { before: [], during: [], after: [] };
  const client = async () => {
    while (load.running) {
      const phase = load.phase;
      try {
        const body = await get(port);
        served[phase].push(Number(/hello from (\d+)/.exec(body)[1]));
      } catch (err) {
        load.failed++;
        load.errors[err.code || err.message] = (load.errors[err.code || err.message] || 0) + 1;
      }
    }
  };
  const clients = Array.from({ length: CLIENTS }, client);
  load.stop = async () => {
    load.running = false;
    await Promise.all(clients);
    return { served, failed: load.failed, errors: load.errors };
  };
  return load;
}

function get(port) {
  return new Promise((resolve, reject) => {
    // agent: false: no keep-alive, so every request is a new connection for the cluster to hand to a worker.
    const req = http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
  });
}

const pidsOf = (workers) => Object.values(workers).map((worker) => worker.process.pid);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
