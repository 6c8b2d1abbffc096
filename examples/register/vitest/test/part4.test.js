import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';

const { sumTo, fib, CASES } = createRequire(import.meta.url)('../../shared/math.js');

describe('part 4', () => {
  for (let n = 0; n < CASES; n++) {
    it(`sums to ${n * 4}`, () => expect(sumTo(n * 4)).toBe((n * 4 * (n * 4 + 1)) / 2));
  }
  it('computes fib(22)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    expect(fib(22)).toBe(fib(21) + fib(20));
  });
});
