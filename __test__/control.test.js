'use strict';

// The control CLI against a running launcher (`forkline cluster`): status / reload / stop, cluster.stats() through
// it, the cluster's trace lines, bad names, stale and taken sockets, and another user refused twice over (by the
// socket's permissions, and with those relaxed, by the peer-credential check).
const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { isAlive, waitUntil, tmpDir, killQuietly, processRef, BACKEND } = require('./helpers');

const CLI = path.join(__dirname, '..', 'index.js');
const WORKER = path.join(__dirname, 'fixtures', 'cluster-worker-http.js');
const NOBODY = 65534;

function run(args, { env = {}, cli = CLI, node = process.execPath, ...options } = {}) {
  const child = spawn(node, [cli, ...args], {
    env: { ...process.env, NODE_DEBUG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  const out = { child, stdout: '', stderr: '', exit: null };
  child.stdout.setEncoding('utf8').on('data', (d) => (out.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (out.stderr += d));
  out.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve((out.exit = { code, signal }))));
  return out;
}

// A copy of the CLI (the package's JS and its addon) and of this Node, in a world-readable temp folder: another
// user's client must reach them wherever the checkout and this Node live (a 0700 home folder, say).
function clientCopy(t) {
  const root = tmpDir(t);
  fs.chmodSync(root, 0o755);
  const pkg = path.join(root, 'forkline');
  fs.mkdirSync(pkg);
  for (const name of ['index.js', 'package.json', 'lib']) {
    fs.cpSync(path.join(__dirname, '..', name), path.join(pkg, name), { recursive: true });
  }
  fs.copyFileSync(require('../lib/addon_path').LOCAL, path.join(pkg, 'forkline.node'));
  const node = path.join(root, 'node');
  try {
    fs.linkSync(process.execPath, node);
  } catch {
    fs.copyFileSync(process.execPath, node);
  }
  fs.chmodSync(node, 0o755);
  return { cli: path.join(pkg, 'index.js'), node };
}

// One client command, to its end.
async function ctl(dir, args, options = {}) {
  const out = run(args, { ...options, env: { FORKLINE_CONTROL_DIR: dir, ...options.env } });
  const { code } = await out.exited;
  return { code, stdout: out.stdout, stderr: out.stderr };
}

function launch(t, dir, args, env = {}) {
  const out = run(['cluster', ...args, WORKER], {
    env: { FORKLINE_CONTROL_DIR: dir, HOST: '127.0.0.1', PORT: '0', REPORT_PORT: '1', ...env },
  });
  t.after(async () => {
    if (out.exit === null) out.child.kill('SIGKILL');
  });
  return out;
}

function ask(port) {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d) => (body += d));
        res.on('end', () => resolve(Number(body.replace('pid ', ''))));
      })
      .on('error', () => resolve(null));
  });
}

// status --json, once it answers.
async function status(dir, name) {
  const { code, stdout, stderr } = await ctl(dir, ['status', name, '--json']);
  assert.strictEqual(code, 0, stderr);
  return JSON.parse(stdout);
}

// The port the workers listen on: the launcher's app reports nothing, so read it from the workers' sockets.
async function portOf(dir, name) {
  let workers = [];
  await waitUntil(
    async () => {
      const s = await ctl(dir, ['status', name, '--json']);
      if (s.code !== 0) return false;
      workers = JSON.parse(s.stdout).workers;
      return workers.length === 2 && workers.every((w) => w.state === 'listening');
    },
    20_000,
    'two listening workers',
  );
  // The primary listens (round-robin): its listening socket's port, from /proc/net/tcp by the primary's inode.
  return workers;
}

function listeningPort(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {}
  }
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] === '0A' && inodes.has(f[9])) return parseInt(f[1].split(':')[1], 16);
  }
  return null;
}

