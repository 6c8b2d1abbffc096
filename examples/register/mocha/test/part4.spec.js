'use strict';

const assert = require('node:assert');
const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 4', () => {
  for (let n = 0; n < CASES; n++) {
    it(`sums to ${n * 4}`, () => assert.strictEqual(sumTo(n * 4), (n * 4 * (n * 4 + 1)) / 2));
  }
  it('computes fib(22)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    assert.strictEqual(fib(22), fib(21) + fib(20));
  });
});
