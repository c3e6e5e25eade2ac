/**
 * Goal: retry delays behave as API.md and backoff.ts promise: exponential delays grow by the
 * multiplier up to the cap, jitter spreads them by at most ±jitter of the base, no delay ever exceeds
 * maxBackoffMs or goes below zero, fixed and preset policies give the documented numbers, and the
 * jitter source hash01 is a deterministic number in [0, 1).
 * Method: fast-check properties over random policies, attempts and random draws, plus worked examples.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { hash01, resolveRetryPolicy, retryDelayMs, type ResolvedRetryPolicy } from '../../../src/core/broker/backoff.js';

const exponential = fc
  .record({
    // minBackoffMs 0 has its own test below.
    minBackoffMs: fc.integer({ min: 1, max: 100_000 }),
    spanMs: fc.integer({ min: 0, max: 1_000_000 }),
    multiplier: fc.double({ min: 1, max: 100, noNaN: true }), // the API's range
    jitter: fc.double({ min: 0, max: 1, noNaN: true }),
  })
  .map(
    ({ minBackoffMs, spanMs, multiplier, jitter }): ResolvedRetryPolicy => ({
      kind: 'exponential',
      minBackoffMs,
      maxBackoffMs: minBackoffMs + spanMs,
      multiplier,
      jitter,
      maxAttempts: null,
      maxRetrySeconds: 86_400,
    }),
  );

const attempt = fc.integer({ min: 1, max: 2000 });
const random01 = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

/** The delay without jitter: min × multiplier^(attempt − 1), capped. */
const base = (p: ResolvedRetryPolicy, a: number) => Math.min(p.maxBackoffMs, p.minBackoffMs * Math.pow(p.multiplier, a - 1));

describe('retryDelayMs', () => {
  it('without jitter: monotone in the attempt, exactly min × mult^(attempt−1) up to the cap', () => {
    fc.assert(
      fc.property(exponential, attempt, random01, (p0, a, r) => {
        const p = { ...p0, jitter: 0 };
        const d = retryDelayMs(p, a, r);
        expect(d).toBeLessThanOrEqual(retryDelayMs(p, a + 1, r));
        expect(Math.abs(d - base(p, a))).toBeLessThanOrEqual(0.5);
        expect(retryDelayMs(p, 1, r)).toBe(Math.round(Math.min(p.minBackoffMs, p.maxBackoffMs)));
      }),
    );
  });

  it('with jitter: within ±jitter of the base (up to rounding), never above maxBackoffMs, never negative', () => {
    fc.assert(
      fc.property(exponential, attempt, random01, (p, a, r) => {
        const d = retryDelayMs(p, a, r);
        const b = base(p, a);
        expect(Number.isInteger(d)).toBe(true);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(p.maxBackoffMs);
        expect(d).toBeGreaterThanOrEqual(Math.floor(b * (1 - p.jitter)) - 1);
        expect(d).toBeLessThanOrEqual(Math.ceil(b * (1 + p.jitter)) + 1);
      }),
    );
  });

  it('the jitter draw moves the delay monotonically: a larger draw never gives a shorter delay', () => {
    fc.assert(
      fc.property(exponential, attempt, random01, random01, (p, a, r1, r2) => {
        const [lo, hi] = r1 <= r2 ? [r1, r2] : [r2, r1];
        expect(retryDelayMs(p, a, lo)).toBeLessThanOrEqual(retryDelayMs(p, a, hi));
      }),
    );
  });

  it('a multiplier just above 1 keeps growing past attempt 1025 (found by the property above: the exponent was capped at 1024)', () => {
    const p = resolveRetryPolicy({ policy: 'exponential', minBackoffMs: 1000, maxBackoffMs: 100_000, multiplier: 1.001, jitter: 0, maxAttempts: null, maxRetrySeconds: 86_400 });
    expect(retryDelayMs(p, 2000, 0.5)).toBe(Math.round(1000 * Math.pow(1.001, 1999))); // 7,374, not the 2,783 of 1.001^1024
    expect(retryDelayMs(p, 2000, 0.5)).toBeGreaterThan(retryDelayMs(p, 1025, 0.5));
  });

  it('huge attempt numbers stay at the cap (no Infinity or NaN)', () => {
    const p = resolveRetryPolicy({ policy: 'exponential', minBackoffMs: 1000, maxBackoffMs: 512_000, multiplier: 2, jitter: 0.2, maxAttempts: null, maxRetrySeconds: 86_400 });
    for (const a of [64, 1025, 1e6, Number.MAX_SAFE_INTEGER]) {
      for (const r of [0, 0.5, 0.999999]) {
        const d = retryDelayMs(p, a, r);
        expect(Number.isFinite(d)).toBe(true);
        expect(d).toBeGreaterThanOrEqual(512_000 * 0.8);
        expect(d).toBeLessThanOrEqual(512_000);
      }
    }
  });

  it('minBackoffMs 0 (allowed by the API) gives 0 at every attempt, never NaN', () => {
    // The API accepts minBackoffMs 0..86,400,000 and multiplier 1..100. 0 × multiplier^(attempt−1)
    // must stay 0 even once the power overflows to Infinity (attempt ≥ 1025 for ×2, ≥ 156 for ×100).
    for (const multiplier of [2, 100]) {
      const p = resolveRetryPolicy({ policy: 'exponential', minBackoffMs: 0, maxBackoffMs: 1000, multiplier, jitter: 0.2, maxAttempts: null, maxRetrySeconds: 86_400 });
      for (const a of [1, 2, 155, 156, 1025, 1026, 5000]) {
        expect(retryDelayMs(p, a, 0.5), `multiplier ${multiplier}, attempt ${a}`).toBe(0);
      }
    }
  });

  it('the documented default: 1 s, 2 s, 4 s ... 512 s, each ±20%', () => {
    const p = resolveRetryPolicy({ policy: 'exponential', minBackoffMs: 1000, maxBackoffMs: 512_000, multiplier: 2, jitter: 0.2, maxAttempts: null, maxRetrySeconds: 86_400 });
    for (let a = 1; a <= 12; a++) {
      const b = Math.min(512_000, 1000 * 2 ** (a - 1));
      expect(retryDelayMs(p, a, 0.5)).toBe(b);
      expect(retryDelayMs(p, a, 0)).toBe(Math.round(b * 0.8));
      expect(retryDelayMs(p, a, 0.9999999)).toBeLessThanOrEqual(Math.min(512_000, Math.round(b * 1.2)));
    }
  });
});

