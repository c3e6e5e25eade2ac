/**
 * Draining many subscriptions of one topic at once (bench/scale.ts): a few pullers go round-robin over
 * the subscriptions, each pulling from the next one that still owes messages, then acking what it got.
 * Bounded by a deadline and a pull count, and stops early when `abort.aborted`.
 */
import { performance } from 'node:perf_hooks';
import type { Client } from './http.js';
import { ErrorTally } from './http.js';
import type { Abort } from './load.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FanoutDrainOptions {
  /** e.g. ['/v1/subscriptions/a', '/v1/subscriptions/b'] */
  subPaths: string[];
  /** Distinct messages each subscription should deliver. */
  perSubscription: number;
  pullers: number;
  pullMax: number;
  /** Hard time limit (performance.now() ms). */
  deadline: number;
  /** Hard cap on pulls, over all pullers. */
  maxPulls: number;
  abort: Abort;
}

export interface FanoutDrainResult {
  /** Distinct (subscription, seq) deliveries. */
  distinct: number;
  received: number;
  acked: number;
  duplicates: number;
  invalidAcks: number;
  pulls: number;
  emptyPulls: number;
  /** Subscriptions that delivered everything they owed. */
  finished: number;
  errors: ErrorTally;
  startedAt: number;
  lastAckAt: number;
}

export async function drainFanout(client: Client, o: FanoutDrainOptions): Promise<FanoutDrainResult> {
  const n = o.subPaths.length;
  const seen = o.subPaths.map(() => new Uint8Array(o.perSubscription + 2));
  const distinctBySub = new Array<number>(n).fill(0);
  const res: FanoutDrainResult = {
    distinct: 0,
    received: 0,
    acked: 0,
    duplicates: 0,
    invalidAcks: 0,
    pulls: 0,
    emptyPulls: 0,
    finished: 0,
    errors: new ErrorTally(),
    startedAt: performance.now(),
    lastAckAt: performance.now(),
  };
  const pullBody = JSON.stringify({ max: o.pullMax, waitSeconds: 0 });
  let cursor = 0;
  const stop = () => o.abort.aborted || performance.now() >= o.deadline || res.pulls >= o.maxPulls || res.finished >= n;
  /** The next subscription (round-robin) that still owes messages; -1 when none does. */
  const nextSub = (): number => {
    for (let k = 0; k < n; k++) {
      const i = cursor++ % n;
      if (distinctBySub[i]! < o.perSubscription) return i;
    }
    return -1;
  };
  const worker = async () => {
    // Consecutive empty pulls by this worker: all that is left is leased to others; back off a little.
    let empties = 0;
    while (!stop()) {
      const i = nextSub();
      if (i < 0) return;
      const path = o.subPaths[i]!;
      res.pulls++;
      let messages: { seq: number; ackId: string }[];
      try {
        const r = await client.json('POST', `${path}/pull`, pullBody);
        if (r.status !== 200) {
          res.errors.add(`pull HTTP ${r.status}`, JSON.stringify(r.body));
          await sleep(r.status === 503 || r.status === 429 ? 100 : 10);
          continue;
        }
        messages = r.body.messages;
      } catch (e) {
        res.errors.add(`pull ${(e as { code?: string }).code ?? (e as Error).name}`, (e as Error).message);
        await sleep(50);
        continue;
      }
      if (messages.length === 0) {
        res.emptyPulls++;
        if (++empties >= n) {
          empties = 0;
          await sleep(5);
        }
        continue;
      }
      empties = 0;
      res.received += messages.length;
      let bits = seen[i]!;
      for (const m of messages) {
        if (m.seq >= bits.length) {
          const grown = new Uint8Array(Math.max(bits.length * 2, m.seq + 1));
          grown.set(bits);
          seen[i] = bits = grown;
        }
        if (bits[m.seq]) res.duplicates++;
        else {
          bits[m.seq] = 1;
          res.distinct++;
          distinctBySub[i]!++;
          if (distinctBySub[i] === o.perSubscription) res.finished++;
        }
      }
      for (let j = 0; j < messages.length; j += 1000) {
        const ackIds = JSON.stringify({ ackIds: messages.slice(j, j + 1000).map((m) => m.ackId) });
        for (let attempt = 1; ; attempt++) {
          try {
            const r = await client.json('POST', `${path}/ack`, ackIds);
            if (r.status === 200) {
              res.acked += r.body.acked;
              res.invalidAcks += r.body.invalid?.length ?? 0;
              res.lastAckAt = performance.now();
              break;
            }
            res.errors.add(`ack HTTP ${r.status}`, JSON.stringify(r.body));
          } catch (e) {
            res.errors.add(`ack ${(e as { code?: string }).code ?? (e as Error).name}`, (e as Error).message);
          }
          if (attempt >= 5 || o.abort.aborted || performance.now() >= o.deadline) break;
          await sleep(100);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: o.pullers }, worker));
  return res;
}
