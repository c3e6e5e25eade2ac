/**
 * Retry delays: a pure function of the policy, the attempt that just failed and a number in [0, 1)
 * that the caller draws (the state machine derives it from the message, so replicas agree).
 */
import type { RetryPolicy } from './types.js';

export interface ResolvedRetryPolicy {
  kind: 'exponential' | 'fixed';
  minBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
  /** Fraction of the delay drawn at random on either side: 0.2 means ±20%. */
  jitter: number;
  /** Attempts, the first included; null means no limit by count. */
  maxAttempts: number | null;
  maxRetrySeconds: number | null;
}

/** CMQ's presets: EXPONENTIAL_DECAY_RETRY retries 176 times at 1, 2, 4 ... 512 s for one day;
 * BACKOFF_RETRY retries 3 times, each after a random 10–20 s. */
export function resolveRetryPolicy(policy: RetryPolicy): ResolvedRetryPolicy {
  switch (policy.policy) {
    case 'exponential':
      return {
        kind: 'exponential',
        minBackoffMs: policy.minBackoffMs,
        maxBackoffMs: policy.maxBackoffMs,
        multiplier: policy.multiplier,
        jitter: policy.jitter,
        maxAttempts: policy.maxAttempts,
        maxRetrySeconds: policy.maxRetrySeconds,
      };
    case 'fixed':
      return {
        kind: 'fixed',
        minBackoffMs: policy.intervalMs,
        maxBackoffMs: policy.intervalMs,
        multiplier: 1,
        jitter: 0,
        maxAttempts: policy.maxAttempts,
        maxRetrySeconds: null,
      };
    case 'EXPONENTIAL_DECAY_RETRY':
      return {
        kind: 'exponential',
        minBackoffMs: 1000,
        maxBackoffMs: 512_000,
        multiplier: 2,
        jitter: 0,
        maxAttempts: 177,
        maxRetrySeconds: 86_400,
      };
    case 'BACKOFF_RETRY':
      return {
        kind: 'fixed',
        minBackoffMs: 15_000,
        maxBackoffMs: 20_000,
        multiplier: 1,
        jitter: 1 / 3,
        maxAttempts: 4,
        maxRetrySeconds: null,
      };
  }
}

/**
 * The delay before the next attempt, after `attempt` (1-based) failed. Exponential: min × mult^(attempt−1),
 * capped at max, then spread by ±jitter and capped again, so it never exceeds maxBackoffMs.
 */
export function retryDelayMs(policy: ResolvedRetryPolicy, attempt: number, random01: number): number {
  const exponent = Math.max(0, attempt - 1);
  // min × mult^exp overflows to Infinity for large attempts, and the cap below takes it; a minimum of
  // 0 stays 0 (0 × Infinity would be NaN). The exponent is not capped: a multiplier just above 1
  // still grows after a thousand attempts.
  const grown = policy.minBackoffMs === 0 ? 0 : policy.minBackoffMs * Math.pow(policy.multiplier, exponent);
  const base = policy.kind === 'fixed' ? policy.minBackoffMs : Math.min(policy.maxBackoffMs, grown);
  const spread = base * policy.jitter * (2 * random01 - 1);
  return Math.max(0, Math.min(policy.maxBackoffMs, Math.round(base + spread)));
}

/** A deterministic number in [0, 1) from integers, so every replica draws the same jitter. */
export function hash01(a: number, b: number, c: number): number {
  let h = 0x811c9dc5 ^ a;
  h = Math.imul(h ^ b, 0x01000193);
  h = Math.imul(h ^ c, 0x01000193);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) / 4294967296;
}
