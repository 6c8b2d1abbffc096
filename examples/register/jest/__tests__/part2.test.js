'use strict';

const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 2', () => {
  for (let n = 0; n < CASES; n++) {
    test(`sums to ${n * 2}`, () => expect(sumTo(n * 2)).toBe((n * 2 * (n * 2 + 1)) / 2));
  }
  test('computes fib(20)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    expect(fib(20)).toBe(fib(19) + fib(18));
  });
});
