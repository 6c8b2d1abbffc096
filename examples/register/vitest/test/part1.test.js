import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';

const { sumTo, fib, CASES } = createRequire(import.meta.url)('../../shared/math.js');

describe('part 1', () => {
  for (let n = 0; n < CASES; n++) {
    it(`sums to ${n * 1}`, () => expect(sumTo(n * 1)).toBe((n * 1 * (n * 1 + 1)) / 2));
  }
  it('computes fib(19)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    expect(fib(19)).toBe(fib(18) + fib(17));
  });
});
