/**
 * Goal: the broker machine is a deterministic function of its command log (DESIGN.md: "every replica
 * computes the same state"): two machines fed the same stamped commands give the same replies, effects
 * and state, and a machine restored from a snapshot taken mid-way, fed the rest of the log, cannot be
 * told apart from the one that never stopped (same replies, effects, queries and final snapshot).
 * Method: fast-check generates abstract steps over several topics and subscriptions (filters, ordering,
 * dead-lettering, delays, dedup, retention, seek, redrive, config changes, deletes and re-creates);
 * they are turned into concrete commands while machine A runs (ackIds are picked from A's earlier
 * replies), and the recorded log is replayed into a fresh machine C and, from a random cut, into a
 * machine B restored from A's snapshot at that cut. B gets its own MemoryMessageStore holding a copy of
 * the retained messages at the cut, as a restarted replica would find them in LMDB.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BrokerMachine, type ApplyResult, type BrokerSnapshot } from '../../../src/core/broker/machine.js';
import type { Command, StampedCommand } from '../../../src/core/broker/commands.js';
import type { SubscriptionConfig } from '../../../src/core/broker/types.js';
import { MemoryMessageStore } from '../../../src/storage/memory-store.js';
import { T0, msg, subConfig, topicConfig } from './harness.js';

const TOPICS = ['t', 'u', 'dlq'] as const;
const SUBS = ['plain', 'ordered', 'tagged', 'keyed', 'onU', 'dlqReader'] as const;

const subConfigs: Record<(typeof SUBS)[number], SubscriptionConfig> = {
  plain: subConfig('t', {
    deadLetter: { topic: 'dlq', maxDeliveries: 3 },
    retry: { policy: 'fixed', intervalMs: 2000, maxAttempts: 2 },
    push: { url: 'https://example.com/hook', headers: {}, format: 'json', timeoutMs: 1000, maxInFlight: 4, rateLimitPerSecond: 0 },
  }),
  ordered: subConfig('t', { ordered: true, deadLetter: { topic: 'dlq', maxDeliveries: 2 } }),
  tagged: subConfig('t', { filter: { tags: ['a'] }, ordered: true }),
  keyed: subConfig('t', { filter: { bindingKeys: ['x.*', 'y.#'] }, startAt: 'latest' }),
  onU: subConfig('u', {
    startAt: { seq: 2 },
    retry: { policy: 'BACKOFF_RETRY' },
    push: { url: 'https://example.com/u', headers: {}, format: 'raw', timeoutMs: 1000, maxInFlight: 4, rateLimitPerSecond: 5 },
  }),
  dlqReader: subConfig('dlq'),
};

type Step =
  | { kind: 'time'; ms: number }
  | { kind: 'publish'; topic: number; items: { tag: number; key: number; ordering: number; dedup: number; delay: number }[] }
  | { kind: 'pull'; sub: number; max: number; deadlineMs: number }
  | { kind: 'ack' | 'nack' | 'modify' | 'push-failed'; sub: number; picks: number[]; value: number }
  | { kind: 'push-admin'; sub: number; variant: number }
  | { kind: 'seek'; sub: number; bySeq: boolean; value: number }
  | { kind: 'expire' }
  | { kind: 'redrive'; sub: number; max: number }
  | { kind: 'filter'; sub: number; variant: number }
  | { kind: 'delete-sub' | 'create-sub'; sub: number }
  | { kind: 'delete-topic' | 'create-topic'; topic: number };

const sub = fc.nat(SUBS.length - 1);
const topic = fc.nat(TOPICS.length - 1);
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('time' as const), ms: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 2000 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 40_000 }) }) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      topic: fc.nat(1),
      items: fc.array(
        fc.record({ tag: fc.nat(2), key: fc.nat(4), ordering: fc.nat(2), dedup: fc.nat(5), delay: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 20 }) }) }),
        { minLength: 1, maxLength: 4 },
      ),
    }),
  },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('pull' as const), sub, max: fc.integer({ min: 1, max: 6 }), deadlineMs: fc.integer({ min: 3000, max: 30_000 }) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constantFrom('ack' as const, 'ack' as const, 'nack' as const, 'modify' as const, 'push-failed' as const),
      sub,
      picks: fc.array(fc.nat(1000), { minLength: 1, maxLength: 4 }),
      value: fc.integer({ min: -1, max: 15_000 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('seek' as const), sub, bySeq: fc.boolean(), value: fc.integer({ min: 0, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('push-admin' as const), sub, variant: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('redrive' as const), sub, max: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('filter' as const), sub, variant: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('delete-sub' as const, 'create-sub' as const), sub }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('delete-topic' as const, 'create-topic' as const, 'create-topic' as const), topic }) },
);

const setupCommands = (): Command[] => [
  ...TOPICS.map((name): Command => ({ type: 'create-topic', name, config: topicConfig({ retentionSeconds: 120, dedupWindowSeconds: 30 }) })),
  ...SUBS.map((name): Command => ({ type: 'create-subscription', name, config: subConfigs[name], secret: `whsec_${name}` })),
];

const filters = [null, { tags: ['b'] }, { tags: ['a'], bindingKeys: ['#'] }];

/** Runs the steps on machine A and records the stamped log and A's results. */
function record(steps: Step[], onApplied: (i: number, a: BrokerMachine, store: MemoryMessageStore) => void) {
  const store = new MemoryMessageStore();
  const a = new BrokerMachine(store);
  const log: StampedCommand[] = [];
  const results: ApplyResult[] = [];
  const ackIds: string[][] = SUBS.map(() => []);
  let nowMs = T0;
  const apply = (command: Command) => {
    log.push({ nowMs, command });
    const r = a.apply({ nowMs, command }, log.length);
    results.push(structuredClone(r));
    onApplied(log.length, a, store);
    return r;
  };
  for (const c of setupCommands()) apply(c);
  for (const s of steps) {
    switch (s.kind) {
      case 'time':
        nowMs += s.ms;
        break;
      case 'publish':
        apply({
          type: 'publish',
          topic: TOPICS[s.topic]!,
          messages: s.items.map((it, i) =>
            msg(`${log.length}/${i}`, {
              ...(it.tag ? { tags: [it.tag === 1 ? 'a' : 'b'] } : {}),
              ...(it.key ? { routingKey: ['x.1', 'y', 'y.2.3', 'z'][it.key - 1]! } : {}),
              ...(it.ordering ? { orderingKey: `k${it.ordering}` } : {}),
              ...(it.dedup === 1 || it.dedup === 2 ? { dedupId: `d${it.dedup}` } : {}),
              delaySeconds: it.delay,
            }),
          ),
        });
        break;
      case 'pull': {
        const r = apply({ type: 'pull', subscription: SUBS[s.sub]!, max: s.max, ackDeadlineMs: s.deadlineMs });
        if (r.reply.ok && 'deliveries' in r.reply) ackIds[s.sub]!.push(...r.reply.deliveries.map((d) => d.ackId));
        break;
      }
      case 'ack':
      case 'nack':
      case 'modify':
      case 'push-failed': {
        const known = ackIds[s.sub]!;
        // Mostly recent ackIds (likely still valid), some old ones (likely stale), some garbage.
        const ids = s.picks.map((p) =>
          known.length === 0 || p === 1000
            ? `${p.toString(36)}.1`
            : p < 700
              ? known[known.length - 1 - (p % Math.min(known.length, 6))]!
              : known[p % known.length]!,
        );
        const subscription = SUBS[s.sub]!;
        if (s.kind === 'ack') apply({ type: 'ack', subscription, ackIds: ids });
        else if (s.kind === 'nack') apply({ type: 'nack', subscription, ackIds: ids, delayMs: s.value < 0 ? null : s.value });
        else if (s.kind === 'push-failed') {
          apply({
            type: 'push-failed',
            subscription,
            failures: ids.map((ackId, i) => ({ ackId, error: String(500 + i), retryAfterMs: s.value < 0 ? null : s.value })),
          });
        }
        else apply({ type: 'modify-ack-deadline', subscription, ackIds: ids, deadlineMs: Math.max(0, s.value) });
        break;
      }
      case 'seek':
        apply({ type: 'seek', subscription: SUBS[s.sub]!, target: s.bySeq ? { seq: s.value } : { timeMs: T0 + s.value * 5000 } });
        break;
      case 'expire':
        apply({ type: 'expire' });
        break;
      case 'push-admin': {
        const subscription = SUBS[s.sub]!;
        if (s.variant === 0) apply({ type: 'rotate-secret', subscription, secret: `whsec_${log.length}` });
        else apply({ type: s.variant === 1 ? 'pause-push' : 'resume-push', subscription });
        break;
      }
      case 'redrive':
        apply({ type: 'redrive', subscription: SUBS[s.sub]!, max: s.max });
        break;
      case 'filter':
        apply({ type: 'update-subscription', name: SUBS[s.sub]!, patch: { filter: filters[s.variant]! } });
        break;
      case 'delete-sub':
        apply({ type: 'delete-subscription', name: SUBS[s.sub]! });
        break;
      case 'create-sub':
        apply({ type: 'create-subscription', name: SUBS[s.sub]!, config: subConfigs[SUBS[s.sub]!] });
        break;
      case 'delete-topic':
        apply({ type: 'delete-topic', name: TOPICS[s.topic]! });
        break;
      case 'create-topic':
        apply({ type: 'create-topic', name: TOPICS[s.topic]!, config: topicConfig({ retentionSeconds: 120, dedupWindowSeconds: 30 }) });
        break;
    }
  }
  return { a, store, log, results, endMs: nowMs };
}

