'use strict';

// The control socket of `forkline cluster` (server side) and the commands that talk to it (`forkline status|reload|
// stop [name]`, client side). One socket per running cluster: on Unix `<dir>/<name>.sock`, in a directory of the
// user's own: $FORKLINE_CONTROL_DIR, else $XDG_RUNTIME_DIR/forkline, else <tmpdir>/forkline-<uid>; on Windows the
// named pipe `\\.\pipe\forkline-<name>`. Only that user gets in, twice over: the directory is mode 0700 and the
// socket 0600, and the server asks the kernel who connected (SO_PEERCRED, src/os/sys.rs peer_uid: Node has no API
// for it) and answers anyone else with an error. The portable backend cannot ask (lib/backend.js peerUid): it
// checks instead, on every connection, that the directory and the socket still keep other users out, and answers an
// error if not; on Windows it relies on the pipe's default access list (docs/observability.md). The protocol is one
// JSON line each way: {"cmd":"status"|"reload"|"stop"} -> {"ok":true,...} or {"error":"..."}.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const process = require('node:process');
const backend = require('../backend');

const WINDOWS = process.platform === 'win32';
const PIPE_PREFIX = 'forkline-';
const COMMANDS = ['status', 'reload', 'stop'];
// A name is a file name in the control directory: nothing that could leave it or hide in it.
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/;
// status measures CPU and messages/s over this long.
const SAMPLE_MS = 500;
// Longest request line the server reads.
const MAX_REQUEST = 4096;
// Linux's USER_HZ, the unit of /proc/<pid>/stat's utime and stime: 100 on every architecture's ABI.
const CLOCK_TICKS = 100;

function controlDir() {
  if (WINDOWS) return '\\\\.\\pipe\\';
  if (process.env.FORKLINE_CONTROL_DIR) return process.env.FORKLINE_CONTROL_DIR;
  if (process.env.XDG_RUNTIME_DIR) return path.join(process.env.XDG_RUNTIME_DIR, 'forkline');
  return path.join(os.tmpdir(), `forkline-${process.getuid()}`);
}

// Where cluster `name` answers: a socket file in `dir`, or (Windows) a named pipe.
function controlAddress(dir, name) {
  return WINDOWS ? `${dir}${PIPE_PREFIX}${name}` : path.join(dir, `${name}.sock`);
}

// The cluster names `dir` holds a socket for.
function namesIn(dir) {
  const [prefix, suffix] = WINDOWS ? [PIPE_PREFIX, ''] : ['', '.sock'];
  return fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(prefix) && f.endsWith(suffix) && f.length > prefix.length + suffix.length)
    .map((f) => f.slice(prefix.length, f.length - suffix.length));
}

function checkName(name) {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new Error(`bad cluster name ${JSON.stringify(name)} (letters, digits, '.', '_' and '-' only)`);
  }
  return name;
}

// The launcher's default name: the app's file name without its extension.
function defaultName(app) {
  return path.basename(app, path.extname(app));
}

// Makes sure the control directory is private: ours, a real directory (not a symlink someone planted), closed to
// group and others. One that exists with wider permissions is refused rather than changed (it may be a directory
// the user shares on purpose).
function privateDir(dir) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.uid !== process.getuid()) throw new Error(`${dir} belongs to uid ${st.uid}, not to this user`);
  if (st.mode & 0o077) {
    throw new Error(`${dir} is open to other users (mode ${(st.mode & 0o777).toString(8)}): make it 0700`);
  }
}

// ---- server side: `forkline cluster` ----

