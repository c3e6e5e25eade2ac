/**
 * The four scenarios of bench/peers.ts, written once against the Peer interface so that every system
 * gets exactly the same load shape. Every loop is bounded by a time limit and a message count.
 *
 *   (a) produce: publishers keep `inflight` messages unconfirmed for warm-up + `seconds`; the rate is
 *       the messages confirmed inside the measured window over its length.
 *   (b) consume: a backlog of `backlog` messages is published first (same publisher, not measured),
 *       then one consumer with `inflight` unacked drains it; the rate is backlog / time to the last.
 *   (c) both: the consumer of (b) runs while the publishers of (a) do; both rates over the window.
 *   (d) latency: a paced publisher (`rate` msg/s, in ticks of 10 ms, stamped at send) and the consumer;
 *       publish → delivery latency p50/p99 of the messages delivered after warm-up.
 */
import { performance } from 'node:perf_hooks';
import { Samples } from '../stats.js';
import { sleep, type Peer, type Publisher } from './types.js';

export interface ScenarioConfig {
  seconds: number;
  warmup: number;
  inflight: number;
  backlog: number;
  /** Time limit for publishing the backlog and for draining it. */
  drainSeconds: number;
  rate: number;
  /**
   * Pause after `reset` before any load: deleting the previous scenario's queue (up to a few hundred
   * thousand messages left by (c)) is work the next scenario should not be charged for.
   */
  settleSeconds: number;
}

/** A fresh queue or stream, then `settleSeconds` of quiet. */
async function fresh(peer: Peer, c: ScenarioConfig): Promise<void> {
  await peer.reset();
  await sleep(c.settleSeconds * 1000);
}

export interface Figures {
  produced?: number;
  consumed?: number;
  p50?: number;
  p99?: number;
  /** Anything worth saying about the run (errors, short counts). */
  note?: string;
}

/** A hard cap on messages per load loop whatever the time (no peer here approaches 500,000/s). */
const MAX_RATE = 500_000;

interface ProduceRun {
  confirmed: number;
  inWindow: number;
  errors: number;
  firstError?: string;
}

/**
 * Keeps `inflight` messages unconfirmed: ceil(inflight / maxBatch) loops, each sending a batch and
 * waiting for its confirm. Stops at `end` (performance.now() ms) or after `maxMessages`.
 */
async function produceLoop(pub: Publisher, inflight: number, warmEnd: number, end: number, maxMessages: number, stamp = false): Promise<ProduceRun> {
  const r: ProduceRun = { confirmed: 0, inWindow: 0, errors: 0 };
  let issued = 0;
  const worker = async () => {
    while (performance.now() < end && issued < maxMessages && r.errors < 1000) {
      const n = Math.min(pub.maxBatch, maxMessages - issued);
      issued += n;
      try {
        await pub.send(n, stamp);
        const t = performance.now();
        r.confirmed += n;
        if (t >= warmEnd && t <= end) r.inWindow += n;
      } catch (e) {
        issued -= n;
        r.errors++;
        r.firstError ??= (e as Error).message;
        await sleep(50);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.ceil(inflight / pub.maxBatch)) }, worker));
  return r;
}

function errNote(what: string, r: ProduceRun): string | undefined {
  return r.errors ? `${what}: ${r.errors} failed sends (${r.firstError?.slice(0, 120)})` : undefined;
}

export async function produceOnly(peer: Peer, c: ScenarioConfig): Promise<Figures> {
  await fresh(peer, c);
  const pub = await peer.publisher();
  try {
    const t0 = performance.now();
    const warmEnd = t0 + c.warmup * 1000;
    const end = warmEnd + c.seconds * 1000;
    const r = await produceLoop(pub, c.inflight, warmEnd, end, MAX_RATE * (c.seconds + c.warmup));
    return { produced: r.inWindow / c.seconds, note: errNote('produce', r) };
  } finally {
    await pub.close();
  }
}

