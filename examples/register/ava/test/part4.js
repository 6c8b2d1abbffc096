'use strict';

const test = require('ava');
const { sumTo, fib, CASES } = require('../../shared/math');

for (let n = 0; n < CASES; n++) {
  test(`part 4 sums to ${n * 4}`, (t) => t.is(sumTo(n * 4), (n * 4 * (n * 4 + 1)) / 2));
}
test('part 4 computes fib(22)', async (t) => {
  await new Promise((resolve) => setImmediate(resolve));
  t.is(fib(22), fib(21) + fib(20));
});
