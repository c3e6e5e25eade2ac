/**
 * Goal: the lease rules hold under any interleaving of publishes, pulls, acks, nacks, deadline changes
 * and the passing of time: no message is leased to two consumers at once (at most one valid ackId per
 * seq), an ackId is valid exactly while its lease is current, every published message is eventually
 * acked exactly once when consumers ack what they get, and backlog == published − acked (no filter).
 * In an ordered subscription, additionally: per ordering key one message in flight and publish order.
 * Method: fast-check generates a random walk of abstract steps; a small model (per seq: acked?,
 * attempts, current ackId, due time) predicts each ack/nack/modify reply exactly and the size and
 * allowed members of each pull; independent checks count successful acks per seq. The walk ends by
 * draining: advance time, pull and ack until nothing is left.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Harness, msg, text } from './harness.js';

const RETRY_MS = 700;

type Step =
  | { kind: 'time'; ms: number }
  | { kind: 'publish'; n: number; delaySeconds: number; keys: number[] }
  | { kind: 'pull'; max: number; deadlineMs: number }
  | { kind: 'ack'; picks: number[] }
  | { kind: 'nack'; picks: number[]; delayMs: number | null }
  | { kind: 'modify'; picks: number[]; deadlineMs: number };

const picks = fc.array(fc.nat(1000), { minLength: 1, maxLength: 4 });
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('time' as const), ms: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 15_000 })) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      n: fc.integer({ min: 1, max: 3 }),
      delaySeconds: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 10 }) }),
      keys: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 3, maxLength: 3 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('pull' as const), max: fc.integer({ min: 1, max: 5 }), deadlineMs: fc.integer({ min: 1000, max: 10_000 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('ack' as const), picks }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('nack' as const), picks, delayMs: fc.option(fc.integer({ min: 0, max: 5000 }), { nil: null }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('modify' as const), picks, deadlineMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10_000 })) }) },
);

interface SeqModel {
  orderingKey: string | undefined;
  acked: boolean;
  attempts: number;
  /** The ackId of the latest delivery while it is leased, else null. */
  leaseAckId: string | null;
  /** Lease deadline while leased; otherwise when it may be delivered. */
  dueAtMs: number;
  /** Successful acks the machine reported for this seq (must end at exactly 1). */
  ackedTimes: number;
}

