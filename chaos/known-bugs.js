'use strict';

// Bugs the chaos suite finds that are known and being fixed elsewhere. A round's problems whose id is listed for its
// scenario and variant are reported as "known" instead of failing the round (chaos/run.js --known-bugs counts them
// as failures); variants marked `skipVariant` are not drawn by the driver unless asked for (--known-bugs or --only),
// because what they leak would pile up in the driver. Delete an entry once its fix is in: the suite then enforces it.

const KNOWN = [];

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
