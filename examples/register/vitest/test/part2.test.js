import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';

const { sumTo, fib, CASES } = createRequire(import.meta.url)('../../shared/math.js');

describe('part 2', () => {
  for (let n = 0; n < CASES; n++) {
    it(`sums to ${n * 2}`, () => expect(sumTo(n * 2)).toBe((n * 2 * (n * 2 + 1)) / 2));
  }
  it('computes fib(20)', async () => {
    await new Promise((resolve) => setImmediate(resolve));
    expect(fib(20)).toBe(fib(19) + fib(18));
  });
});
