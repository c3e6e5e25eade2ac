/**
 * The load loops, shared by the single-node and memory benchmarks. Every loop is bounded by a time
 * limit and a request count, and stops early when `abort.aborted` (e.g. the server died).
 */
import { performance } from 'node:perf_hooks';
import type { Client } from './http.js';
import { ErrorTally } from './http.js';
import { Samples } from './stats.js';

export interface Abort {
  aborted: boolean;
  reason?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `size` bytes of ASCII; with a timestamp prefix `t<ms>|` when `stampMs` is given. */
export function payload(size: number, stampMs?: number): string {
  const filler = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_';
  const prefix = stampMs === undefined ? '' : `t${stampMs.toFixed(3)}|`;
  let s = prefix;
  while (s.length < size) s += filler;
  return s.slice(0, size);
}

export function stampOf(data: string): number | undefined {
  if (data.charCodeAt(0) !== 116 /* t */) return undefined;
  const bar = data.indexOf('|');
  if (bar < 0) return undefined;
  const v = Number(data.slice(1, bar));
  return Number.isFinite(v) ? v : undefined;
}

/** A publish body of `batch` messages; stamped with the current performance.now() when `stamp`. */
export function publishBody(batch: number, size: number, stamp: boolean): string {
  if (!stamp) {
    const one = JSON.stringify({ data: payload(size) });
    return `{"messages":[${new Array(batch).fill(one).join(',')}]}`;
  }
  const now = performance.now();
  const parts: string[] = [];
  for (let i = 0; i < batch; i++) parts.push(JSON.stringify({ data: payload(size, now) }));
  return `{"messages":[${parts.join(',')}]}`;
}

export interface ProduceOptions {
  path: string;
  batch: number;
  size: number;
  concurrency: number;
  /** Measured seconds (after warm-up). */
  seconds: number;
  warmupSeconds: number;
  /** Hard cap on requests, whatever the time. */
  maxRequests: number;
  /** Hard cap on messages (for a fixed backlog); Infinity for time-bound runs. */
  maxMessages?: number;
  stamp?: boolean;
  abort: Abort;
}

export interface ProduceResult {
  /** Messages answered 2xx during the measured window (in flight at its start included). */
  measuredMessages: number;
  /** Messages answered 2xx in all, warm-up included. */
  totalMessages: number;
  measuredSeconds: number;
  requests: number;
  latency: Samples;
  errors: ErrorTally;
  /** 2xx answers whose results did not match the batch. */
  badResults: number;
  maxSeq: number;
}

export async function produce(client: Client, o: ProduceOptions): Promise<ProduceResult> {
  const start = performance.now();
  const warmEnd = start + o.warmupSeconds * 1000;
  const end = warmEnd + o.seconds * 1000;
  const maxMessages = o.maxMessages ?? Infinity;
  const fixedBody = o.stamp ? undefined : publishBody(o.batch, o.size, false);
  const latency = new Samples();
  const errors = new ErrorTally();
  let issued = 0;
  let issuedMessages = 0;
  let measuredMessages = 0;
  let totalMessages = 0;
  let badResults = 0;
  let maxSeq = 0;
  let lastDone = warmEnd;
  const worker = async () => {
    for (;;) {
      const now = performance.now();
      if (o.abort.aborted || now >= end || issued >= o.maxRequests || issuedMessages >= maxMessages) return;
      const batch = Math.min(o.batch, maxMessages - issuedMessages);
      issued++;
      issuedMessages += batch;
      const body = batch === o.batch && fixedBody ? fixedBody : publishBody(batch, o.size, !!o.stamp);
      const t0 = performance.now();
      try {
        const r = await client.json('POST', o.path, body);
        const t1 = performance.now();
        if (r.status >= 200 && r.status < 300) {
          const results = r.body?.results;
          if (!Array.isArray(results) || results.length !== batch) badResults++;
          else for (const x of results) if (x.seq > maxSeq) maxSeq = x.seq;
          totalMessages += batch;
          if (t1 >= warmEnd) {
            measuredMessages += batch;
            latency.add(t1 - t0);
            lastDone = t1;
          }
        } else {
          issuedMessages -= batch;
          errors.add(`HTTP ${r.status}`, JSON.stringify(r.body));
          await sleep(r.status === 503 || r.status === 429 ? 100 : 10);
        }
      } catch (e) {
        issuedMessages -= batch;
        errors.add((e as { code?: string }).code ?? (e as Error).name, (e as Error).message);
        await sleep(50);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return {
    measuredMessages,
    totalMessages,
    measuredSeconds: Math.max(0.001, (lastDone - warmEnd) / 1000),
    requests: issued,
    latency,
    errors,
    badResults,
    maxSeq,
  };
}

export interface ConsumeOptions {
  /** e.g. /v1/subscriptions/s */
  subPath: string;
  pullers: number;
  pullMax: number;
  waitSeconds: number;
  /** Stop when this many distinct messages have been acked (Infinity: only `until` stops it). */
  target: () => number;
  /** Hard time limit (performance.now() ms). */
  deadline: number;
  /** Optional soft stop: consumers stop once this returns true and nothing more is owed. */
  stopWhen?: () => boolean;
  /** Hard cap on pulls. */
  maxPulls: number;
  /** Seq → seen flag; grows as needed. */
  abort: Abort;
  /** Measure publish-to-receive from the data's stamp. */
  stamped?: boolean;
}

export interface ConsumeResult {
  acked: number;
  received: number;
  distinct: number;
  duplicates: number;
  invalidAcks: number;
  pulls: number;
  emptyPulls: number;
  pullLatency: Samples;
  ackLatency: Samples;
  e2eLatency: Samples;
  errors: ErrorTally;
  startedAt: number;
  lastAckAt: number;
  /** Acked messages with their ack time, for windowed rates: (time ms, count) pairs. */
  ackTimeline: [number, number][];
}

export async function consume(client: Client, o: ConsumeOptions): Promise<ConsumeResult> {
  let seen = new Uint8Array(1 << 20);
  const res: ConsumeResult = {
    acked: 0,
    received: 0,
    distinct: 0,
    duplicates: 0,
    invalidAcks: 0,
    pulls: 0,
    emptyPulls: 0,
    pullLatency: new Samples(),
    ackLatency: new Samples(),
    e2eLatency: new Samples(),
    errors: new ErrorTally(),
    startedAt: performance.now(),
    lastAckAt: performance.now(),
    ackTimeline: [],
  };
  const pullBody = JSON.stringify({ max: o.pullMax, waitSeconds: o.waitSeconds });
  const done = () =>
    o.abort.aborted || performance.now() >= o.deadline || res.pulls >= o.maxPulls || res.distinct >= o.target() || (o.stopWhen?.() ?? false);
  const worker = async () => {
    while (!done()) {
      res.pulls++;
      const t0 = performance.now();
      let messages: { seq: number; data: string; ackId: string }[];
      try {
        const r = await client.json('POST', `${o.subPath}/pull`, pullBody);
        const t1 = performance.now();
        if (r.status !== 200) {
          res.errors.add(`pull HTTP ${r.status}`, JSON.stringify(r.body));
          await sleep(r.status === 503 || r.status === 429 ? 100 : 10);
          continue;
        }
        messages = r.body.messages;
        // A long poll that comes back empty measures the wait, not the server: count it apart.
        if (messages.length > 0) res.pullLatency.add(t1 - t0);
      } catch (e) {
        res.errors.add(`pull ${(e as { code?: string }).code ?? (e as Error).name}`, (e as Error).message);
        await sleep(50);
        continue;
      }
      if (messages.length === 0) {
        res.emptyPulls++;
        if (o.waitSeconds === 0) await sleep(5);
        continue;
      }
      const tr = performance.now();
      res.received += messages.length;
      for (const m of messages) {
        if (m.seq >= seen.length) {
          const next = new Uint8Array(Math.max(seen.length * 2, m.seq + 1));
          next.set(seen);
          seen = next;
        }
        if (seen[m.seq]) res.duplicates++;
        else {
          seen[m.seq] = 1;
          res.distinct++;
        }
        if (o.stamped) {
          const ts = stampOf(m.data);
          if (ts !== undefined) res.e2eLatency.add(tr - ts);
        }
      }
      // Ack in requests of at most 1000 ids.
      for (let i = 0; i < messages.length; i += 1000) {
        const ackIds = messages.slice(i, i + 1000).map((m) => m.ackId);
        let attempts = 0;
        for (;;) {
          attempts++;
          const a0 = performance.now();
          try {
            const r = await client.json('POST', `${o.subPath}/ack`, JSON.stringify({ ackIds }));
            const a1 = performance.now();
            if (r.status === 200) {
              res.ackLatency.add(a1 - a0);
              res.acked += r.body.acked;
              res.invalidAcks += r.body.invalid?.length ?? 0;
              res.lastAckAt = a1;
              res.ackTimeline.push([a1, r.body.acked]);
              break;
            }
            res.errors.add(`ack HTTP ${r.status}`, JSON.stringify(r.body));
          } catch (e) {
            res.errors.add(`ack ${(e as { code?: string }).code ?? (e as Error).name}`, (e as Error).message);
          }
          if (attempts >= 5 || o.abort.aborted || performance.now() >= o.deadline) break;
          await sleep(100);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: o.pullers }, worker));
  return res;
}