test(
  'status, reload and stop a running launcher; cluster.stats() and the cluster trace',
  { timeout: 90_000 },
  async (t) => {
    const dir = path.join(tmpDir(t), 'ctl');
    const name = `vis-${process.pid}`;
    const launcher = launch(t, dir, ['-w', '2', '--restart', '--name', name], { NODE_DEBUG: 'forkline:cluster' });
    const workers = await portOf(dir, name);
    const workerRefs = workers.map((w) => processRef(w.pid));
    t.after(() => workerRefs.forEach((w) => killQuietly(w)));
    assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700);
    assert.strictEqual(fs.statSync(path.join(dir, `${name}.sock`)).mode & 0o777, 0o600);
    const port = listeningPort(launcher.child.pid);
    assert.ok(port, 'the primary listens');

    // Every connection is handed to a worker exactly once; each hand-off is one handle on its channel.
    const requests = 12;
    for (let i = 0; i < requests; i++) assert.ok(await ask(port));
    let s = await status(dir, name);
    assert.strictEqual(s.pid, launcher.child.pid);
    assert.deepStrictEqual(s.workers.map((w) => w.id).sort(), [1, 2]);
    assert.strictEqual(
      s.workers.reduce((n, w) => n + w.connections.handed, 0),
      requests,
    );
    for (const w of s.workers) {
      assert.strictEqual(w.connections.refused, 0);
      assert.strictEqual(w.channel.handlesSent, w.connections.handed);
      assert.strictEqual(w.restarts, 0);
      assert.ok(w.rss > 1024 * 1024, `rss ${w.rss}`);
      assert.ok(w.uptime > 0 && w.cpu >= 0 && w.messagesPerSec >= 0);
    }

    // The table: a header and one row per worker, with its pid and state.
    const table = await ctl(dir, ['status', name]);
    assert.strictEqual(table.code, 0, table.stderr);
    const rows = table.stdout.trim().split('\n');
    assert.match(rows[0], new RegExp(`^${name} \\(primary pid ${launcher.child.pid}, 2 workers\\)$`));
    assert.match(rows[1], /^id\s+pid\s+state\s+uptime\s+restarts\s+rss\s+cpu\s+msg\/s\s+conns\s+refused$/);
    assert.strictEqual(rows.length, 4);
    for (const w of s.workers) {
      assert.ok(
        rows.some((r) =>
          new RegExp(`^${w.id}\\s+${w.pid}\\s+listening\\s+\\d+s\\s+0\\s+[\\d.]+ MiB\\s+[\\d.]+%`).test(r),
        ),
        table.stdout,
      );
    }

    // A worker that dies is restarted; its replacement says so.
    process.kill(s.workers[0].pid, 'SIGKILL');
    await waitUntil(
      async () => {
        const now = await status(dir, name);
        return now.workers.length === 2 && now.workers.some((w) => w.id === 3 && w.restarts === 1);
      },
      20_000,
      'the restarted worker',
    );

    // reload: every worker replaced, as SIGHUP does; the restart count stays with the slot.
    const before = (await status(dir, name)).workers;
    const reloaded = await ctl(dir, ['reload', name]);
    assert.deepStrictEqual([reloaded.code, reloaded.stdout, reloaded.stderr], [0, `reloaded ${name}\n`, '']);
    s = await status(dir, name);
    for (const w of s.workers) assert.ok(!before.some((b) => b.pid === w.pid), 'a new pid');
    for (const b of before) await waitUntil(() => !isAlive(b.pid), 10_000, `old worker ${b.pid} exits`);
    assert.deepStrictEqual(s.workers.map((w) => w.restarts).sort(), [0, 1]);
    workers.push(...s.workers);

    // stop: what SIGTERM does; the socket goes with the launcher.
    const stopped = await ctl(dir, ['stop', name]);
    assert.deepStrictEqual([stopped.code, stopped.stdout], [0, `stopping ${name}\n`]);
    assert.deepStrictEqual(await launcher.exited, { code: 0, signal: null }, launcher.stderr);
    assert.match(launcher.stderr, /forkline stop: disconnecting the workers/);
    assert.ok(!fs.existsSync(path.join(dir, `${name}.sock`)));
    const gone = await ctl(dir, ['status', name]);
    assert.strictEqual(gone.code, 1);
    assert.strictEqual(
      gone.stderr,
      `forkline: no cluster named ${name} is running (no ${path.join(dir, `${name}.sock`)})\n`,
    );

    // NODE_DEBUG=forkline:cluster told the story.
    for (const line of [
      /^FORKLINE:CLUSTER \d+: fork worker 1 pid \d+$/m,
      /^FORKLINE:CLUSTER \d+: worker 2 serves 127\.0\.0\.1:0:4:\S+ \(rr\)$/m,
      /^FORKLINE:CLUSTER \d+: worker 1 pid \d+ exited: code null signal SIGKILL$/m,
      /^FORKLINE:CLUSTER \d+: restart after 1 deaths: worker 1$/m,
      /^FORKLINE:CLUSTER \d+: reload start$/m,
      /^FORKLINE:CLUSTER \d+: reload replace: worker 2 -> 4$/m,
      /^FORKLINE:CLUSTER \d+: reload done$/m,
    ]) {
      assert.match(launcher.stderr, line);
    }
  },
);

