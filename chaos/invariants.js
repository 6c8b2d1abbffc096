'use strict';

// The after-round checks: this process's fds (/proc/self/fd) and threads (/proc/self/task) back to what they were
// before the round, no descendant process left (a walk of /proc/*/stat by ppid), no process left that carries the
// round's token in its environment (that finds what was orphaned too: a killed primary's workers), and the message
// ledger: no (sender, seq) delivered twice, each sender's seqs in order, and whatever must have arrived did.

const fs = require('node:fs');

const TOKEN_VAR = 'FORKLINE_CHAOS_TOKEN';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function fds() {
  const out = new Map();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // the directory handle readdirSync had open
    }
  }
  return out;
}

function threads() {
  const out = new Map();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      out.set(tid, fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim());
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

// inode -> { local, remote } ports of this machine's TCP sockets (/proc/net/tcp and tcp6).
function tcpSockets() {
  const out = new Map();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const port = (addr) => parseInt(addr.slice(addr.lastIndexOf(':') + 1), 16);
      out.set(cols[9], { local: port(cols[1]), remote: port(cols[2]), listening: cols[3] === '0A' });
    }
  }
  return out;
}

// This process's fds that are TCP sockets: [fd, { local, remote }].
function tcpFds() {
  const sockets = tcpSockets();
  const out = [];
  for (const [fd, target] of fds()) {
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && sockets.has(m[1])) out.push([fd, sockets.get(m[1])]);
  }
  return out;
}

// Who holds a listening TCP socket on `port`: among this process and the live processes carrying `token` (a port
// another process on the machine took since is not ours to judge). Returns ['<pid> fd <fd>', ...].
function listenHolders(port, token) {
  const inodes = new Set();
  for (const [inode, s] of tcpSockets()) if (s.listening && s.local === port) inodes.add(inode);
  if (inodes.size === 0) return [];
  const out = [];
  const pids = [process.pid, ...(token ? tagged(token).map((p) => p.pid) : [])];
  for (const pid of pids) {
    let entries;
    try {
      entries = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of entries) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1])) out.push(`${pid === process.pid ? 'this process' : pid} fd ${fd}`);
      } catch {
        // closed meanwhile
      }
    }
  }
  return out;
}

// What the round is measured against.
function snapshot() {
  return { fds: fds(), threads: threads() };
}

// pid -> { ppid, state, comm } for every process on the machine.
function processTable() {
  const table = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const rest = stat.slice(close + 2).split(' ');
      table.set(Number(entry), {
        state: rest[0],
        ppid: Number(rest[1]),
        comm: stat.slice(stat.indexOf('(') + 1, close),
      });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

// Every process below `root` (zombies included: an unreaped child is a leak too).
function descendants(root = process.pid, table = processTable()) {
  const children = new Map();
  for (const [pid, info] of table) {
    if (!children.has(info.ppid)) children.set(info.ppid, []);
    children.get(info.ppid).push(pid);
  }
  const out = [];
  const walk = (pid) => {
    for (const child of children.get(pid) || []) {
      out.push({ pid: child, ...table.get(child) });
      walk(child);
    }
  };
  walk(root);
  return out;
}

// Live processes (not zombies: a zombie's environment is gone, and one that is not ours is its parent's business)
// started with `FORKLINE_CHAOS_TOKEN=<token>`, or with a token that starts with `token` if `prefix`.
function tagged(token, table = processTable(), { prefix = false } = {}) {
  const needle = `\0${TOKEN_VAR}=${token}`;
  const out = [];
  for (const [pid, info] of table) {
    if (pid === process.pid || info.state === 'Z') continue;
    let environ;
    try {
      environ = `\0${fs.readFileSync(`/proc/${pid}/environ`, 'latin1')}\0`;
    } catch {
      continue;
    }
    const at = environ.indexOf(needle);
    if (at !== -1 && (prefix || environ[at + needle.length] === '\0')) out.push({ pid, ...info });
  }
  return out;
}

// At most `max` items of a list, for a one-line message.
function brief(items, max = 12) {
  if (items.length <= max) return items.join(', ');
  return `${items.slice(0, max).join(', ')}, ... (${items.length - max} more)`;
}

const describeProcess = (p) => `${p.pid} (${p.comm}, state ${p.state}, ppid ${p.ppid})`;

// Waits up to `ms` for `measure()` to return an empty list; returns what is left.
async function settle(measure, ms) {
  const deadline = Date.now() + ms;
  let left = measure();
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(25);
    left = measure();
  }
  return left;
}

