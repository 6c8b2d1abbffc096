'use strict';

const assert = require('node:assert');
const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 3', () => {
  for (let n = 0; n < CASES; n++) {
    it(`sums to ${n * 3}`, () => assert.strictEqual(sumTo(n * 3), (n * 3 * (n * 3 + 1)) / 2));
  }
  it('computes fib(21)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    assert.strictEqual(fib(21), fib(20) + fib(19));
  });
});
