'use strict';

// forkline vs node:child_process in one run: same child scripts (written for Node's built-in process.send /
// process.on('message')), same payloads, same machine. Three columns: node ↔ node, a forkline parent with a plain
// node child, and forkline on both ends (the same child script under `childRuntime: 'forkline'`). Prints machine
// info and a Markdown table.
//
//   node bench/bench.js             full run: 5 interleaved rounds per row, median shown
//   node bench/bench.js --quick     smoke run: every N divided by 10, 1 round
//   node bench/bench.js --json      also print the raw numbers (every round) as JSON after the table
//   --rounds=K                      rounds per row (default 5, 1 with --quick)
//   --only=ID[,ID...]               run only these scenarios (ids are listed by --list)
//   --list                          list the scenario ids and exit
//   --loader=wrk|node               cluster rows: the HTTP load generator (default: wrk if on PATH, else node)
//
// To add a row: add an entry to SCENARIOS. A scenario forks one child per measurement, runs `run(session, params)`
// and returns named numbers; each of its `rows` picks one number. The harness interleaves the implementations,
// takes the median of the rounds, kills the child and reports errors, early exits and hangs as errors.
// Progress goes to stderr so that stdout is only the report.
//
// The cluster scenarios (cluster-keepalive, cluster-close) are the same harness with their own list of
// implementations (`impls`: node:cluster and forkline's cluster, each with a scheduling policy) and their own table:
// the forked child is a cluster primary (cluster-primary.js) that forks 2 HTTP workers (http-worker.js) and reports
// the port; the load comes from wrk or, without it, from http-load.js, both separate processes on 127.0.0.1.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const nodeChildProcess = require('node:child_process');
const forkline = require('..');
const {
  CHILDREN,
  now,
  seconds,
  percentile,
  mean,
  median,
  fmtRate,
  fmtMicros,
  fmtMBs,
  withTimeout,
  track,
  untrack,
  killAll,
  runScenario,
  machineInfo,
  machineLine,
  tableWriter,
  problemLines,
} = require('./harness');

// ---------------------------------------------------------------------------------------------------------------
// Command line.

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const option = (name) => {
  const arg = argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? undefined : arg.slice(name.length + 3);
};
const QUICK = flag('quick');
const JSON_OUT = flag('json');
const ROUNDS = Number(option('rounds') ?? (QUICK ? 1 : 5));
const ONLY = option('only')?.split(',');
const LOADER_OPTION = option('loader');
if (LOADER_OPTION !== undefined && !['wrk', 'node'].includes(LOADER_OPTION)) {
  throw new Error('--loader must be wrk or node');
}
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds must be a positive integer');

// ---------------------------------------------------------------------------------------------------------------
// Payloads: built once, shared by both implementations.

const KB = 1024;
const MB = 1024 * 1024;
const SMALL = 'hello';
const small = (i) => ({ i, s: SMALL });
// The advanced-serialization small message: a Date and a Map, which JSON could not carry.
const smallAdvanced = (i) => ({ i, s: SMALL, d: new Date(0), m: new Map([[1, 2]]) });
const strings = new Map();
const payload = (size) => {
  if (!strings.has(size)) strings.set(size, 'x'.repeat(size));
  return strings.get(size);
};
const buffers = new Map();
// A Buffer of `size` bytes cycling through 0..250 (251 is prime, so no power-of-two period).
const bufferPayload = (size) => {
  if (!buffers.has(size)) buffers.set(size, Buffer.alloc(size, Buffer.from(Array.from({ length: 251 }, (_, k) => k))));
  return buffers.get(size);
};
const ADVANCED = { serialization: 'advanced' };
// Connections open at once in the handles row: enough to keep both processes busy, far from any fd limit.
const IN_FLIGHT = 32;

// ---------------------------------------------------------------------------------------------------------------
// Scenarios. `params` are the full-run sizes (counts are divided by 10 under --quick, unless the scenario gives
// `quickParams`); `run` gets a session on a freshly forked, ready child and returns named numbers. The clock never
// includes the spawn.

