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

const net = require('node:net');
const {
  now,
  seconds,
  percentile,
  mean,
  fmtRate,
  fmtMicros,
  fmtMBs,
  withTimeout,
  killAll,
  runScenario,
  machineInfo,
  machineLine,
  tableWriter,
  problemLines,
} = require('./harness');
const cluster = require('./scenarios/cluster');

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

const CHILD_PROCESS_SCENARIOS = [
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
];

function expectReport(report, got) {
  if (report.got !== got || report.outOfOrder !== 0 || report.malformed !== 0) {
    throw new Error(`child reported ${JSON.stringify(report)}, expected { got: ${got}, outOfOrder: 0, malformed: 0 }`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Main.

// The scenario families, in table order. Each exports `scenarios`; it may also export `prepare(options)`, run once
// before the first measurement when one of its scenarios is selected, and `section(lines, results, writeRows)`, its
// own part of the report (without one, its rows go in the child_process table).
const FAMILIES = [{ scenarios: CHILD_PROCESS_SCENARIOS }, cluster];
const SCENARIOS = FAMILIES.flatMap((family) => family.scenarios);
const familyOf = (scenario) => FAMILIES.find((family) => family.scenarios.includes(scenario));

async function main() {
  if (flag('list')) {
    for (const s of SCENARIOS) console.log(`${s.id}\t${s.rows.map((r) => r.name).join('; ')}`);
    return 0;
  }
  const scenarios = ONLY ? SCENARIOS.filter((s) => ONLY.includes(s.id)) : SCENARIOS;
  if (ONLY && scenarios.length !== ONLY.length) throw new Error(`unknown scenario in --only (see --list)`);
  for (const family of FAMILIES) {
    if (family.prepare && scenarios.some((s) => familyOf(s) === family)) family.prepare({ loader: LOADER_OPTION });
  }

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
  const ipcResults = results.filter(({ scenario }) => !familyOf(scenario).section);
  if (ipcResults.length) {
    lines.push('');
    lines.push(
      '| row | node ↔ node | forkline ↔ node child | forkline ↔ forkline | forkline↔node / node | forkline↔forkline / node |',
    );
    lines.push('|---|---:|---:|---:|---:|---:|');
    table.write(ipcResults);
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
  for (const family of FAMILIES) {
    const group = results.filter(({ scenario }) => familyOf(scenario) === family);
    if (family.section && group.length) family.section(lines, group, table.write);
  }
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
