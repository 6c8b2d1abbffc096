'use strict';

// The channel itself, with JSON serialization: small messages parent → child and child → parent (throughput), round
// trips (latency), and echoes of strings from 1 KB to 16 MB.

const nodeChildProcess = require('node:child_process');
const { IMPLS, now, seconds, percentile, mean, fmtRate, fmtMicros, fmtMBs } = require('../harness');

// Payloads: built once, shared by every implementation.
const KB = 1024;
const MB = 1024 * 1024;
const SMALL = 'hello';
const small = (i) => ({ i, s: SMALL });
const strings = new Map();
const payload = (size) => {
  if (!strings.has(size)) strings.set(size, 'x'.repeat(size));
  return strings.get(size);
};

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

function expectReport(report, got) {
  if (report.got !== got || report.outOfOrder !== 0 || report.malformed !== 0) {
    throw new Error(`child reported ${JSON.stringify(report)}, expected { got: ${got}, outOfOrder: 0, malformed: 0 }`);
  }
}

// Sequential round trips of one small message: latency percentiles, and the parent's CPU per round trip. With
// `busyPoll`, forkline's ends poll that long after each send and receive (node:child_process has no such mode: its
// column is the plain node ↔ node one, the base of the ratios).
function rttScenario({ id, label, busyPoll }) {
  const impls =
    busyPoll === undefined
      ? undefined
      : IMPLS.map((impl) =>
          impl.name === 'node:child_process'
            ? impl
            : { ...impl, fork: (modulePath, args, options) => impl.fork(modulePath, args, { ...options, busyPoll }) },
        );
  return {
    id,
    child: 'echo-child.js',
    impls,
    params: { n: 10_000, warm: 2_000 },
    rows: [
      { name: `${label} p50, µs`, key: 'p50', higherIsBetter: false, format: fmtMicros },
      { name: `${label} p99, µs`, key: 'p99', higherIsBetter: false, format: fmtMicros },
      { name: `${label}, parent CPU µs each`, key: 'cpu', higherIsBetter: false, format: fmtMicros },
    ],
    timeoutSeconds: 60,
    run(session, { n, warm }) {
      return new Promise((resolve, reject) => {
        const micros = new Float64Array(n);
        const total = warm + n;
        let i = 0;
        let t0;
        let cpu0;
        session.onMessage = (msg) => {
          const t1 = now();
          if (msg.i !== i) {
            reject(new Error(`round trip ${i}: got back i=${msg.i}`));
            return;
          }
          if (i >= warm) micros[i - warm] = Number(t1 - t0) / 1e3;
          if (++i === total) {
            const { user, system } = process.cpuUsage(cpu0);
            micros.sort();
            resolve({
              p50: percentile(micros, 0.5),
              p99: percentile(micros, 0.99),
              mean: mean(micros),
              cpu: (user + system) / n,
            });
            return;
          }
          if (i === warm) cpu0 = process.cpuUsage();
          t0 = now();
          session.child.send(small(i));
        };
        t0 = now();
        session.child.send(small(i));
      });
    },
  };
}

// Pipelined echo: one child, `window` small messages in flight, each echo answered by the next send (a request
// handler keeping a few requests in flight to one helper process). msgs/s counts echoes.
function pipelineScenario(window) {
  return {
    id: `pipeline-${window}`,
    child: 'echo-child.js',
    params: { n: 40_000, warm: 4_000 },
    rows: [{ name: `pipelined echo, ${window} in flight, msgs/s`, key: 'rate', higherIsBetter: true, format: fmtRate }],
    timeoutSeconds: 60,
    run(session, { n, warm }) {
      return new Promise((resolve, reject) => {
        const total = warm + n;
        let sent = 0;
        let got = 0;
        let t0;
        const send = () => session.child.send(small(sent++));
        session.onMessage = (msg) => {
          if (msg.i !== got) {
            reject(new Error(`echo ${got}: got back i=${msg.i}`));
            return;
          }
          if (++got === warm) t0 = now();
          if (got === total) {
            const t1 = now();
            resolve({ rate: n / seconds(t0, t1), seconds: seconds(t0, t1) });
          } else if (sent < total) send();
        };
        for (let w = 0; w < window; w++) send();
      });
    },
  };
}

// The plain fork-and-echo loop: sequential round trips measured in a fresh parent process of their own
// (children/pingpong-parent.js), against a child that is nothing but `process.on('message', (m) => process.send(m))`,
// as a user's first ping-pong would be; the rtt row above measures the same in the bench's own process.
const loopImpl = (name, impl) => ({ name, impl, fork: (...args) => nodeChildProcess.fork(...args) });
const LOOP_IMPLS = [
  loopImpl(IMPLS[0].name, 'node'),
  loopImpl(IMPLS[1].name, 'forkline'),
  loopImpl(IMPLS[2].name, 'forkline-runtime'),
];
const rttLoopScenario = {
  id: 'rtt-loop',
  child: 'pingpong-parent.js',
  impls: LOOP_IMPLS,
  childArgs: (_, impl) => [impl.impl],
  params: { n: 10_000, warm: 500 },
  rows: [
    { name: 'round trip, plain fork-and-echo loop p50, µs', key: 'p50', higherIsBetter: false, format: fmtMicros },
    { name: 'round trip, plain fork-and-echo loop p99, µs', key: 'p99', higherIsBetter: false, format: fmtMicros },
  ],
  timeoutSeconds: 60,
  async run(session, go) {
    session.child.send({ go });
    const reply = await session.next();
    if (reply && reply.error) throw new Error(`pingpong-parent: ${reply.error}`);
    if (!reply || !reply.result) throw new Error(`pingpong-parent: unexpected reply ${JSON.stringify(reply)}`);
    return reply.result;
  },
};

const scenarios = [
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
  rttScenario({ id: 'rtt', label: 'round trip' }),
  rttLoopScenario,
  rttScenario({ id: 'rtt-busy', label: 'round trip, busyPoll 50 µs', busyPoll: 50 }),
  ...[1, 2, 8, 32].map(pipelineScenario),
  echoScenario('1 KB', KB, 10_000),
  // 4,000 (about 0.5 s a round): at 1,000 (0.13 s) the row's ratio moved between 0.91x and 1.19x from run to run,
  // at 4,000 between 1.19x and 1.27x (forkline's sequential 64 KB round trips go through stretches of a few hundred
  // ms at 95-100 µs and at 120-160, Node's at 120-140; a short round is one stretch or two).
  echoScenario('64 KB', 64 * KB, 4_000),
  echoScenario('1 MB', MB, 40),
  echoScenario('16 MB', 16 * MB, 3),
];

// sinkScenario and SMALL are for the advanced family's parent → child row, the same row with another serialization.
module.exports = { scenarios, sinkScenario, SMALL };
