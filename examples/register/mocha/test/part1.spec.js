'use strict';

const assert = require('node:assert');
const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 1', () => {
  for (let n = 0; n < CASES; n++) {
    it(`sums to ${n * 1}`, () => assert.strictEqual(sumTo(n * 1), (n * 1 * (n * 1 + 1)) / 2));
  }
  it('computes fib(19)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    assert.strictEqual(fib(19), fib(18) + fib(17));
  });
});
