'use strict';

const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 3', () => {
  for (let n = 0; n < CASES; n++) {
    test(`sums to ${n * 3}`, () => expect(sumTo(n * 3)).toBe((n * 3 * (n * 3 + 1)) / 2));
  }
  test('computes fib(21)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    expect(fib(21)).toBe(fib(20) + fib(19));
  });
});