function echoScenario(label, size, count) {
  return {
    id: `echo-${label.replace(' ', '').toLowerCase()}`,
    child: 'echo-child.js',
    params: { n: count, warm: Math.max(1, Math.round(count / 10)) },
    rows: [{ name: `echo ${label} string, MB/s`, key: 'mbps', higherIsBetter: true, format: fmtMBs }],
    timeoutSeconds: 60,
    async run(session, { n, warm }) {
      const s = payload(size);
      // Warm-up, with a full check of what comes back (outside the clock).
      await echo(session, s, 0, warm, true);
      const t0 = now();
      await echo(session, s, warm, warm + n, false);
      const t1 = now();
      return { mbps: (n * size) / MB / seconds(t0, t1), seconds: seconds(t0, t1) };
    },
  };
}

// The same with `serialization: 'advanced'` and `{ i, b }`, `b` a Buffer of `size` bytes.
function bufferEchoScenario(label, size, count) {
  return {
    id: `adv-echo-${label.replace(' ', '').toLowerCase()}`,
    child: 'echo-child.js',
    forkOptions: ADVANCED,
    params: { n: count, warm: Math.max(1, Math.round(count / 10)) },
    rows: [{ name: `advanced echo ${label} Buffer, MB/s`, key: 'mbps', higherIsBetter: true, format: fmtMBs }],
    timeoutSeconds: 60,
    async run(session, { n, warm }) {
      const b = bufferPayload(size);
      await echoBuffer(session, b, 0, warm, true);
      const t0 = now();
      await echoBuffer(session, b, warm, warm + n, false);
      const t1 = now();
      return { mbps: (n * size) / MB / seconds(t0, t1), seconds: seconds(t0, t1) };
    },
  };
}

// Sends { i, s } for i in [from, to), one at a time, each after the previous echo came back.
function echo(session, s, from, to, fullCheck) {
  return new Promise((resolve, reject) => {
    let i = from;
    session.onMessage = (msg) => {
      if (msg.i !== i || msg.s.length !== s.length || (fullCheck && msg.s !== s)) {
        reject(new Error(`echo ${i}: got back i=${msg.i}, ${msg.s.length} chars, expected i=${i}, ${s.length}`));
        return;
      }
      if (++i === to) resolve();
      else session.child.send({ i, s });
    };
    session.child.send({ i, s });
  });
}

// Sends { i, b } for i in [from, to) as echo() does; what comes back must be a Buffer of the same length.
function echoBuffer(session, b, from, to, fullCheck) {
  return new Promise((resolve, reject) => {
    let i = from;
    session.onMessage = (msg) => {
      const back = msg.b;
      if (msg.i !== i || !Buffer.isBuffer(back) || back.length !== b.length || (fullCheck && !back.equals(b))) {
        const what = Buffer.isBuffer(back) ? `a ${back.length}-byte Buffer` : `${Object.prototype.toString.call(back)}`;
        reject(new Error(`echo ${i}: got back i=${msg.i}, ${what}, expected i=${i}, a ${b.length}-byte Buffer`));
        return;
      }
      if (++i === to) resolve();
      else session.child.send({ i, b });
    };
    session.child.send({ i, b });
  });
}

// Parent → child throughput: `make(k)` for k in [0, warm + n), all sent in one synchronous loop per phase; the
// sink child reports once at `warm` and once at `warm + n`.
function sinkScenario({ id, name, forkOptions, params, make }) {
  return {
    id,
    child: 'sink-child.js',
    forkOptions,
    params,
    childArgs: ({ n, warm }) => [String(warm), String(warm + n)],
    rows: [{ name, key: 'rate', higherIsBetter: true, format: fmtRate }],
    timeoutSeconds: 60,
    async run(session, { n, warm }) {
      const { child } = session;
      for (let k = 0; k < warm; k++) child.send(make(k));
      expectReport(await session.next(), warm);
      const t0 = now();
      for (let k = warm; k < warm + n; k++) child.send(make(k));
      expectReport(await session.next(), warm + n);
      const t1 = now();
      return { rate: n / seconds(t0, t1), seconds: seconds(t0, t1) };
    },
  };
}