// Opens the control socket for cluster `name`. `actions` are the launcher's { reload(), stop() } (what SIGHUP and
// SIGTERM do); reload returns a promise. Rejects if a cluster of that name already answers; a stale socket file (its
// launcher died) is replaced. The socket does not keep the process alive.
async function serveControl(name, cluster, actions) {
  checkName(name);
  const dir = controlDir();
  if (!WINDOWS) privateDir(dir);
  const file = controlAddress(dir, name);
  // A pipe goes with its server; a socket file stays behind a launcher that was killed.
  if (WINDOWS || fs.existsSync(file)) {
    if (await answers(file)) throw new Error(`a cluster named ${name} is already running (${file})`);
    if (!WINDOWS) fs.unlinkSync(file);
  }
  const server = net.createServer((socket) => serveConnection(socket, cluster, actions, dir, file));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.unref();
  if (WINDOWS) return { server, file };
  fs.chmodSync(file, 0o600);
  // A launcher that exits takes its name with it (libuv unlinks a bound path only when the handle closes).
  process.on('exit', () => {
    try {
      fs.unlinkSync(file);
    } catch {}
  });
  return { server, file };
}

function answers(file) {
  return new Promise((resolve) => {
    const socket = net.connect(file);
    socket.on('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

function serveConnection(socket, cluster, actions, dir, file) {
  socket.on('error', () => {});
  const reply = (message) => socket.end(`${JSON.stringify(message)}\n`);
  let uid;
  try {
    uid = backend.peerUid(socket._handle.fd);
  } catch (err) {
    return reply({ error: `cannot tell who connected (${err.message})` });
  }
  if (uid === null) {
    // The portable backend cannot tell: it serves only while the socket keeps everyone else out.
    const open = WINDOWS ? null : openToOthers(dir, file);
    if (open) return reply({ error: `permission denied: ${open}, and who connected cannot be checked` });
  } else if (uid !== process.getuid()) {
    return reply({ error: `permission denied: uid ${uid} may not control a cluster of uid ${process.getuid()}` });
  }
  let input = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk) => {
    input += chunk;
    const end = input.indexOf('\n');
    if (end === -1) {
      if (input.length > MAX_REQUEST) reply({ error: 'request too long' });
      return;
    }
    socket.removeAllListeners('data');
    let request;
    try {
      request = JSON.parse(input.slice(0, end));
    } catch {
      return reply({ error: 'request is not JSON' });
    }
    handle(request, cluster, actions).then(reply, (err) => reply({ error: err.message }));
  });
}

// What lets another user reach the socket (the directory or the socket made wider than 0700 / 0600, or not ours),
// or null if nothing does.
function openToOthers(dir, file) {
  for (const [what, mode] of [
    [dir, 0o700],
    [file, 0o600],
  ]) {
    let st;
    try {
      st = fs.lstatSync(what);
    } catch (err) {
      return `${what} cannot be checked (${err.code})`;
    }
    if (st.uid !== process.getuid()) return `${what} belongs to uid ${st.uid}`;
    if ((st.mode & 0o777) !== mode) return `${what} is mode ${(st.mode & 0o777).toString(8)}, not ${mode.toString(8)}`;
  }
  return null;
}

async function handle(request, cluster, actions) {
  switch (request && request.cmd) {
    case 'status':
      return { ok: true, pid: process.pid, workers: await sampleWorkers(cluster) };
    case 'reload':
      await actions.reload();
      return { ok: true };
    case 'stop':
      // Answer first: stopping may end this process before a later write would go out.
      setImmediate(() => actions.stop());
      return { ok: true };
    default:
      return { error: `unknown command ${JSON.stringify(request && request.cmd)}` };
  }
}

// /proc/<pid>/stat's utime + stime in seconds, and VmRSS in bytes from /proc/<pid>/status (statm counts pages,
// and Node has no page-size API); null once the process is gone.
function procSample(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself hold spaces and parentheses: state is field 3, utime 14.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    const vmRss = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { cpu, rss: vmRss ? Number(vmRss[1]) * 1024 : null };
  } catch {
    return null;
  }
}

// cluster.stats() twice, SAMPLE_MS apart, with each worker's RSS and its CPU and messages per second in between.
async function sampleWorkers(cluster) {
  const messages = (w) => (w.channel ? w.channel.messagesSent + w.channel.messagesReceived : 0);
  const before = new Map(cluster.stats().map((w) => [w.id, { w, proc: procSample(w.pid), at: process.hrtime() }]));
  await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
  return cluster.stats().map((w) => {
    const proc = procSample(w.pid);
    const then = before.get(w.id);
    const out = { ...w, rss: proc ? proc.rss : null, cpu: null, messagesPerSec: null };
    if (then && proc && then.proc) {
      const [s, ns] = process.hrtime(then.at);
      const seconds = s + ns / 1e9;
      out.cpu = (100 * (proc.cpu - then.proc.cpu)) / seconds;
      out.messagesPerSec = (messages(w) - messages(then.w)) / seconds;
    }
    return out;
  });
}

// ---- client side: `forkline status|reload|stop [name]` ----

function isControlCommand(word) {
  return COMMANDS.includes(word);
}

// The running cluster's name when none is given: the only socket in the directory.
function onlyName(dir) {
  let names = [];
  try {
    names = namesIn(dir);
  } catch {}
  if (names.length === 1) return names[0];
  if (names.length === 0) throw new Error(`no cluster is running (nothing in ${dir})`);
  throw new Error(`several clusters are running (${names.sort().join(', ')}): name one`);
}

function request(file, name, message) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(file);
    let input = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(message)}\n`));
    socket.on('data', (chunk) => (input += chunk));
    socket.on('end', () => {
      const line = input.split('\n')[0];
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`cluster ${name} gave no answer`));
      }
    });
    socket.on('error', (err) => {
      if (err.code === 'ENOENT') reject(new Error(`no cluster named ${name} is running (no ${file})`));
      else if (err.code === 'ECONNREFUSED') {
        reject(new Error(`cluster ${name} is not running (stale control socket ${file})`));
      } else if (err.code === 'EACCES') reject(new Error(`permission denied on ${file}`));
      else reject(new Error(`cannot reach cluster ${name}: ${err.message}`));
    });
  });
}

const CLIENT_USAGE = 'Usage: forkline status|reload|stop [name] [--json]';

async function runControlCommand(argv) {
  const [cmd, ...rest] = argv;
  const json = rest.includes('--json');
  const args = rest.filter((a) => a !== '--json');
  try {
    if (args.length > 1 || args.some((a) => a.startsWith('-'))) throw new Error(`bad arguments\n${CLIENT_USAGE}`);
    const dir = controlDir();
    const name = checkName(args.length ? args[0] : onlyName(dir));
    const answer = await request(controlAddress(dir, name), name, { cmd });
    if (answer.error) throw new Error(answer.error);
    if (json) process.stdout.write(`${JSON.stringify(answer)}\n`);
    else if (cmd === 'status') process.stdout.write(formatStatus(name, answer));
    else process.stdout.write(`${cmd === 'reload' ? 'reloaded' : 'stopping'} ${name}\n`);
  } catch (err) {
    process.stderr.write(`forkline: ${err.message}\n`);
    process.exitCode = 1;
  }
}

function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor(s / 3600) % 24).padStart(2, '0')}h`;
}

function bytes(n) {
  if (n == null) return '-';
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

function formatStatus(name, answer) {
  const head = ['id', 'pid', 'state', 'uptime', 'restarts', 'rss', 'cpu', 'msg/s', 'conns', 'refused'];
  const rows = answer.workers.map((w) => [
    String(w.id),
    String(w.pid),
    w.state,
    duration(w.uptime),
    String(w.restarts),
    bytes(w.rss),
    w.cpu == null ? '-' : `${w.cpu.toFixed(1)}%`,
    w.messagesPerSec == null ? '-' : w.messagesPerSec.toFixed(1),
    String(w.connections.handed),
    String(w.connections.refused),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => `${cells.map((c, i) => c.padEnd(widths[i])).join('  ')}`.trimEnd();
  return `${name} (primary pid ${answer.pid}, ${rows.length} worker${rows.length === 1 ? '' : 's'})\n${[head, ...rows].map(line).join('\n')}\n`;
}

module.exports = { serveControl, runControlCommand, isControlCommand, defaultName, checkName, controlDir };
