'use strict';

const assert = require('node:assert');
const { sumTo, fib, CASES } = require('../../shared/math');

describe('part 2', () => {
  for (let n = 0; n < CASES; n++) {
    it(`sums to ${n * 2}`, () => assert.strictEqual(sumTo(n * 2), (n * 2 * (n * 2 + 1)) / 2));
  }
  it('computes fib(20)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    assert.strictEqual(fib(20), fib(19) + fib(18));
  });
});
