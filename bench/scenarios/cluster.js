'use strict';

// Cluster: HTTP hello world behind a cluster primary with 2 workers, node:cluster vs forkline's cluster, per
// scheduling policy. The forked child is the primary (always forked with node's own fork: it is only the harness's
// control channel); what differs is the cluster module the primary uses. The load generator is a separate process on
// 127.0.0.1: wrk (`-t1 -c32 --latency`) if it is on PATH, else bench/children/http-load.js (same shape: one thread,
// 32 connections, one request in flight on each). These rows have their own implementations and their own section
// of the report.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const nodeChildProcess = require('node:child_process');
const forkline = require('../..');
const { CHILDREN, now, median, fmtRate, track, untrack } = require('../harness');
const { CLOCK_TICK_MICROS, machineBusyMicros } = require('../machine_cpu');

const CLUSTER_WORKERS = 2;
const CLUSTER_CONNECTIONS = 32;
const fmtMillis = (v) => v.toFixed(2);

const clusterUnavailable = () =>
  typeof forkline.cluster === 'object' && forkline.cluster !== null
    ? null
    : "require('forkline').cluster does not exist yet";
// `workerRuntime`: the child runtime forkline's primary forks its workers on (FORKLINE_CHILD_RUNTIME, which the
// primary inherits); node:cluster ignores it.
const clusterImpl = (impl, policy, name, workerRuntime = 'node') => ({
  name,
  impl,
  policy,
  fork: (modulePath, args, options) =>
    nodeChildProcess.fork(modulePath, args, {
      ...options,
      env: { ...process.env, FORKLINE_CHILD_RUNTIME: workerRuntime },
    }),
  unavailable: impl === 'forkline' ? clusterUnavailable : () => null,
});
const CLUSTER_IMPLS = [
  clusterImpl('node', 'rr', 'node:cluster RR'),
  clusterImpl('forkline', 'rr', 'forkline RR'),
  clusterImpl('forkline', 'rr', 'forkline RR, forkline workers', 'forkline'),
  clusterImpl('node', 'none', 'node:cluster none'),
  clusterImpl('forkline', 'none', 'forkline none'),
  clusterImpl('forkline', 'reuseport', 'forkline reuseport'),
];

// Which load generator runs: { name, describe }. Chosen once, by prepare(), when a cluster scenario is selected.
let loader = null;

// `option` is --loader's value: 'wrk', 'node' or undefined (wrk if it is on PATH).
function chooseLoader(option) {
  const probe = nodeChildProcess.spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  const wrk = !probe.error;
  if (option === 'wrk' && !wrk) throw new Error(`--loader=wrk: cannot run wrk (${probe.error.message})`);
  if (wrk && option !== 'node') {
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

// CPU time, in µs: the machine's busy time (all CPUs) and each pid's user + system time.
function cpuSnapshot(pids) {
  return { time: now(), busy: machineBusyMicros(), perPid: pids.map(pidCpuMicros) };
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
    ['SCHED_RR, workers on the forkline runtime', ['node:cluster RR', 'forkline RR, forkline workers']],
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

module.exports = {
  scenarios: [clusterScenario(false), clusterScenario(true)],
  prepare({ loader: option }) {
    loader = chooseLoader(option);
  },
  section: clusterSection,
};