describe('resolveRetryPolicy', () => {
  it('fixed: always the interval, no jitter, its maxAttempts kept', () => {
    const p = resolveRetryPolicy({ policy: 'fixed', intervalMs: 20_000, maxAttempts: 3 });
    expect(p.maxAttempts).toBe(3);
    fc.assert(
      fc.property(attempt, random01, (a, r) => {
        expect(retryDelayMs(p, a, r)).toBe(20_000);
      }),
    );
  });

  it('exponential passes its fields through', () => {
    const p = resolveRetryPolicy({ policy: 'exponential', minBackoffMs: 5, maxBackoffMs: 50, multiplier: 3, jitter: 0.1, maxAttempts: 7, maxRetrySeconds: 60 });
    expect(p).toEqual({ kind: 'exponential', minBackoffMs: 5, maxBackoffMs: 50, multiplier: 3, jitter: 0.1, maxAttempts: 7, maxRetrySeconds: 60 });
  });

  it('EXPONENTIAL_DECAY_RETRY (CMQ): 176 retries at 1, 2, 4 ... 512 s, within one day', () => {
    const p = resolveRetryPolicy({ policy: 'EXPONENTIAL_DECAY_RETRY' });
    expect(p.maxAttempts).toBe(177); // the first attempt plus 176 retries
    expect(p.maxRetrySeconds).toBe(86_400);
    const delays = Array.from({ length: 176 }, (_, i) => retryDelayMs(p, i + 1, 0.37));
    expect(delays.slice(0, 10)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((s) => s * 1000));
    expect(new Set(delays.slice(9))).toEqual(new Set([512_000]));
    const totalSeconds = delays.reduce((x, y) => x + y, 0) / 1000;
    expect(totalSeconds).toBeLessThanOrEqual(86_400);
  });

  it('BACKOFF_RETRY (CMQ): 3 retries, each after a random 10–20 s', () => {
    const p = resolveRetryPolicy({ policy: 'BACKOFF_RETRY' });
    expect(p.maxAttempts).toBe(4);
    fc.assert(
      fc.property(attempt, random01, (a, r) => {
        const d = retryDelayMs(p, a, r);
        expect(d).toBeGreaterThanOrEqual(10_000);
        expect(d).toBeLessThanOrEqual(20_000);
      }),
    );
    // The whole range is used, not one fixed value.
    expect(retryDelayMs(p, 1, 0)).toBe(10_000);
    expect(retryDelayMs(p, 1, 0.9999999)).toBe(20_000);
  });
});

describe('hash01', () => {
  it('is deterministic and in [0, 1)', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), fc.integer(), (a, b, c) => {
        const x = hash01(a, b, c);
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThan(1);
        expect(hash01(a, b, c)).toBe(x);
      }),
    );
  });

  it('spreads neighbouring inputs over the interval', () => {
    const buckets = new Array<number>(10).fill(0);
    for (let seq = 0; seq < 10_000; seq++) buckets[Math.floor(hash01(7, seq, 1) * 10)]!++;
    for (const n of buckets) {
      expect(n).toBeGreaterThan(800);
      expect(n).toBeLessThan(1200);
    }
    expect(hash01(1, 2, 3)).not.toBe(hash01(1, 2, 4));
  });
});
