'use strict';

const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 4', () => {
  for (let n = 0; n < CASES; n++) {
    test(`sums to ${n * 4}`, () => expect(sumTo(n * 4)).toBe((n * 4 * (n * 4 + 1)) / 2));
  }
  test('computes fib(22)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    expect(fib(22)).toBe(fib(21) + fib(20));
  });
});
