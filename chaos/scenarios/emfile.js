'use strict';

// EMFILE in the parent: a forkline parent (chaos/children/emfile-parent.js) runs under a low RLIMIT_NOFILE (drawn,
// 36-72) and forks echo children (json or advanced, the variant; stdio drawn) until fork() fails; then it pings
// every child, uses up its last fd (holding /dev/null), and at zero fds forks, sends a handle, and has a child send
// it one; it lets go, lets a child or two go, forks once more, and cleans up. It reports what it saw.
//
// Checked: the parent never crashes (no uncaught exception, exit 0); the first failure is an Error with code EMFILE
// (or ENFILE, or a FORKLINE_* code), delivered as Node does, as an 'error' event on the returned ChildProcess and
// not a throw (measured: node:child_process emits 'error' with EMFILE, `spawn <file>` as syscall, and the child has
// no send()); the children it has keep answering, in order, before and after; the failures at zero fds are clean
// errors too, the handle that cannot be received is a FORKLINE_FD_LOST 'error' and the message after it arrives;
// with fds back, fork() works again; every child closes with disconnect/exit/close; the parent's own fds and
// threads end as they began; nothing of the round is left running.

const CLEAN_CODES = ['EMFILE', 'ENFILE'];
const clean = (failure) =>
  !!failure &&
  failure.isError === true &&
  (CLEAN_CODES.includes(failure.code) || /^FORKLINE_[A-Z_]+$/.test(String(failure.code)));

async function run(round, variant) {
  const { rng } = round;
  const limit = rng.int(36, 72);
  round.set('nofile', limit);
  round.phase = 'emfile parent';
  const parent = round.spawn(
    '/bin/sh',
    [
      '-c',
      'ulimit -n "$0" && exec "$@"',
      String(limit),
      process.execPath,
      round.child('emfile-parent.js'),
      'forkline',
      variant,
      String(rng.fork()),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  parent.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  parent.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  round.defer(() => parent.kill('SIGKILL'));
  const exit = await new Promise((resolve) => parent.on('close', (code, signal) => resolve({ code, signal })));

  round.phase = 'checks';
  let r;
  try {
    r = JSON.parse(out.trim().split('\n').pop());
  } catch {
    round.problem('crash', `the EMFILE parent printed no result (exit ${JSON.stringify(exit)}): ${tail(err)}`);
    return;
  }
  round.check(
    exit.code === 0 && !r.error,
    'crash',
    () => `the EMFILE parent exited ${JSON.stringify(exit)}: ${r.error} ${tail(err)}`,
  );
  round.check(r.uncaught.length === 0, 'crash', () => `uncaught in the EMFILE parent: ${r.uncaught.join(' | ')}`);
  round.set('children', r.children);
  round.set('first', r.firstFailure ? `${r.firstFailure.how}:${r.firstFailure.code}` : 'none');
  if (!r.firstFailure) {
    round.problem('no-emfile', `fork() never failed under RLIMIT_NOFILE ${limit} (${r.children} children)`);
  } else {
    round.check(
      clean(r.firstFailure),
      'unclean-error',
      () => `fork() at EMFILE failed with ${JSON.stringify(r.firstFailure)}`,
    );
    round.check(
      r.firstFailure.how === 'event',
      'fork-form',
      () =>
        `fork() at EMFILE ${r.firstFailure.how === 'throw' ? 'threw' : 'failed'} (${r.firstFailure.message}); ` +
        "node:child_process returns the ChildProcess and emits 'error' (EMFILE) on it",
    );
  }
  if (r.step !== 'done') return;
  round.check(
    r.pingFailures === 0,
    'lost',
    `${r.pingFailures} children did not echo everything in order after the failed fork`,
  );
  round.check(
    r.forkAtZero === 'succeeded' || clean(r.forkAtZero),
    'unclean-error',
    () => `fork() at zero fds: ${JSON.stringify(r.forkAtZero)}`,
  );
  if (r.sendAtZero) {
    const s = r.sendAtZero;
    round.check(
      !s.threw && (s.callback === null || clean(s.callback)),
      'unclean-error',
      () => `send(handle) at zero fds: ${JSON.stringify(s)}`,
    );
  }
  if (r.receiveAtZero) {
    const g = r.receiveAtZero;
    round.check(g.afterCame, 'lost', 'the message sent after a handle the parent could not receive never arrived');
    round.check(
      g.errors.every((e) => e.code === 'FORKLINE_FD_LOST'),
      'error-event',
      () => `receiving at zero fds: ${JSON.stringify(g.errors)}`,
    );
    round.check(
      g.handleCame || g.errors.some((e) => e.code === 'FORKLINE_FD_LOST'),
      'silent-loss',
      'a handle sent to the parent at zero fds was lost without a FORKLINE_FD_LOST error',
    );
  }
  round.check(
    r.forkAfter === 'succeeded',
    'no-recovery',
    () => `fork() with fds again: ${JSON.stringify(r.forkAfter)}`,
  );
  round.check(
    r.pingFailuresAfter === 0,
    'lost',
    `${r.pingFailuresAfter} children did not echo everything in order at the end`,
  );
  round.check(
    r.allClosed && r.lifecycles.length === 0,
    'events',
    () => `children's events: ${r.allClosed ? r.lifecycles.slice(0, 3).join(' | ') : 'not all closed'}`,
  );
  round.check(
    r.extraFds.length === 0,
    'fd-leak',
    () => `the EMFILE parent ends with fds it did not have before: ${r.extraFds.join(', ')}`,
  );
  round.check(
    r.end.threads <= r.baseline.threads,
    'thread-leak',
    `the EMFILE parent ends with ${r.end.threads} threads, ${r.baseline.threads} before`,
  );
}

const tail = (text) => text.trim().split('\n').slice(-4).join(' | ');

module.exports = { name: 'emfile', variants: ['json', 'advanced'], timeoutMs: 40_000, run };
