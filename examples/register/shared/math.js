'use strict';

// What the example projects test: small, so that the runs measure the tools' own work.
function sumTo(n) {
  let sum = 0;
  for (let i = 1; i <= n; i++) sum += i;
  return sum;
}

function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

// How many cases each test file has, times 25: `node examples/register/run.js --scale=N` sets it.
const SCALE = Number(process.env.EXAMPLE_SCALE) || 1;

module.exports = { sumTo, fib, CASES: 25 * SCALE };