test(
  'bad names, no cluster, a stale socket and a name already taken: one line, non-zero exit',
  { timeout: 60_000 },
  async (t) => {
    const dir = path.join(tmpDir(t), 'ctl');
    let r = await ctl(dir, ['status', '../etc']);
    assert.deepStrictEqual(
      [r.code, r.stderr],
      [1, `forkline: bad cluster name "../etc" (letters, digits, '.', '_' and '-' only)\n`],
    );
    r = await ctl(dir, ['stop']);
    assert.deepStrictEqual([r.code, r.stderr], [1, `forkline: no cluster is running (nothing in ${dir})\n`]);
    r = await ctl(dir, ['reload', 'a', 'b']);
    assert.strictEqual(r.code, 1);

    // A launcher killed outright leaves its socket behind: the client says it is stale.
    const name = 'stale';
    const first = launch(t, dir, ['-w', '1', '--name', name]);
    const file = path.join(dir, `${name}.sock`);
    let workers = [];
    await waitUntil(
      async () => {
        const s = await ctl(dir, ['status', '--json']);
        workers = s.code === 0 ? JSON.parse(s.stdout).workers : [];
        return workers.length === 1;
      },
      20_000,
      'the first launcher',
    );
    const firstWorkers = workers.map((w) => processRef(w.pid));
    // The same name again is refused while the first runs.
    const second = launch(t, dir, ['-w', '1', '--name', name]);
    assert.deepStrictEqual(await second.exited, { code: 1, signal: null });
    assert.match(
      second.stderr,
      new RegExp(`cannot open the control socket: a cluster named ${name} is already running`),
    );
    first.child.kill('SIGKILL');
    await first.exited;
    firstWorkers.forEach((w) => killQuietly(w));
    assert.ok(fs.existsSync(file));
    r = await ctl(dir, ['status', name]);
    assert.deepStrictEqual(
      [r.code, r.stderr],
      [1, `forkline: cluster ${name} is not running (stale control socket ${file})\n`],
    );

    // A new launcher of that name takes the stale socket over.
    const third = launch(t, dir, ['-w', '1', '--name', name]);
    await waitUntil(async () => (await ctl(dir, ['status', name])).code === 0, 20_000, 'the third launcher');
    const s = await status(dir, name);
    const workerRefs = s.workers.map((w) => processRef(w.pid));
    t.after(() => workerRefs.forEach((w) => killQuietly(w)));
    assert.strictEqual(s.pid, third.child.pid);
    third.child.kill('SIGTERM');
    assert.deepStrictEqual(await third.exited, { code: 0, signal: null });
  },
);

test(
  'another user is refused: by the socket permissions, and by the peer credentials (or, portable, by the permission check) when those are relaxed',
  {
    timeout: 60_000,
    skip: process.getuid() !== 0 && 'needs root to run a client as another user',
  },
  async (t) => {
    const root = tmpDir(t);
    const dir = path.join(root, 'ctl');
    const name = 'guarded';
    launch(t, dir, ['-w', '1', '--name', name]);
    await waitUntil(async () => (await ctl(dir, ['status', name])).code === 0, 20_000, 'the launcher');
    const s = await status(dir, name);
    const workerRefs = s.workers.map((w) => processRef(w.pid));
    t.after(() => workerRefs.forEach((w) => killQuietly(w)));
    const file = path.join(dir, `${name}.sock`);
    const client = clientCopy(t);
    const asNobody = (args) => ctl(dir, args, { uid: NOBODY, gid: NOBODY, ...client });

    // The directory (0700) keeps another user out before the socket is even reached.
    fs.chmodSync(root, 0o755);
    let r = await asNobody(['status', name]);
    assert.deepStrictEqual([r.code, r.stderr], [1, `forkline: permission denied on ${file}\n`]);
    // So does the socket (0600) once the directory lets it through.
    fs.chmodSync(dir, 0o755);
    r = await asNobody(['stop', name]);
    assert.deepStrictEqual([r.code, r.stderr], [1, `forkline: permission denied on ${file}\n`]);
    // With both relaxed the connection is made, and the server refuses the peer by its uid; the portable backend,
    // which cannot learn the peer's uid, refuses everyone while the permissions are relaxed.
    fs.chmodSync(file, 0o666);
    const refusal =
      BACKEND === 'native'
        ? `permission denied: uid ${NOBODY} may not control a cluster of uid 0`
        : `permission denied: ${dir} is mode 755, not 700, and who connected cannot be checked`;
    for (const cmd of ['status', 'stop']) {
      r = await asNobody([cmd, name]);
      assert.deepStrictEqual([r.code, r.stdout, r.stderr], [1, '', `forkline: ${refusal}\n`]);
    }
    if (BACKEND === 'portable') {
      // So is the owner, until the permissions are back.
      r = await ctl(dir, ['status', name]);
      assert.deepStrictEqual([r.code, r.stderr], [1, `forkline: ${refusal}\n`]);
      fs.chmodSync(dir, 0o700);
      fs.chmodSync(file, 0o600);
    }
    // The owner still gets in, and the cluster was not stopped.
    const after = await status(dir, name);
    assert.deepStrictEqual(
      after.workers.map((w) => w.pid),
      s.workers.map((w) => w.pid),
    );
  },
);

test('a control directory open to other users is refused, not changed', { timeout: 30_000 }, async (t) => {
  const dir = path.join(tmpDir(t), 'ctl');
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  const launcher = launch(t, dir, ['-w', '1', '--name', 'open']);
  assert.deepStrictEqual(await launcher.exited, { code: 1, signal: null });
  assert.match(
    launcher.stderr,
    /cannot open the control socket: \S+ is open to other users \(mode 755\): make it 0700\n$/,
  );
  assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o755);
});
