'use strict';

const test = require('ava');
const { sumTo, fib, CASES } = require('../../shared/math');

for (let n = 0; n < CASES; n++) {
  test(`part 1 sums to ${n * 1}`, (t) => t.is(sumTo(n * 1), (n * 1 * (n * 1 + 1)) / 2));
}
test('part 1 computes fib(19)', async (t) => {
  await new Promise((resolve) => setImmediate(resolve));
  t.is(fib(19), fib(18) + fib(17));
});