// A net.Server on 127.0.0.1 (port 0) that hands every accepted socket to the session's child with
// `child.send('sock', socket)`. Closed when the measurement ends, whatever happened. Resolves to the port.
function handOffServer(session) {
  const server = net.createServer({ pauseOnConnect: true });
  session.defer(async (notes) => {
    if (!server.listening) return;
    const closed = new Promise((resolve) => server.close(resolve));
    await withTimeout(closed, 5000, 'server.close()').catch(() => notes.push('server not closed 5 s after close()'));
  });
  server.on('error', (err) => session.fail(new Error(`server: ${err.code ?? ''} ${err.message}`)));
  server.on('connection', (socket) => {
    session.child.send('sock', socket, (err) => {
      if (!err) return;
      socket.destroy();
      session.fail(new Error(`send('sock', socket): ${err.code ?? ''} ${err.message}`));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

// Opens `count` loopback connections to `port`, at most IN_FLIGHT at once; each must read exactly `ok` and then EOF.
// A new connection starts when one closes. Resolves once all `count` are closed. Open sockets are destroyed when the
// measurement ends.
function connectMany(session, port, count) {
  const open = new Set();
  let stopped = false;
  session.defer(() => {
    stopped = true;
    for (const socket of open) socket.destroy();
  });
  return new Promise((resolve, reject) => {
    let started = 0;
    let done = 0;
    let failed = false;
    const fail = (err) => {
      failed = true;
      reject(err);
    };
    const start = () => {
      const id = started++;
      let reply = '';
      const socket = net.connect({ port, host: '127.0.0.1' });
      open.add(socket);
      socket.setEncoding('latin1');
      socket.on('data', (chunk) => (reply += chunk));
      socket.on('error', (err) => fail(new Error(`connection ${id}: ${err.code ?? ''} ${err.message}`)));
      socket.on('close', () => {
        open.delete(socket);
        if (failed || stopped) return;
        if (reply !== 'ok') fail(new Error(`connection ${id}: closed after ${JSON.stringify(reply)}, expected "ok"`));
        else if (++done === count) resolve();
        else if (started < count) start();
      });
    };
    for (let k = 0; k < Math.min(IN_FLIGHT, count); k++) start();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster: HTTP hello world behind a cluster primary with 2 workers, node:cluster vs forkline's cluster, per
// scheduling policy. The forked child is the primary (always forked with node's own fork: it is only the harness's
// control channel); what differs is the cluster module the primary uses. The load generator is a separate process on
// 127.0.0.1: wrk (`-t1 -c32 --latency`) if it is on PATH, else bench/children/http-load.js (same shape: one thread,
// 32 connections, one request in flight on each).

const CLUSTER_WORKERS = 2;
const CLUSTER_CONNECTIONS = 32;
const fmtMillis = (v) => v.toFixed(2);

const clusterUnavailable = () =>
  typeof forkline.cluster === 'object' && forkline.cluster !== null
    ? null
    : "require('forkline').cluster does not exist yet";
const clusterImpl = (impl, policy, name) => ({
  name,
  impl,
  policy,
  fork: (...args) => nodeChildProcess.fork(...args),
  unavailable: impl === 'forkline' ? clusterUnavailable : () => null,
});
const CLUSTER_IMPLS = [
  clusterImpl('node', 'rr', 'node:cluster RR'),
  clusterImpl('forkline', 'rr', 'forkline RR'),
  clusterImpl('node', 'none', 'node:cluster none'),
  clusterImpl('forkline', 'none', 'forkline none'),
  clusterImpl('forkline', 'reuseport', 'forkline reuseport'),
];

// Which load generator runs: { name, describe }. Chosen once, in main(), when a cluster scenario is selected.
let loader = null;

function chooseLoader() {
  const probe = nodeChildProcess.spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  const wrk = !probe.error;
  if (LOADER_OPTION === 'wrk' && !wrk) throw new Error(`--loader=wrk: cannot run wrk (${probe.error.message})`);
  if (wrk && LOADER_OPTION !== 'node') {
    const version = /^wrk (\S+)/.exec(probe.stdout + probe.stderr);
    return { name: 'wrk', describe: `wrk ${version ? version[1] : ''} -t1 -c${CLUSTER_CONNECTIONS} --latency` };
  }
  const why = wrk ? '--loader=node' : 'wrk not on PATH';
  return { name: 'node', describe: `bench/children/http-load.js, ${CLUSTER_CONNECTIONS} connections (${why})` };
}

// Runs the loader against 127.0.0.1:port for `ms` milliseconds. Resolves to { rps, p50, p99 (ms), requests,
// seconds, errors }. The loader process is killed if the measurement ends first, whatever happened.
function runLoad(session, port, ms, close) {
  const wrk = loader.name === 'wrk';
  const mode = close ? 'close' : 'keepalive';
  const command = wrk ? 'wrk' : process.execPath;
  // wrk takes whole seconds: give it more, and stop it with SIGINT after `ms` (it then prints its report, with the
  // rate over the time it really ran).
  const args = wrk
    ? ['-t1', `-c${CLUSTER_CONNECTIONS}`, `-d${Math.ceil(ms / 1000) + 10}s`, '--latency', '--timeout', '5s']
        .concat(close ? ['-H', 'Connection: close'] : [])
        .concat(`http://127.0.0.1:${port}/`)
    : [path.join(CHILDREN, 'http-load.js'), String(port), String(ms), String(CLUSTER_CONNECTIONS), mode];
  const proc = nodeChildProcess.spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(proc);
  let stopped = false;
  session.defer(() => {
    stopped = true;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (chunk) => (out += chunk));
  proc.stderr.setEncoding('utf8').on('data', (chunk) => (err += chunk));
  // wrk's own CPU time, read just before it is stopped (http-load.js reports its own).
  let wrkCpuMicros = null;
  const timer = wrk
    ? setTimeout(() => {
        try {
          wrkCpuMicros = pidCpuMicros(proc.pid);
        } catch {
          // Gone already: it failed, and says why on exit.
        }
        proc.kill('SIGINT');
      }, ms)
    : null;
  return new Promise((resolve, reject) => {
    proc.on('error', (e) => reject(new Error(`${loader.name}: ${e.message}`)));
    proc.on('close', (code, signal) => {
      untrack(proc);
      clearTimeout(timer);
      if (stopped) return;
      if (code !== 0) {
        reject(
          new Error(`${loader.name} exited (code ${code}, signal ${signal}): ${(err || out).trim().slice(0, 300)}`),
        );
        return;
      }
      try {
        resolve(wrk ? { ...parseWrk(out), cpuMicros: wrkCpuMicros } : JSON.parse(out));
      } catch (e) {
        reject(new Error(`${loader.name}: ${e.message}; output: ${out.trim().slice(0, 300)}`));
      }
    });
  });
}

function parseWrk(out) {
  const toMillis = (value, unit) => Number(value) * { us: 1e-3, ms: 1, s: 1e3, m: 60e3 }[unit];
  const match = (re, what) => {
    const m = re.exec(out);
    if (!m) throw new Error(`no ${what} in wrk's output`);
    return m;
  };
  const total = match(/(\d+) requests in ([\d.]+)(us|ms|s|m)\b/, 'request count');
  const p50 = match(/^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$/m, 'p50');
  const p99 = match(/^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m, 'p99');
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const requests = Number(total[1]);
  const seconds = toMillis(total[2], total[3]) / 1e3;
  return {
    requests,
    seconds,
    rps: Number(match(/Requests\/sec:\s+([\d.]+)/, 'Requests/sec')[1]),
    p50: toMillis(p50[1], p50[2]),
    p99: toMillis(p99[1], p99[2]),
    errors: socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

// CPU time, in µs: the machine's busy time (all CPUs, from /proc/stat) and each pid's user + system time.
const CLOCK_TICK_MICROS = 1e6 / 100; // USER_HZ is 100 on every Linux ABI.
function cpuSnapshot(pids) {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const busy = fields.slice(0, 8).reduce((sum, v, k) => (k === 3 || k === 4 ? sum : sum + v), 0);
  return { time: now(), busy: busy * CLOCK_TICK_MICROS, perPid: pids.map(pidCpuMicros) };
}

// The backlog of every socket listening on 127.0.0.1:port, from `ss -ltn` (Send-Q); null without ss.
function listenBacklogs(port) {
  const ss = nodeChildProcess.spawnSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  if (ss.error || ss.status !== 0) return null;
  return ss.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => Number(line.trim().split(/\s+/)[2]));
}

// The kernel's TCP counters (this network namespace), e.g. ListenOverflows, TCPSynRetrans.
function tcpCounters() {
  const counters = {};
  const lines = fs.readFileSync('/proc/net/netstat', 'utf8').split('\n');
  for (let k = 0; k + 1 < lines.length; k += 2) {
    const names = lines[k].trim().split(/\s+/);
    const values = lines[k + 1].trim().split(/\s+/);
    if (names[0] !== 'TcpExt:') continue;
    names.forEach((name, i) => i > 0 && (counters[name] = Number(values[i])));
  }
  counters.ListenOverflows ??= 0;
  counters.TCPSynRetrans ??= 0;
  return counters;
}

function pidCpuMicros(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(after[11]) + Number(after[12])) * CLOCK_TICK_MICROS; // utime, stime (fields 14 and 15)
}

function clusterScenario(close) {
  const mode = close ? 'new connection per request' : 'keep-alive';
  const rows = [];
  for (const [policy, pair] of [
    ['SCHED_RR', ['node:cluster RR', 'forkline RR']],
    ['SCHED_NONE', ['node:cluster none', 'forkline none']],
    ['forkline reuseport vs node:cluster RR', ['node:cluster RR', 'forkline reuseport']],
  ]) {
    rows.push({ name: `${mode}, ${policy}, req/s`, key: 'rps', higherIsBetter: true, format: fmtRate, impls: pair });
    rows.push({
      name: `${mode}, ${policy}, p99 ms`,
      key: 'p99',
      higherIsBetter: false,
      format: fmtMillis,
      impls: pair,
    });
  }
  return {
    id: close ? 'cluster-close' : 'cluster-keepalive',
    table: 'cluster',
    mode,
    impls: CLUSTER_IMPLS,
    child: 'cluster-primary.js',
    childArgs: (params, impl) => [impl.impl, impl.policy, String(CLUSTER_WORKERS)],
    // Milliseconds of load: a warm-up (JIT, connection setup), then the measured run.
    params: { ms: 1500, warmMs: 400 },
    // A tenth of that would be mostly JIT warm-up and wrk's start: --quick runs a third instead.
    quickParams: { ms: 500, warmMs: 150 },
    rows,
    describe: (v) =>
      `${fmtRate(v.rps)} req/s, p99 ${fmtMillis(v.p99)} ms, primary ${v.primaryMicrosPerRequest.toFixed(1)} µs/req, ` +
      `workers ${v.workersMicrosPerRequest.toFixed(1)} µs/req, loader ${v.loaderCores.toFixed(2)} cores`,
    timeoutSeconds: 20,
    async run(session, { ms, warmMs }) {
      const { port, pids } = session.ready;
      if (!Number.isInteger(port) || !Array.isArray(pids) || pids.length !== CLUSTER_WORKERS) {
        throw new Error(`primary's ready message: ${JSON.stringify(session.ready)}`);
      }
      const backlogs = listenBacklogs(port);
      if (backlogs && backlogs.some((b) => b < CLUSTER_CONNECTIONS)) {
        session.notes.push(`listening on port ${port} with backlog ${backlogs.join(', ')} (ss -ltn)`);
      }
      await runLoad(session, port, warmMs, close);
      const watched = [session.child.pid, ...pids];
      const tcp0 = tcpCounters();
      const cpu0 = cpuSnapshot(watched);
      const load = await runLoad(session, port, ms, close);
      const cpu1 = cpuSnapshot(watched);
      const tcp1 = tcpCounters();
      const cpu = cpu1.perPid.map((t, k) => t - cpu0.perPid[k]);
      const primary = cpu[0];
      const workers = cpu.slice(1).reduce((sum, t) => sum + t, 0);
      const wall = Number(cpu1.time - cpu0.time) / 1e3; // µs
      if (load.requests === 0) throw new Error(`no response in ${ms} ms`);
      const busy = (cpu1.busy - cpu0.busy) / wall; // cores
      const loaderCores = load.cpuMicros === null ? NaN : load.cpuMicros / (ms * 1e3);
      const otherCores = busy - primary / wall - workers / wall - loaderCores;
      if (otherCores > 0.25) {
        session.notes.push(`something else kept ${otherCores.toFixed(2)} cores busy: this run is disturbed`);
      }
      if (load.errors || load.non2xx) {
        session.notes.push(`${load.errors} socket errors, ${load.non2xx} non-2xx of ${load.requests} responses`);
      }
      // Connections the kernel turned away (full accept queue): their client waits for a SYN retransmit, outside
      // the loader's latency clock, so this shows as a low rate with a low p99. The counter is the network
      // namespace's, so another program's overflows count too.
      const overflows = tcp1.ListenOverflows - tcp0.ListenOverflows;
      if (overflows > 0) {
        session.notes.push(
          `${overflows} listen-queue overflows (${tcp1.TCPSynRetrans - tcp0.TCPSynRetrans} SYN retransmits): ` +
            'an accept queue was full (a small listen backlog, or accept() too slow; counted machine-wide)',
        );
      }
      return {
        ...load,
        primaryMicrosPerRequest: primary / load.requests,
        workersMicrosPerRequest: workers / load.requests,
        primaryCores: primary / wall,
        workersCores: workers / wall,
        // The loader over the time it ran; what else kept CPUs busy meanwhile (this harness, kernel work charged to
        // no process, anything else on the machine); what was left idle.
        loaderCores,
        // (Clock-tick granularity can make it a little negative.)
        otherCores,
        idleCores: os.cpus().length - busy,
      };
    },
  };
}

// The cluster section of the report: its own table (node:cluster vs forkline's cluster, same policy, from
// tableRows), then every variant's medians with the CPU they used.
function clusterSection(lines, group, tableRows) {
  lines.push('');
  lines.push(`## node:cluster vs forkline's cluster: HTTP hello world, ${CLUSTER_WORKERS} workers`);
  lines.push('');
  lines.push(`Load: ${loader.describe}, on 127.0.0.1, on the same CPUs as the cluster.`);
  lines.push('');
  lines.push(`| row (load: ${loader.name}) | node:cluster | forkline | forkline/node |`);
  lines.push('|---|---:|---:|---:|');
  tableRows(group);
  lines.push('');
  lines.push(
    'forkline/node > 1 means forkline is better (for p99, lower is better, the ratio is node/forkline). The ' +
      'reuseport rows compare forkline SCHED_REUSEPORT (each worker its own SO_REUSEPORT socket) with node:cluster ' +
      "SCHED_RR, node's default on Linux: node has no such policy.",
  );
  const { params } = group[0];
  lines.push(
    `Per measurement: a fresh primary (bench/children/cluster-primary.js) forks ${CLUSTER_WORKERS} workers ` +
      '(bench/children/http-worker.js: ' +
      "`http.createServer((req, res) => res.end('hello world'))` on one port of 127.0.0.1) " +
      `and reports once both fired 'listening'; ${params.warmMs} ms of load as a warm-up, then ${params.ms} ms ` +
      `measured. keep-alive: ${CLUSTER_CONNECTIONS} persistent connections, one request in flight on each; new ` +
      'connection per request: every request says `Connection: close` and the next one opens a new connection. p99 ' +
      'runs from the write of the request (after the connect) to its complete response.',
  );
  const cpuCount = os.cpus().length;
  for (const { scenario, runs } of group) {
    lines.push('');
    lines.push(`${scenario.mode}, every variant (medians; CPU time over the measured run, from /proc):`);
    lines.push('');
    lines.push(
      '| variant | req/s | p50 ms | p99 ms | primary CPU µs/req | workers CPU µs/req | primary, cores | ' +
        `workers, cores | loader, cores | all else, cores | idle, cores of ${cpuCount} |`,
    );
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const impl of scenario.impls) {
      const ok = runs[impl.name].filter((r) => !r.error && !r.skipped).map((r) => r.values);
      const cell = (key, format) => (ok.length ? format(median(ok.map((v) => v[key]))) : '–');
      const two = (v) => v.toFixed(2);
      const one = (v) => v.toFixed(1);
      lines.push(
        `| ${impl.name} | ${cell('rps', fmtRate)} | ${cell('p50', fmtMillis)} | ${cell('p99', fmtMillis)} | ` +
          `${cell('primaryMicrosPerRequest', one)} | ${cell('workersMicrosPerRequest', one)} | ` +
          `${cell('primaryCores', two)} | ${cell('workersCores', two)} | ${cell('loaderCores', two)} | ` +
          `${cell('otherCores', two)} | ${cell('idleCores', two)} |`,
      );
    }
  }
  lines.push('');
}

const SCENARIOS = [
  sinkScenario({ id: 'p2c', name: 'parent → child, msgs/s', params: { n: 400_000, warm: 20_000 }, make: small }),
  {
    id: 'c2p',
    child: 'source-child.js',
    params: { n: 200_000, warm: 20_000 },
    rows: [{ name: 'child → parent, msgs/s', key: 'rate', higherIsBetter: true, format: fmtRate }],
    timeoutSeconds: 60,
    run(session, { n, warm }) {
      return new Promise((resolve, reject) => {
        let got = 0;
        let target = warm;
        let t0;
        session.onMessage = (msg) => {
          if (msg.i !== got) {
            reject(new Error(`message ${got} out of order: got i=${msg.i}`));
            return;
          }
          if (++got !== target) return;
          if (target === warm) {
            target = warm + n;
            t0 = now();
            session.child.send({ go: n });
          } else {
            const t1 = now();
            resolve({ rate: n / seconds(t0, t1), seconds: seconds(t0, t1) });
          }
        };
        session.child.send({ go: warm });
      });
    },
  },
  {
    id: 'rtt',
    child: 'echo-child.js',
    params: { n: 10_000, warm: 2_000 },
    rows: [
      { name: 'round trip p50, µs', key: 'p50', higherIsBetter: false, format: fmtMicros },
      { name: 'round trip p99, µs', key: 'p99', higherIsBetter: false, format: fmtMicros },
    ],
    timeoutSeconds: 60,
    run(session, { n, warm }) {
      return new Promise((resolve, reject) => {
        const micros = new Float64Array(n);
        const total = warm + n;
        let i = 0;
        let t0;
        session.onMessage = (msg) => {
          const t1 = now();
          if (msg.i !== i) {
            reject(new Error(`round trip ${i}: got back i=${msg.i}`));
            return;
          }
          if (i >= warm) micros[i - warm] = Number(t1 - t0) / 1e3;
          if (++i === total) {
            micros.sort();
            resolve({ p50: percentile(micros, 0.5), p99: percentile(micros, 0.99), mean: mean(micros) });
            return;
          }
          t0 = now();
          session.child.send(small(i));
        };
        t0 = now();
        session.child.send(small(i));
      });
    },
  },
  echoScenario('1 KB', KB, 10_000),
  echoScenario('64 KB', 64 * KB, 1_000),
  echoScenario('1 MB', MB, 40),
  echoScenario('16 MB', 16 * MB, 3),
  {
    id: 'handles',
    child: 'handle-child.js',
    params: { n: 3_000, warm: 300 },
    rows: [{ name: 'handles parent → child, sockets/s', key: 'rate', higherIsBetter: true, format: fmtRate }],
    timeoutSeconds: 60,
    async run(session, { n, warm }) {
      const port = await handOffServer(session);
      await connectMany(session, port, warm);
      const t0 = now();
      await connectMany(session, port, n);
      const t1 = now();
      return { rate: n / seconds(t0, t1), seconds: seconds(t0, t1) };
    },
  },
  sinkScenario({
    id: 'adv-p2c',
    name: 'advanced small objects parent → child, msgs/s',
    forkOptions: ADVANCED,
    params: { n: 200_000, warm: 20_000 },
    make: smallAdvanced,
  }),
  bufferEchoScenario('1 MB', MB, 200),
  bufferEchoScenario('16 MB', 16 * MB, 12),
  clusterScenario(false),
  clusterScenario(true),
];

function expectReport(report, got) {
  if (report.got !== got || report.outOfOrder !== 0 || report.malformed !== 0) {
    throw new Error(`child reported ${JSON.stringify(report)}, expected { got: ${got}, outOfOrder: 0, malformed: 0 }`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Main.

async function main() {
  if (flag('list')) {
    for (const s of SCENARIOS) console.log(`${s.id}\t${s.rows.map((r) => r.name).join('; ')}`);
    return 0;
  }
  const scenarios = ONLY ? SCENARIOS.filter((s) => ONLY.includes(s.id)) : SCENARIOS;
  if (ONLY && scenarios.length !== ONLY.length) throw new Error(`unknown scenario in --only (see --list)`);
  if (scenarios.some((s) => s.table === 'cluster')) loader = chooseLoader();

  const started = now();
  const machine = machineInfo();
  const results = [];
  for (const scenario of scenarios) results.push(await runScenario(scenario, { rounds: ROUNDS, quick: QUICK }));
  const wall = seconds(started, now());

  // The table.
  const lines = [];
  lines.push(`# forkline vs node:child_process`);
  lines.push('');
  lines.push(machineLine(machine));
  lines.push('');
  lines.push(`Median of ${ROUNDS} interleaved round${ROUNDS === 1 ? '' : 's'} per row${QUICK ? ' (--quick)' : ''}.`);
  const table = tableWriter(lines, ROUNDS);
  const tableRows = table.write;
  const clusterResults = results.filter(({ scenario }) => scenario.table === 'cluster');
  const ipcResults = results.filter(({ scenario }) => scenario.table !== 'cluster');
  if (ipcResults.length) {
    lines.push('');
    lines.push(
      '| row | node ↔ node | forkline ↔ node child | forkline ↔ forkline | forkline↔node / node | forkline↔forkline / node |',
    );
    lines.push('|---|---:|---:|---:|---:|---:|');
    tableRows(ipcResults);
  }
  if (ipcResults.length) {
    lines.push('');
    lines.push(
      'A ratio > 1 means forkline is better than node ↔ node on that row: for the latency rows (µs, lower is better) ' +
        'the ratio is node/forkline. forkline ↔ node child: a forkline parent, a plain node child; forkline ↔ ' +
        "forkline: the same child script run by forkline's child runtime (`childRuntime: 'forkline'`).",
    );
    lines.push(
      'Echo rows: the parent sends `{ i, s }` with `s` a string of that many ASCII chars (KB = 1024, MB = 1,048,576 ' +
        'bytes), waits for the echo, sends the next; MB/s counts the payload one way (the echo doubles the traffic). ' +
        "Advanced echo rows: the same with `serialization: 'advanced'` and `{ i, b }`, `b` a Buffer of that many bytes.",
    );
    lines.push(
      "Advanced small objects: as parent → child (`{ i, s: 'hello' }` sent in one loop, the child reports at the end) " +
        "with `serialization: 'advanced'` and `{ i, s: 'hello', d: new Date(0), m: new Map([[1, 2]]) }`.",
    );
    lines.push(
      "Handles: the parent listens on 127.0.0.1 and passes each accepted socket with `child.send('sock', socket)`; " +
        `the child writes \`ok\` and ends it; a client loop in the parent (${IN_FLIGHT} connections at a time) counts ` +
        'sockets/s from connect to close.',
    );
    const sizes = ipcResults.map(({ scenario, params }) => `${scenario.id} n=${params.n} warm-up=${params.warm}`);
    lines.push(`Per measurement (a fresh child each, clock started once it is ready): ${sizes.join(', ')}.`);
  }
  if (clusterResults.length) clusterSection(lines, clusterResults, tableRows);
  lines.push(`Total wall time ${wall.toFixed(1)} s.`);

  problemLines(lines, results);
  console.log(lines.join('\n'));

  if (JSON_OUT) {
    const raw = {
      machine,
      rounds: ROUNDS,
      quick: QUICK,
      wallSeconds: wall,
      rows: table.rows,
      runs: results.map(({ scenario, params, runs }) => ({ scenario: scenario.id, params, runs })),
    };
    console.log(`\n\`\`\`json\n${JSON.stringify(raw, null, 2)}\n\`\`\``);
  }
  return table.failures ? 1 : 0;
}

main().then(
  (code) => {
    killAll();
    process.exitCode = code;
    // Every child is gone and nothing of ours is pending: the process should end by itself. If a handle keeps it
    // alive, say so and leave anyway.
    setTimeout(() => {
      process.stderr.write('bench: the event loop was still alive 5 s after the end; exiting\n');
      process.exit(code || 2);
    }, 5000).unref();
  },
  (err) => {
    console.error(err);
    killAll();
    process.exit(1);
  },
);
