'use strict';

const test = require('ava');
const { sumTo, fib, CASES } = require('../../shared/math');

for (let n = 0; n < CASES; n++) {
  test(`part 2 sums to ${n * 2}`, (t) => t.is(sumTo(n * 2), (n * 2 * (n * 2 + 1)) / 2));
}
test('part 2 computes fib(20)', async (t) => {
  await new Promise((resolve) => setImmediate(resolve));
  t.is(fib(20), fib(19) + fib(18));
});