function runWalk(steps: Step[], ordered: boolean): void {
  const h = new Harness();
  h.createTopic('t', { retentionSeconds: 1_296_000 });
  h.createSub('s', 't', { ordered, retry: { policy: 'fixed', intervalMs: RETRY_MS, maxAttempts: null } });
  const model = new Map<number, SeqModel>();
  const ackIds: string[] = []; // every ackId ever handed out, stale ones included
  const seqOfAckId = new Map<string, number>();
  let delivered = 0;

  const validLease = (id: string): SeqModel | undefined => {
    const seq = seqOfAckId.get(id);
    const m = seq === undefined ? undefined : model.get(seq);
    return m && !m.acked && m.leaseAckId === id && m.dueAtMs > h.nowMs ? m : undefined;
  };

  /** What a pull may hand out now; in an ordered subscription only the oldest unacked seq of a key. */
  const available = (): Set<number> => {
    const heads = new Map<string, number>();
    for (const [seq, m] of model) if (!m.acked && m.orderingKey !== undefined && !heads.has(m.orderingKey)) heads.set(m.orderingKey, seq);
    const out = new Set<number>();
    for (const [seq, m] of model) {
      if (m.acked || m.dueAtMs > h.nowMs) continue;
      if (ordered && m.orderingKey !== undefined && heads.get(m.orderingKey) !== seq) continue;
      out.add(seq);
    }
    return out;
  };

  const pickIds = (p: number[]): string[] =>
    ackIds.length === 0 ? ['0.1', 'garbage'] : p.map((i) => (i === 1000 ? 'garbage' : ackIds[i % ackIds.length]!));

  const checkInvariants = () => {
    const info = h.info('s');
    const acked = [...model.values()].filter((m) => m.acked).length;
    expect(info.backlog).toBe(model.size - acked);
    expect(info.acked).toBe(acked);
    expect(info.delivered).toBe(delivered);
    const leased = [...model.values()].filter((m) => !m.acked && m.leaseAckId !== null && m.dueAtMs > h.nowMs);
    expect(info.inFlight).toBe(leased.length);
    for (const m of model.values()) expect(m.ackedTimes).toBeLessThanOrEqual(1);
    if (ordered) {
      const keys = leased.map((m) => m.orderingKey).filter((k) => k !== undefined);
      expect(new Set(keys).size).toBe(keys.length); // one in flight per key
    }
  };

  const pull = (max: number, deadlineMs: number) => {
    const allowed = available();
    const ds = h.pull('s', max, deadlineMs);
    expect(ds.length).toBe(Math.min(max, allowed.size));
    expect(new Set(ds.map((d) => d.message.seq)).size).toBe(ds.length);
    for (const d of ds) {
      const seq = d.message.seq;
      // Never handed out while another lease on it is current, never after its ack, never early.
      expect(allowed.has(seq), `seq ${seq} handed out but not available`).toBe(true);
      const m = model.get(seq)!;
      expect(d.attempt).toBe(m.attempts + 1);
      expect(text(d.message)).toBe(`m${seq}`);
      expect(seqOfAckId.has(d.ackId)).toBe(false);
      m.attempts++;
      m.leaseAckId = d.ackId;
      m.dueAtMs = h.nowMs + deadlineMs;
      ackIds.push(d.ackId);
      seqOfAckId.set(d.ackId, seq);
      delivered++;
    }
    return ds;
  };

  const ack = (ids: string[]) => {
    const expectedInvalid: string[] = [];
    for (const id of ids) {
      const m = validLease(id);
      if (!m) expectedInvalid.push(id);
      else m.acked = true;
    }
    const reply = h.ack('s', ids);
    expect(reply).toEqual({ count: ids.length - expectedInvalid.length, invalid: expectedInvalid });
    // Successes per id, straight from the reply: occurrences sent minus occurrences listed invalid.
    for (const id of new Set(ids)) {
      const successes = ids.filter((x) => x === id).length - reply.invalid.filter((x) => x === id).length;
      if (successes > 0) model.get(seqOfAckId.get(id)!)!.ackedTimes += successes;
    }
  };

  for (const s of steps) {
    switch (s.kind) {
      case 'time':
        h.advance(s.ms);
        break;
      case 'publish': {
        const items = Array.from({ length: s.n }, (_, i) => {
          const key = s.keys[i]!;
          return { key: key === 0 ? undefined : `k${key}`, seq: h.topic('t').lastSeq + 1 + i };
        });
        const results = h.publish(
          't',
          ...items.map((it) => msg(`m${it.seq}`, { delaySeconds: s.delaySeconds, ...(it.key ? { orderingKey: it.key } : {}) })),
        );
        expect(results.map((r) => r.seq)).toEqual(items.map((it) => it.seq));
        for (const it of items) {
          model.set(it.seq, { orderingKey: it.key, acked: false, attempts: 0, leaseAckId: null, dueAtMs: h.nowMs + s.delaySeconds * 1000, ackedTimes: 0 });
        }
        break;
      }
      case 'pull':
        pull(s.max, s.deadlineMs);
        break;
      case 'ack':
        ack(pickIds(s.picks));
        break;
      case 'nack': {
        const ids = pickIds(s.picks);
        const expectedInvalid: string[] = [];
        for (const id of ids) {
          const m = validLease(id);
          if (!m) {
            expectedInvalid.push(id);
            continue;
          }
          m.leaseAckId = null;
          m.dueAtMs = h.nowMs + (s.delayMs ?? RETRY_MS);
        }
        expect(h.nack('s', ids, s.delayMs)).toEqual({ count: ids.length - expectedInvalid.length, invalid: expectedInvalid });
        break;
      }
      case 'modify': {
        const ids = pickIds(s.picks);
        const expectedInvalid: string[] = [];
        for (const id of ids) {
          const m = validLease(id);
          if (!m) {
            expectedInvalid.push(id);
            continue;
          }
          if (s.deadlineMs === 0) m.leaseAckId = null;
          m.dueAtMs = h.nowMs + s.deadlineMs;
        }
        expect(h.modify('s', ids, s.deadlineMs)).toEqual({ count: ids.length - expectedInvalid.length, invalid: expectedInvalid });
        break;
      }
    }
    checkInvariants();
  }

  // Drain: consumers now ack everything they get; every message ends acked exactly once.
  for (let round = 0; round < 10_000 && h.info('s').backlog > 0; round++) {
    h.advance(11_000);
    const ds = pull(1000, 30_000);
    ack(ds.map((d) => d.ackId));
    checkInvariants();
  }
  expect(h.info('s')).toMatchObject({ backlog: 0, inFlight: 0, acked: model.size });
  for (const [seq, m] of model) expect(m.ackedTimes, `seq ${seq}`).toBe(1);
}

describe('broker machine against a lease model', () => {
  it('unordered subscription', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 10, maxLength: 120, size: 'max' }), (steps) => runWalk(steps, false)),
      { numRuns: 60 },
    );
  });

  it('ordered subscription: additionally one in flight per key, in publish order', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 10, maxLength: 120, size: 'max' }), (steps) => runWalk(steps, true)),
      { numRuns: 60 },
    );
  });
});