// Compares this process with `before` (a snapshot) and looks for processes the round left, allowing each a settle
// wait. Returns problems ({ id, message }).
async function checkAfterRound(before, { token, fdMs = 3000, threadMs = 3000, processMs = 6000 } = {}) {
  const problems = [];
  const extraFds = () => {
    const out = [];
    for (const [fd, target] of fds()) {
      if (before.fds.get(fd) !== target) out.push([fd, target]);
    }
    return out;
  };
  const left = await settle(extraFds, fdMs);
  if (left.length > 0) {
    const list = brief(left.map(([fd, target]) => `fd ${fd} -> ${target}`));
    problems.push({ id: 'fd-leak', message: `${left.length} fd(s) left open: ${list}`, fds: left });
  }

  const extraThreads = () => {
    const now = threads();
    if (now.size <= before.threads.size) return [];
    const out = [];
    for (const [tid, name] of now) if (!before.threads.has(tid)) out.push([tid, name]);
    return out.length > 0 ? out : [['?', `${now.size - before.threads.size} more thread(s)`]];
  };
  const threadsLeft = await settle(extraThreads, threadMs);
  if (threadsLeft.length > 0) {
    const list = brief(threadsLeft.map(([tid, name]) => `${name} (${tid})`));
    problems.push({
      id: 'thread-leak',
      message: `${threadsLeft.length} thread(s) left: ${list}`,
      threads: threadsLeft,
    });
  }

  const leftover = () => {
    const table = processTable();
    const found = new Map();
    for (const p of descendants(process.pid, table)) found.set(p.pid, p);
    if (token) for (const p of tagged(token, table)) found.set(p.pid, p);
    return [...found.values()];
  };
  const processes = await settle(leftover, processMs);
  if (processes.length > 0) {
    problems.push({
      id: 'process-leak',
      message: `${processes.length} process(es) left: ${brief(processes.map(describeProcess))}`,
    });
  }
  return problems;
}

// Kills whatever the round left (after the checks, so that one round's leftovers do not fail the next).
function killLeftovers(token, { prefix = false } = {}) {
  const table = processTable();
  const victims = [...descendants(process.pid, table), ...(token ? tagged(token, table, { prefix }) : [])];
  for (const { pid } of victims) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  return victims.length;
}

// ---------------------------------------------------------------------------------------------------------------
// The message ledger. Each message carries (sender, seq), seqs counting from 0 per sender. The receiver records
// what arrives; the sender side records how far it knows its messages went:
//  - `mustHave(sender, n)`: seqs 0..n-1 must all have arrived. That is what a peer sent before the fault and knows
//    to be in the kernel (a send callback fired, recorded before the kill), or everything a peer that lived through
//    the round sent before its final message.
//  - a sender's received seqs must be strictly increasing and never repeat, and (for senders marked `prefix`,
//    i.e. one stream socket) they must be exactly 0..k-1: a gap is a message lost in the middle of a stream, which
//    a kill -9 can never cause (only the tail after the last byte written may be lost).

class Ledger {
  constructor(name) {
    this.name = name;
    this.received = new Map();
    this.required = new Map();
    this.prefix = new Set();
    this.problems = [];
  }

  // `prefix`: the sender's seqs arrive as 0, 1, 2, ... with no gap (see above).
  sender(sender, { prefix = true } = {}) {
    if (!this.received.has(sender)) this.received.set(sender, []);
    if (prefix) this.prefix.add(sender);
  }

  receive(sender, seq) {
    if (!this.received.has(sender)) this.sender(sender);
    this.received.get(sender).push(seq);
  }

  mustHave(sender, count) {
    this.required.set(sender, Math.max(this.required.get(sender) || 0, count));
  }

  count(sender) {
    return (this.received.get(sender) || []).length;
  }

  total() {
    let n = 0;
    for (const seqs of this.received.values()) n += seqs.length;
    return n;
  }

  check() {
    const problems = [];
    const where = (sender) => `${this.name}: sender ${sender}`;
    for (const [sender, seqs] of this.received) {
      // One problem of each kind per sender, with its first instance.
      const found = new Map();
      const seen = new Set();
      let last = -1;
      for (let i = 0; i < seqs.length; i++) {
        const seq = seqs[i];
        if (seen.has(seq)) {
          if (!found.has('duplicate')) found.set('duplicate', `seq ${seq} delivered twice`);
        } else if (seq <= last) {
          if (!found.has('reordered')) found.set('reordered', `seq ${seq} arrived after ${last}`);
        } else if (this.prefix.has(sender) && seq !== i && !found.has('gap') && found.size === 0) {
          found.set('gap', `seq ${seq} arrived as message #${i} (seqs ${i}..${seq - 1} lost mid-stream)`);
        }
        seen.add(seq);
        last = Math.max(last, seq);
      }
      for (const [id, what] of found) problems.push({ id, message: `${where(sender)}: ${what}` });
    }
    for (const [sender, count] of this.required) {
      const seqs = new Set(this.received.get(sender) || []);
      const missing = [];
      for (let seq = 0; seq < count && missing.length < 5; seq++) if (!seqs.has(seq)) missing.push(seq);
      if (missing.length > 0) {
        problems.push({
          id: 'lost',
          message: `${where(sender)}: ${count} message(s) must have arrived, ${seqs.size} did; missing seqs ${missing.join(', ')}${missing.length === 5 ? ', ...' : ''}`,
        });
      }
    }
    return problems;
  }
}

// Running and not a zombie.
function isAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

module.exports = {
  TOKEN_VAR,
  isAlive,
  fds,
  tcpFds,
  listenHolders,
  threads,
  snapshot,
  processTable,
  descendants,
  tagged,
  describeProcess,
  brief,
  settle,
  checkAfterRound,
  killLeftovers,
  Ledger,
};
