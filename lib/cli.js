'use strict';

// The launcher: `npx forkline cluster [-w N] [--policy rr|none|reuseport] [--restart[=N]] app.js [args...]` runs an
// unmodified app under forkline's cluster primary. SIGINT/SIGTERM disconnect the workers gracefully (a second
// signal, or the grace period running out, kills them); SIGHUP/SIGUSR2 reload them one by one. It serves a control
// socket under --name, which `forkline status|reload|stop [name]` talk to (lib/cluster/control.js).

const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const process = require('node:process');
const { cluster, policyFromEnv } = require('./backend').primary();
const { RESTART_DEFAULTS, restartSettings } = require('./cluster/restart');
const control = require('./cluster/control');

const CLI_USAGE = `Usage: forkline cluster [options] <app.js> [app args...]
       forkline status|reload|stop [name] [--json]

Options:
  -w, --workers <n>     workers to run (default: the number of CPUs)
  -p, --policy <name>   rr (default), none or reuseport
  -r, --restart[=<n>]   re-fork workers that die, giving up after <n> deaths a minute (default 5)
  -g, --grace <ms>      how long a graceful shutdown may take before workers are killed (default 10000)
  -n, --name <name>     the control socket's name (default: the app's file name without its extension)
      --bus <url>       the host's bus broker (forkline/bus), e.g. redis://127.0.0.1:6379 (or FORKLINE_BUS_URL)
  -h, --help            this text

Signals: SIGINT/SIGTERM shut down gracefully, SIGHUP/SIGUSR2 reload the workers one by one.
status prints the workers of a running cluster; reload and stop do what SIGHUP and SIGTERM do.`;

function parseCli(argv) {
  const opts = { workers: os.availableParallelism(), policy: 'rr', restart: false, grace: 10_000 };
  const number = (flag, value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a positive integer, got ${util.inspect(value)}`);
    return n;
  };
  if (argv[0] !== 'cluster') throw new Error(argv[0] === undefined ? 'no command given' : `unknown command ${argv[0]}`);
  let i = 1;
  for (; i < argv.length && argv[i].startsWith('-'); i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === '-h' || flag === '--help') return { help: true };
    else if (flag === '-w' || flag === '--workers') opts.workers = number(flag, value());
    else if (flag === '-p' || flag === '--policy') {
      opts.policy = value();
      if (!['rr', 'none', 'reuseport'].includes(opts.policy)) throw new Error(`unknown policy ${opts.policy}`);
    } else if (flag === '-r' || flag === '--restart') {
      opts.restart = { maxRestarts: inline !== undefined ? number(flag, inline) : RESTART_DEFAULTS.maxRestarts };
    } else if (flag === '-g' || flag === '--grace') opts.grace = number(flag, value());
    else if (flag === '-n' || flag === '--name') opts.name = control.checkName(value());
    else if (flag === '--bus') opts.bus = value();
    else if (flag === '--') {
      i++;
      break;
    } else throw new Error(`unknown option ${flag}`);
  }
  if (i >= argv.length) throw new Error('no app given');
  opts.name ??= control.checkName(control.defaultName(argv[i]));
  return { ...opts, app: argv[i], args: argv.slice(i + 1) };
}

function runCli(argv) {
  if (control.isControlCommand(argv[0])) return control.runControlCommand(argv);
  let opts;
  try {
    opts = parseCli(argv);
  } catch (err) {
    process.stderr.write(`forkline: ${err.message}\n\n${CLI_USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (opts.help) {
    process.stdout.write(`${CLI_USAGE}\n`);
    return;
  }
  const log = (text) => process.stderr.write(`[forkline] ${text}\n`);
  cluster.schedulingPolicy = policyFromEnv(opts.policy);
  const bus = opts.bus !== undefined ? { bus: { url: opts.bus } } : {};
  cluster.setupPrimary({ exec: path.resolve(opts.app), args: opts.args, restart: opts.restart, ...bus });
  cluster.on('exit', (worker, code, signal) => {
    if (!worker.exitedAfterDisconnect) log(`worker ${worker.id} (pid ${worker.process.pid}) died (${signal || code})`);
  });
  cluster.on('giveup', (worker, deaths) => {
    log(`${deaths} workers died within ${restartSettings(cluster.settings).windowMs} ms: giving up`);
    process.exitCode = 1;
  });
  let stopping = false;
  const stop = (signal) => {
    if (stopping) {
      log(`${signal} again: killing the workers`);
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGKILL');
      process.exit(1);
    }
    stopping = true;
    log(`${signal}: disconnecting the workers`);
    const timer = setTimeout(() => {
      log(`workers still running after ${opts.grace} ms: killing them`);
      for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGKILL');
      process.exitCode = 1;
    }, opts.grace);
    timer.unref();
    cluster.disconnect(() => clearTimeout(timer));
  };
  const reload = (signal) => {
    if (stopping) return;
    log(`${signal}: reloading the workers`);
    const done = cluster.reload();
    done.then(
      () => log('reload done'),
      (err) => log(`reload failed: ${err.message}`),
    );
    return done;
  };
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, stop);
  for (const signal of ['SIGHUP', 'SIGUSR2']) process.on(signal, reload);
  const actions = {
    reload: () => reload('forkline reload') ?? Promise.reject(new Error('the cluster is stopping')),
    stop: () => stop('forkline stop'),
  };
  control.serveControl(opts.name, cluster, actions).then(
    () => {
      for (let n = 0; n < opts.workers; n++) cluster.fork();
    },
    (err) => {
      log(`cannot open the control socket: ${err.message}`);
      process.exitCode = 1;
    },
  );
}

module.exports = { runCli };
