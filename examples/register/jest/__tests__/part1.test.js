'use strict';

const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 1', () => {
  for (let n = 0; n < CASES; n++) {
    test(`sums to ${n * 1}`, () => expect(sumTo(n * 1)).toBe((n * 1 * (n * 1 + 1)) / 2));
  }
  test('computes fib(19)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    expect(fib(19)).toBe(fib(18) + fib(17));
  });
});
