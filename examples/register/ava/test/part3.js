'use strict';

const test = require('ava');
const { sumTo, fib, CASES } = require('../../shared/math');

for (let n = 0; n < CASES; n++) {
  test(`part 3 sums to ${n * 3}`, (t) => t.is(sumTo(n * 3), (n * 3 * (n * 3 + 1)) / 2));
}
test('part 3 computes fib(21)', async (t) => {
  await new Promise((resolve) => setImmediate(resolve));
  t.is(fib(21), fib(20) + fib(19));
});
