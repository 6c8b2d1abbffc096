'use strict';

// A seeded PRNG (mulberry32) and the few draws the scenarios make, so that a round is reproducible from its seed
// (its choices are; the timing of the processes it runs is not).

function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  constructor(seed) {
    this.seed = seed >>> 0;
    this.next = mulberry32(this.seed);
  }
  // An integer in [min, max].
  int(min, max) {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  chance(p) {
    return this.next() < p;
  }
  pick(list) {
    return list[Math.floor(this.next() * list.length)];
  }
  // A seed for a sub-generator (a child's own PRNG).
  fork() {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
  shuffle(list) {
    const out = list.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

// The seed of round `index` of a run started with `seed`: round 0 uses the run's seed itself, so that
// `--seed <a round's seed> --rounds 1` repeats that round.
function roundSeed(seed, index) {
  if (index === 0) return seed >>> 0;
  const next = mulberry32((seed ^ Math.imul(index, 0x9e3779b9)) >>> 0);
  return Math.floor(next() * 4294967296) >>> 0;
}

function parseSeed(text) {
  const value = /^0x/i.test(text) ? parseInt(text.slice(2), 16) : Number(text);
  if (!Number.isFinite(value) || value < 0 || value > 0xffffffff) throw new Error(`bad seed ${text}`);
  return value >>> 0;
}

const hex = (seed) => `0x${(seed >>> 0).toString(16).padStart(8, '0')}`;

module.exports = { Rng, mulberry32, roundSeed, parseSeed, hex };
