'use strict';

// Bugs the chaos suite finds that are known and being fixed elsewhere. A round's problems whose id is listed for its
// scenario and variant are reported as "known" instead of failing the round (chaos/run.js --known-bugs counts them
// as failures); variants marked `skipVariant` are not drawn by the driver unless asked for (--known-bugs or --only),
// because what they leak would pile up in the driver. Delete an entry once its fix is in: the suite then enforces it.

const KNOWN = [
  {
    scenario: '*',
    variant: '*',
    ids: ['no-eof', 'no-eof-fd', 'no-eof-thread'],
    reason:
      "a child died and its channel's EOF was never read (no 'disconnect'/'close', fd left open): EPOLLERR makes " +
      'libuv stop the poll handle, and src/uv.rs on_poll ignores that (chaos/repro/pollerr.js)',
  },
  {
    scenario: 'kill-handoff',
    variant: '*',
    ids: ['kept-after-failed-send'],
    reason:
      "a socket whose send() fails at once (EPIPE: the child died, 'disconnect' not yet emitted) stays open and " +
      'attached in the parent; the README says a sent socket is detached at once, as Node does ' +
      '(chaos/repro/send-handle-epipe.js)',
  },
  {
    scenario: 'hostile-peer',
    variant: 'ctrunc',
    ids: ['fd-leak'],
    reason:
      'MSG_CTRUNC fd leak (issue #11): the fds that did arrive with a truncated SCM_RIGHTS message are never closed',
    skipVariant: true,
  },
  {
    scenario: 'emfile',
    variant: '*',
    ids: ['fork-form'],
    reason:
      "fork() at EMFILE throws 'spawn EMFILE' synchronously; Node returns the ChildProcess and emits 'error' (issue #11)",
  },
];

const matches = (entry, scenario, variant) =>
  (entry.scenario === '*' || entry.scenario === scenario) && (entry.variant === '*' || entry.variant === variant);

// A function from a problem to the reason it is excused, or null.
function excuse(scenario, variant) {
  const entries = KNOWN.filter((entry) => matches(entry, scenario, variant));
  return (problem) => {
    const entry = entries.find((e) => e.ids.includes(problem.id));
    return entry ? entry.reason : null;
  };
}

// The variants the driver leaves out by default: [{ scenario, variant, reason }].
function skippedVariants() {
  return KNOWN.filter((entry) => entry.skipVariant).map(({ scenario, variant, reason }) => ({
    scenario,
    variant,
    reason,
  }));
}

module.exports = { KNOWN, excuse, skippedVariants };