export async function consumeBacklog(peer: Peer, c: ScenarioConfig): Promise<Figures> {
  await fresh(peer, c);
  const pub = await peer.publisher();
  try {
    const t0 = performance.now();
    const r = await produceLoop(pub, c.inflight, t0, t0 + c.drainSeconds * 1000, c.backlog);
    if (r.confirmed < c.backlog) return { note: `backlog: only ${r.confirmed} of ${c.backlog} published in ${c.drainSeconds} s` };
  } finally {
    await pub.close();
  }
  let received = 0;
  let last = 0;
  let done!: () => void;
  const full = new Promise<void>((r) => (done = r));
  const start = performance.now();
  const consumer = await peer.consumer(c.inflight, () => {
    received++;
    last = performance.now();
    if (received === c.backlog) done();
  });
  try {
    await Promise.race([full, sleep(c.drainSeconds * 1000)]);
  } finally {
    await consumer.close();
  }
  if (received < c.backlog) return { consumed: received / ((last - start) / 1000), note: `drain: ${received} of ${c.backlog} in ${c.drainSeconds} s` };
  return { consumed: c.backlog / ((last - start) / 1000) };
}

export async function produceAndConsume(peer: Peer, c: ScenarioConfig): Promise<Figures> {
  await fresh(peer, c);
  let consumedInWindow = 0;
  let warmEnd = Infinity;
  let end = Infinity;
  const consumer = await peer.consumer(c.inflight, () => {
    const t = performance.now();
    if (t >= warmEnd && t <= end) consumedInWindow++;
  });
  const pub = await peer.publisher();
  try {
    const t0 = performance.now();
    warmEnd = t0 + c.warmup * 1000;
    end = warmEnd + c.seconds * 1000;
    const r = await produceLoop(pub, c.inflight, warmEnd, end, MAX_RATE * (c.seconds + c.warmup));
    return { produced: r.inWindow / c.seconds, consumed: consumedInWindow / c.seconds, note: errNote('produce', r) };
  } finally {
    await pub.close();
    await consumer.close();
  }
}

export async function latencyAtRate(peer: Peer, c: ScenarioConfig): Promise<Figures> {
  await fresh(peer, c);
  const lat = new Samples();
  let warmEnd = Infinity;
  const consumer = await peer.consumer(c.inflight, (stamp) => {
    const t = performance.now();
    if (stamp !== undefined && stamp >= warmEnd) lat.add(t - stamp);
  });
  const pub = await peer.publisher();
  let sent = 0;
  let inflight = 0;
  let errors = 0;
  let skipped = 0;
  const pending = new Set<Promise<void>>();
  try {
    const t0 = performance.now();
    warmEnd = t0 + c.warmup * 1000;
    const end = warmEnd + c.seconds * 1000;
    const total = Math.round(c.rate * (c.seconds + c.warmup));
    // Every 10 ms, send what the rate owes by now (at most maxBatch per request), never more than
    // `inflight` unconfirmed: a tick that would exceed it is skipped (counted), not queued.
    for (let tick = 0; tick < 100 * (c.seconds + c.warmup) + 1000 && sent < total; tick++) {
      const now = performance.now();
      if (now >= end) break;
      const owed = Math.min(total, Math.floor(((now - t0) / 1000) * c.rate)) - sent;
      for (let left = owed; left > 0; ) {
        const n = Math.min(pub.maxBatch, left);
        if (inflight + n > c.inflight) {
          skipped += left;
          sent += left;
          break;
        }
        left -= n;
        sent += n;
        inflight += n;
        const p: Promise<void> = pub
          .send(n, true)
          .catch(() => void errors++)
          .finally(() => {
            inflight -= n;
            pending.delete(p);
          });
        pending.add(p);
      }
      await sleep(Math.max(0, 10 - (performance.now() - now)));
    }
    await Promise.race([Promise.all(pending), sleep(5000)]);
    await sleep(500); // the last deliveries
  } finally {
    await pub.close();
    await consumer.close();
  }
  const [p50, p99] = lat.percentiles(50, 99);
  const notes = [errors ? `${errors} failed sends` : '', skipped ? `${skipped} not sent (in-flight cap)` : '', `${lat.count} samples`].filter(Boolean);
  return { p50, p99, note: notes.join(', ') };
}

export const scenarios = {
  a: { title: '(a) produce only', run: produceOnly },
  b: { title: '(b) consume a backlog', run: consumeBacklog },
  c: { title: '(c) produce + consume', run: produceAndConsume },
  d: { title: '(d) latency at a fixed rate', run: latencyAtRate },
} as const;
export type ScenarioKey = keyof typeof scenarios;