/** Every read query the API serves, at one time. */
function queries(m: BrokerMachine, nowMs: number) {
  return {
    topics: m.topicNames().map((n) => m.topicInfo(n)),
    subs: m.subscriptionNames().map((n) => ({
      info: m.subscriptionInfo(n, nowMs),
      hasAvailable: m.hasAvailable(n, nowMs),
      next: m.nextAvailableAtMs(n),
      secrets: m.pushSecrets(n, nowMs),
      paused: m.pushPaused(n),
    })),
    expireDue: m.expireDue(nowMs),
  };
}

/** What a restarted replica finds on disk: the retained messages of every live topic. */
function copyStore(from: MemoryMessageStore, snapshot: BrokerSnapshot): MemoryMessageStore {
  const to = new MemoryMessageStore();
  for (const t of snapshot.topics) {
    for (let seq = t.firstSeq; seq <= t.lastSeq; seq++) {
      const m = from.get(t.id, seq);
      expect(m, `topic ${t.name} seq ${seq} retained`).toBeDefined();
      to.put(t.id, structuredClone(m!));
    }
  }
  return to;
}

const steps = fc.array(step, { minLength: 5, maxLength: 100, size: 'max' });

describe('broker machine determinism', () => {
  it('two machines fed the same log give the same replies, effects, queries and state', () => {
    fc.assert(
      fc.property(steps, (ss) => {
        const { a, log, results, endMs } = record(ss, () => {});
        const c = new BrokerMachine(new MemoryMessageStore());
        log.forEach((entry, i) => {
          expect(c.apply(structuredClone(entry), i + 1), `entry ${i + 1} (${entry.command.type})`).toEqual(results[i]);
        });
        expect(c.snapshot()).toEqual(a.snapshot());
        expect(queries(c, endMs)).toEqual(queries(a, endMs));
      }),
      { numRuns: 250 },
    );
  });

  it('a machine restored from a snapshot mid-way, fed the rest, ends like the one that never stopped', () => {
    fc.assert(
      fc.property(steps, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (ss, cutFraction) => {
        // First pass to learn the log length, second to take the snapshot at the cut: A is deterministic
        // (the first property checks that), so both passes produce the same log.
        const total = record(ss, () => {}).log.length;
        const cut = Math.floor(cutFraction * (total + 1)); // entries applied before the snapshot
        let snap: BrokerSnapshot | undefined;
        let storeB: MemoryMessageStore | undefined;
        const take = (a: BrokerMachine, store: MemoryMessageStore) => {
          snap = structuredClone(a.snapshot());
          storeB = copyStore(store, snap);
        };
        const { a, log, results, endMs } = record(ss, (applied, m, store) => {
          if (applied === cut) take(m, store);
        });
        if (cut === 0) take(new BrokerMachine(new MemoryMessageStore()), new MemoryMessageStore());
        const b = new BrokerMachine(storeB!);
        b.restore(structuredClone(snap!));
        expect(b.snapshot()).toEqual(snap);
        for (let i = cut; i < log.length; i++) {
          expect(b.apply(structuredClone(log[i]!), i + 1), `entry ${i + 1} (${log[i]!.command.type}) after a cut at ${cut}`).toEqual(results[i]);
        }
        expect(b.snapshot()).toEqual(a.snapshot());
        expect(queries(b, endMs)).toEqual(queries(a, endMs));
        expect(queries(b, endMs + 60_000)).toEqual(queries(a, endMs + 60_000));
      }),
      { numRuns: 250 },
    );
  });
});
