/**
 * Goal: pin down the broker state machine's user-visible semantics (API.md "Subscriptions",
 * DESIGN.md "Semantics to keep"): publish/pull/ack, leases, nack and backoff, deadlines, filters,
 * delays, dedup, ordering, retention, seek, dead-lettering and redrive, topic and subscription
 * lifecycle, and the stats a subscription's GET shows.
 * Method: drive one BrokerMachine over a MemoryMessageStore through scripted commands with a hand-moved
 * clock (see harness.ts) and assert on replies, effects and the read-only queries, never on internals.
 */
import { describe, expect, it } from 'vitest';
import { Harness, T0, msg, subConfig, text, topicConfig } from './harness.js';
import { parseAckId, formatAckId } from '../../../src/core/broker/machine.js';
import { messageId } from '../../../src/core/broker/types.js';
import type { Command } from '../../../src/core/broker/commands.js';
import { limits } from '../../../src/core/limits.js';

const fixedRetry = (intervalMs: number) => ({ policy: 'fixed' as const, intervalMs, maxAttempts: null });

/** A topic `t` and an earliest-start subscription `s` on it. */
function setup(subOver: Parameters<Harness['createSub']>[2] = {}, topicOver: Parameters<Harness['createTopic']>[1] = {}) {
  const h = new Harness();
  h.createTopic('t', topicOver);
  h.createSub('s', 't', subOver);
  return h;
}

describe('publish, pull, ack', () => {
  it('publish answers one result per message, in order, with ids and increasing seqs', () => {
    const h = new Harness();
    const topicId = h.createTopic('t');
    const results = h.publish('t', msg('a'), msg('b'), msg('c'));
    expect(results).toEqual([
      { id: messageId(topicId, 1), seq: 1, duplicate: false },
      { id: messageId(topicId, 2), seq: 2, duplicate: false },
      { id: messageId(topicId, 3), seq: 3, duplicate: false },
    ]);
    expect(new Set(results.map((r) => r.id)).size).toBe(3);
    expect(h.topic('t')).toMatchObject({ messages: 3, firstSeq: 1, lastSeq: 3, bytes: 3 });
  });

  it('publishing to a missing topic is TopicNotFound; a message over maxMessageBytes refuses the batch', () => {
    const h = new Harness();
    expect(h.run({ type: 'publish', topic: 'nope', messages: [msg('a')] })).toMatchObject({ ok: false, code: 'TopicNotFound' });
    h.createTopic('t', { maxMessageBytes: 4 });
    expect(h.run({ type: 'publish', topic: 't', messages: [msg('ok'), msg('too long')] })).toMatchObject({
      ok: false,
      code: 'PayloadTooLarge',
    });
    expect(h.topic('t').lastSeq).toBe(0);
    expect(h.publish('t', msg('four'))[0]!.seq).toBe(1);
  });

  it('pull hands out messages in seq order with their content, attempt 1 and an ackId; ack removes them', () => {
    const h = setup();
    h.publish('t', msg('a', { attributes: { k: 'v' }, tags: ['x'], routingKey: 'r.k', orderingKey: 'o' }), msg('b'));
    const pullIndex = h.index + 1;
    const ds = h.pull('s');
    expect(ds.map((d) => text(d.message))).toEqual(['a', 'b']);
    expect(ds.map((d) => d.attempt)).toEqual([1, 1]);
    expect(ds[0]!.message).toMatchObject({ seq: 1, attributes: { k: 'v' }, tags: ['x'], routingKey: 'r.k', orderingKey: 'o' });
    expect(ds[0]!.message.publishTimeMs).toBe(T0);
    // The lease token of a pull is the pull's log index.
    expect(ds[0]!.ackId).toBe(formatAckId(1, pullIndex));
    expect(parseAckId(ds[1]!.ackId)).toEqual({ seq: 2, token: pullIndex });
    expect(h.pull('s')).toEqual([]);
    expect(h.ack('s', ds.map((d) => d.ackId))).toEqual({ count: 2, invalid: [] });
    h.advance(60_000);
    expect(h.pull('s')).toEqual([]);
    expect(h.info('s')).toMatchObject({ backlog: 0, inFlight: 0, acked: 2, delivered: 2 });
  });

  it('pull respects max and resumes where it stopped', () => {
    const h = setup();
    h.publish('t', ...['a', 'b', 'c', 'd', 'e'].map((x) => msg(x)));
    expect(h.pullTexts('s', 2)).toEqual(['a', 'b']);
    expect(h.pullTexts('s', 2)).toEqual(['c', 'd']);
    expect(h.pullTexts('s', 2)).toEqual(['e']);
  });

  it('pull, ack and friends on a missing subscription are SubscriptionNotFound', () => {
    const h = new Harness();
    for (const command of [
      { type: 'pull', subscription: 'x', max: 1, ackDeadlineMs: 1000 },
      { type: 'ack', subscription: 'x', ackIds: ['1.1'] },
      { type: 'nack', subscription: 'x', ackIds: ['1.1'], delayMs: null },
      { type: 'modify-ack-deadline', subscription: 'x', ackIds: ['1.1'], deadlineMs: 1 },
      { type: 'seek', subscription: 'x', target: { seq: 1 } },
      { type: 'redrive', subscription: 'x', max: 1 },
      { type: 'delete-subscription', name: 'x' },
      { type: 'update-subscription', name: 'x', patch: {} },
    ] satisfies Command[]) {
      expect(h.run(command)).toMatchObject({ ok: false, code: 'SubscriptionNotFound' });
    }
  });

  it('publish emits an available effect for each subscription that gets a message', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('all', 't');
    h.createSub('paid', 't', { filter: { tags: ['paid'] } });
    expect(h.apply({ type: 'publish', topic: 't', messages: [msg('a')] }).effects).toEqual([
      { type: 'available', subscription: 'all' },
      { type: 'published', topic: 't' },
    ]);
    const effects = h.apply({ type: 'publish', topic: 't', messages: [msg('b', { tags: ['paid'] }), msg('c')] }).effects;
    expect(effects.flatMap((e) => (e.type === 'available' ? [e.subscription] : [])).sort()).toEqual(['all', 'paid']);
    expect(effects.filter((e) => e.type === 'published')).toEqual([{ type: 'published', topic: 't' }]);
  });

  it('hasAvailable and nextAvailableAtMs tell the leader when a pull would find something', () => {
    const h = setup();
    expect(h.machine.hasAvailable('s', h.nowMs)).toBe(false);
    expect(h.machine.nextAvailableAtMs('s')).toBeUndefined();
    h.publish('t', msg('a'));
    expect(h.machine.hasAvailable('s', h.nowMs)).toBe(true);
    h.pull('s', 10, 5000);
    expect(h.machine.hasAvailable('s', h.nowMs)).toBe(false);
    expect(h.machine.nextAvailableAtMs('s')).toBe(h.nowMs + 5000);
    expect(h.machine.hasAvailable('s', h.nowMs + 4999)).toBe(false);
    expect(h.machine.hasAvailable('s', h.nowMs + 5000)).toBe(true);
    expect(h.machine.hasAvailable('missing', h.nowMs)).toBe(false);
  });
});

describe('leases (visibility)', () => {
  it('a pulled message is not handed out again before its deadline', () => {
    const h = setup();
    h.publish('t', msg('a'));
    expect(h.pullTexts('s', 10, 10_000)).toEqual(['a']);
    h.advance(9_999);
    expect(h.pull('s')).toEqual([]);
    expect(h.info('s').inFlight).toBe(1);
  });

  it('after the deadline it comes back with deliveryAttempt + 1, and the old ackId is invalid', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [first] = h.pull('s', 10, 10_000);
    h.advance(10_000);
    expect(h.info('s').inFlight).toBe(0);
    const [second] = h.pull('s', 10, 10_000);
    expect(text(second!.message)).toBe('a');
    expect(second!.attempt).toBe(2);
    expect(second!.ackId).not.toBe(first!.ackId);
    expect(h.ack('s', [first!.ackId])).toEqual({ count: 0, invalid: [first!.ackId] });
    expect(h.ack('s', [second!.ackId])).toEqual({ count: 1, invalid: [] });
    expect(h.info('s')).toMatchObject({ backlog: 0, delivered: 2, acked: 1 });
  });

  it('an ackId whose deadline has passed is invalid even before anyone pulls again', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [d] = h.pull('s', 10, 10_000);
    h.advance(10_000);
    expect(h.ack('s', [d!.ackId])).toEqual({ count: 0, invalid: [d!.ackId] });
    // Nothing was lost: the message is delivered again.
    expect(h.pull('s').map((x) => x.attempt)).toEqual([2]);
  });

  it('unknown, acked, garbage and other-subscription ackIds are listed in invalid; valid ones still count', () => {
    const h = setup();
    h.createSub('other', 't');
    h.publish('t', msg('a'), msg('b'));
    const [a, b] = h.pull('s');
    const [otherA] = h.pull('other');
    expect(h.ack('s', [a!.ackId])).toEqual({ count: 1, invalid: [] });
    const garbage = ['', 'x', '.', '1.', '.1', '1.0', 'A.1', '1.1.1', '-1.2', '1 .2', 'z'.repeat(256), '99.99', 'zzzzzzzzzzzzz.1'];
    const ackIds = [a!.ackId, ...garbage, otherA!.ackId, b!.ackId];
    expect(h.ack('s', ackIds)).toEqual({ count: 1, invalid: [a!.ackId, ...garbage, otherA!.ackId] });
    // The same ackId twice in one request counts once.
    h.publish('t', msg('c'));
    const [c] = h.pull('s');
    expect(h.ack('s', [c!.ackId, c!.ackId])).toEqual({ count: 1, invalid: [c!.ackId] });
  });
});

describe('nack', () => {
  it('with a delay: redelivered exactly when the delay is over, attempt + 1, old ackId invalid', () => {
    const h = setup();
    h.publish('t', msg('a'), msg('b'));
    const [a] = h.pull('s', 1);
    expect(h.nack('s', [a!.ackId], 5000)).toEqual({ count: 1, invalid: [] });
    expect(h.info('s').inFlight).toBe(0);
    expect(h.ack('s', [a!.ackId]).invalid).toEqual([a!.ackId]);
    // A message waiting out its delay does not block others.
    expect(h.pullTexts('s', 10)).toEqual(['b']);
    h.advance(4999);
    expect(h.pull('s')).toEqual([]);
    h.advance(1);
    const again = h.pull('s');
    expect(again.map((d) => [text(d.message), d.attempt])).toEqual([['a', 2]]);
  });

  it('with delay 0: available again at once', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [a] = h.pull('s');
    h.nack('s', [a!.ackId], 0);
    expect(h.pull('s').map((d) => d.attempt)).toEqual([2]);
  });

  it('without a delay: the retry policy backoff (fixed interval)', () => {
    const h = setup({ retry: fixedRetry(20_000) });
    h.publish('t', msg('a'));
    for (let attempt = 1; attempt <= 3; attempt++) {
      const [d] = h.pull('s');
      expect(d!.attempt).toBe(attempt);
      h.nack('s', [d!.ackId], null);
      h.advance(19_999);
      expect(h.pull('s')).toEqual([]);
      h.advance(1);
    }
  });

  it('without a delay: exponential backoff grows by the multiplier up to the cap (no jitter)', () => {
    const h = setup({
      retry: { policy: 'exponential', minBackoffMs: 1000, maxBackoffMs: 5000, multiplier: 2, jitter: 0, maxAttempts: null, maxRetrySeconds: 86_400 },
    });
    h.publish('t', msg('a'));
    for (const expected of [1000, 2000, 4000, 5000, 5000]) {
      const [d] = h.pull('s');
      expect(d).toBeDefined();
      h.nack('s', [d!.ackId], null);
      expect(h.machine.nextAvailableAtMs('s')).toBe(h.nowMs + expected);
      h.advance(expected - 1);
      expect(h.pull('s')).toEqual([]);
      h.advance(1);
    }
  });

  it('without a delay: exponential backoff with jitter stays within ±jitter of the base', () => {
    const h = setup(); // min 1000, ×2, jitter 0.2
    h.publish('t', ...Array.from({ length: 20 }, (_, i) => msg(`m${i}`)));
    const ds = h.pull('s');
    h.nack('s', ds.map((d) => d.ackId), null);
    const delays = new Set<number>();
    // Pull each again exactly when the heap says it is due; all must fall in [800, 1200].
    for (let n = 0; n < 20; n++) {
      const at = h.machine.nextAvailableAtMs('s')!;
      expect(at - T0).toBeGreaterThanOrEqual(800);
      expect(at - T0).toBeLessThanOrEqual(1200);
      delays.add(at);
      h.nowMs = at;
      const [d] = h.pull('s', 1);
      expect(d!.attempt).toBe(2);
    }
    // Jitter is drawn per message, so the 20 delays are not all the same.
    expect(delays.size).toBeGreaterThan(1);
  });

  it('a message nacked many times with minBackoffMs 0 keeps coming back (the backoff never becomes NaN)', () => {
    // The API allows minBackoffMs 0 and multiplier up to 100; 100^155 overflows to Infinity.
    const h = setup({
      retry: { policy: 'exponential', minBackoffMs: 0, maxBackoffMs: 1000, multiplier: 100, jitter: 0, maxAttempts: null, maxRetrySeconds: 86_400 },
    });
    h.publish('t', msg('a'));
    for (let attempt = 1; attempt <= 160; attempt++) {
      const ds = h.pull('s');
      expect(ds.map((d) => d.attempt), `delivery ${attempt}`).toEqual([attempt]);
      h.nack('s', [ds[0]!.ackId], null);
      h.advance(1000);
    }
  });

  it('nack of an unknown or expired ackId is invalid and changes nothing', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [a] = h.pull('s', 1, 1000);
    h.advance(1000);
    expect(h.nack('s', [a!.ackId, 'nope'], 0)).toEqual({ count: 0, invalid: [a!.ackId, 'nope'] });
  });
});

describe('modify-ack-deadline', () => {
  it('extends a lease: not handed out until the new deadline, and the ackId stays valid', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [a] = h.pull('s', 1, 10_000);
    h.advance(8000);
    expect(h.modify('s', [a!.ackId], 60_000)).toEqual({ count: 1, invalid: [] });
    h.advance(59_999); // 67,999 ms after the pull: past the first deadline, before the new one
    expect(h.pull('s')).toEqual([]);
    expect(h.info('s').inFlight).toBe(1);
    expect(h.ack('s', [a!.ackId])).toEqual({ count: 1, invalid: [] });
  });

  it('can also shorten a lease', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [a] = h.pull('s', 1, 60_000);
    h.modify('s', [a!.ackId], 1000);
    h.advance(1000);
    expect(h.pull('s').map((d) => d.attempt)).toEqual([2]);
  });

  it('0 releases the message now: deliverable at once, and the old ackId is invalid', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [a] = h.pull('s', 1, 60_000);
    expect(h.modify('s', [a!.ackId], 0)).toEqual({ count: 1, invalid: [] });
    expect(h.info('s').inFlight).toBe(0);
    const [again] = h.pull('s');
    expect(again!.attempt).toBe(2);
    expect(h.ack('s', [a!.ackId]).invalid).toEqual([a!.ackId]);
  });

  it('an expired or unknown ackId cannot be extended', () => {
    const h = setup();
    h.publish('t', msg('a'));
    const [a] = h.pull('s', 1, 1000);
    h.advance(1000);
    expect(h.modify('s', [a!.ackId, '7.7'], 60_000)).toEqual({ count: 0, invalid: [a!.ackId, '7.7'] });
    expect(h.pull('s').map((d) => d.attempt)).toEqual([2]);
  });
});

describe('filters', () => {
  it('tags: a message matches if it has any listed tag; backlog counts only matching messages', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't', { filter: { tags: ['paid', 'vip'] } });
    h.publish('t', msg('none'), msg('paid', { tags: ['paid'] }), msg('other', { tags: ['x'] }), msg('both', { tags: ['x', 'vip'] }));
    expect(h.info('s').backlog).toBe(2);
    expect(h.pullTexts('s')).toEqual(['paid', 'both']);
    expect(h.info('s')).toMatchObject({ backlog: 2, inFlight: 2 });
  });

  it('binding keys: * is one word, # zero or more; no routingKey matches nothing', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't', { filter: { bindingKeys: ['order.*.eu', 'audit.#'] } });
    const keys = ['order.created.eu', 'order.created.us', 'order.eu', 'order.a.b.eu', 'audit', 'audit.x.y', 'auditx', undefined];
    h.publish('t', ...keys.map((k, i) => msg(`${i}:${k}`, k === undefined ? {} : { routingKey: k })));
    expect(h.info('s').backlog).toBe(3);
    expect(h.pullTexts('s')).toEqual(['0:order.created.eu', '4:audit', '5:audit.x.y']);
  });

  it('tags and binding keys together: a message must match both', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't', { filter: { tags: ['a'], bindingKeys: ['x.#'] } });
    h.publish('t', msg('1', { tags: ['a'], routingKey: 'x.y' }), msg('2', { tags: ['a'], routingKey: 'y' }), msg('3', { routingKey: 'x' }));
    expect(h.info('s').backlog).toBe(1);
    expect(h.pullTexts('s')).toEqual(['1']);
  });

  it('changing the filter recounts the backlog from the cursor', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't', { filter: { tags: ['a'] } });
    h.publish('t', msg('1', { tags: ['a'] }), msg('2', { tags: ['b'] }), msg('3', { tags: ['b'] }));
    expect(h.info('s').backlog).toBe(1);
    expect(h.run({ type: 'update-subscription', name: 's', patch: { filter: { tags: ['b'] } } })).toEqual({ ok: true });
    expect(h.info('s').backlog).toBe(2);
    expect(h.pullTexts('s')).toEqual(['2', '3']);
    h.run({ type: 'update-subscription', name: 's', patch: { filter: null } });
    expect(h.info('s').backlog).toBe(2); // both in flight, nothing ahead
  });
});

describe('wouldMakeAvailable (a waiting consumer pulls right behind a proposed publish)', () => {
  it('is true only for a subscription of that topic whose filter takes an undelayed message', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createTopic('other');
    h.createSub('all', 't');
    h.createSub('red', 't', { filter: { tags: ['red'] } });
    h.createSub('orders', 't', { filter: { bindingKeys: ['order.*'] } });
    const now = h.nowMs;
    expect(h.machine.wouldMakeAvailable('all', 't', [msg('a')], now)).toBe(true);
    expect(h.machine.wouldMakeAvailable('all', 'other', [msg('a')], now)).toBe(false);
    expect(h.machine.wouldMakeAvailable('missing', 't', [msg('a')], now)).toBe(false);
    expect(h.machine.wouldMakeAvailable('all', 't', [msg('a', { delaySeconds: 5 })], now)).toBe(false);
    expect(h.machine.wouldMakeAvailable('red', 't', [msg('a', { tags: ['blue'] })], now)).toBe(false);
    expect(h.machine.wouldMakeAvailable('red', 't', [msg('a', { tags: ['blue'] }), msg('b', { tags: ['red'] })], now)).toBe(true);
    expect(h.machine.wouldMakeAvailable('orders', 't', [msg('a', { routingKey: 'order.new' })], now)).toBe(true);
    expect(h.machine.wouldMakeAvailable('orders', 't', [msg('a', { routingKey: 'user.new' }), msg('b')], now)).toBe(false);
  });

  it('is false for a subscription that starts after the publish time', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('later', 't', { startAt: { time: new Date(h.nowMs + 60_000).toISOString(), timeMs: h.nowMs + 60_000 } });
    expect(h.machine.wouldMakeAvailable('later', 't', [msg('a')], h.nowMs)).toBe(false);
    expect(h.machine.wouldMakeAvailable('later', 't', [msg('a')], h.nowMs + 61_000)).toBe(true);
  });
});

describe('delay messages', () => {
  it('become visible only at publish time + delay, and do not block messages behind them', () => {
    const h = setup();
    h.publish('t', msg('late', { delaySeconds: 10 }), msg('now'));
    expect(h.pullTexts('s')).toEqual(['now']);
    expect(h.info('s').backlog).toBe(2);
    h.advance(9_999);
    expect(h.pull('s')).toEqual([]);
    expect(h.machine.nextAvailableAtMs('s')).toBe(T0 + 10_000);
    h.advance(1);
    const [late] = h.pull('s');
    expect(text(late!.message)).toBe('late');
    expect(late!.attempt).toBe(1);
    expect(late!.message.visibleAtMs).toBe(T0 + 10_000);
    expect(late!.message.publishTimeMs).toBe(T0);
  });

  it('a delayed message published after the first pull is also held back', () => {
    const h = setup();
    h.pull('s');
    h.publish('t', msg('late', { delaySeconds: 5 }));
    h.advance(4000);
    expect(h.pull('s')).toEqual([]);
    h.advance(1000);
    expect(h.pullTexts('s')).toEqual(['late']);
  });
});

describe('dedup', () => {
  it('a repeated dedupId within the window answers the first seq with duplicate: true, and stores nothing', () => {
    const h = setup({}, { dedupWindowSeconds: 60 });
    const [first] = h.publish('t', msg('a', { dedupId: 'p1' }));
    h.advance(59_999);
    const [dup] = h.publish('t', msg('a again', { dedupId: 'p1' }));
    expect(dup).toEqual({ id: first!.id, seq: first!.seq, duplicate: true });
    expect(h.topic('t').lastSeq).toBe(1);
    expect(h.pullTexts('s')).toEqual(['a']);
  });

  it('inside one batch, the second copy is a duplicate', () => {
    const h = setup();
    const results = h.publish('t', msg('a', { dedupId: 'x' }), msg('b', { dedupId: 'x' }), msg('c', { dedupId: 'y' }));
    expect(results.map((r) => [r.seq, r.duplicate])).toEqual([
      [1, false],
      [1, true],
      [2, false],
    ]);
  });

  it('after the window the same dedupId publishes again', () => {
    const h = setup({}, { dedupWindowSeconds: 60 });
    h.publish('t', msg('a', { dedupId: 'p1' }));
    h.advance(60_000);
    const [again] = h.publish('t', msg('a', { dedupId: 'p1' }));
    expect(again).toMatchObject({ seq: 2, duplicate: false });
    // And its window starts over.
    h.advance(30_000);
    expect(h.publish('t', msg('a', { dedupId: 'p1' }))[0]).toMatchObject({ seq: 2, duplicate: true });
  });

  it('dedup ids are per topic', () => {
    const h = new Harness();
    h.createTopic('t1');
    h.createTopic('t2');
    h.publish('t1', msg('a', { dedupId: 'd' }));
    expect(h.publish('t2', msg('a', { dedupId: 'd' }))[0]!.duplicate).toBe(false);
  });
});

describe('ordered subscriptions', () => {
  function orderedSetup(over: Parameters<Harness['createSub']>[2] = {}) {
    const h = setup({ ordered: true, ...over });
    h.publish(
      't',
      msg('k1-a', { orderingKey: 'k1' }),
      msg('k2-a', { orderingKey: 'k2' }),
      msg('k1-b', { orderingKey: 'k1' }),
      msg('free', {}),
      msg('k2-b', { orderingKey: 'k2' }),
      msg('k1-c', { orderingKey: 'k1' }),
    );
    return h;
  }

  it('one message in flight per ordering key; other keys and unkeyed messages proceed', () => {
    const h = orderedSetup();
    const first = h.pull('s');
    expect(first.map((d) => text(d.message))).toEqual(['k1-a', 'k2-a', 'free']);
    expect(h.pull('s')).toEqual([]);
    expect(h.info('s')).toMatchObject({ backlog: 6, inFlight: 3 });
    // Acking k1's head lets k1's next one out, k2 stays held.
    h.ack('s', [first[0]!.ackId]);
    const second = h.pull('s');
    expect(second.map((d) => text(d.message))).toEqual(['k1-b']);
    h.ack('s', [second[0]!.ackId, first[1]!.ackId]);
    expect(h.pullTexts('s').sort()).toEqual(['k1-c', 'k2-b']);
  });

  it('per key, messages are delivered in publish order even across lease expiry and nack', () => {
    const h = orderedSetup();
    const [k1a] = h.pull('s', 1, 1000);
    expect(text(k1a!.message)).toBe('k1-a');
    h.advance(1000);
    // The expired head comes back before anything else of its key.
    const again = h.pull('s');
    expect(again.map((d) => [text(d.message), d.attempt])).toEqual([
      ['k1-a', 2],
      ['k2-a', 1],
      ['free', 1],
    ]);
    h.nack('s', [again[0]!.ackId], 5000);
    h.advance(4999);
    expect(h.pull('s')).toEqual([]);
    h.advance(1);
    expect(h.pull('s').map((d) => [text(d.message), d.attempt])).toEqual([['k1-a', 3]]);
  });

  it('full order per key when consumers ack everything', () => {
    const h = orderedSetup();
    const seen: string[] = [];
    for (let i = 0; i < 10; i++) {
      const ds = h.pull('s');
      seen.push(...ds.map((d) => text(d.message)));
      h.ack('s', ds.map((d) => d.ackId));
    }
    expect(seen.filter((x) => x.startsWith('k1'))).toEqual(['k1-a', 'k1-b', 'k1-c']);
    expect(seen.filter((x) => x.startsWith('k2'))).toEqual(['k2-a', 'k2-b']);
    expect(seen).toHaveLength(6);
    expect(h.info('s').backlog).toBe(0);
  });

  it('an unordered subscription ignores ordering keys', () => {
    const h = orderedSetup({ ordered: false });
    expect(h.pull('s')).toHaveLength(6);
  });

  it('a dead-lettered head releases its key: the next message of that key follows', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createTopic('dlq');
    h.createSub('s', 't', { ordered: true, deadLetter: { topic: 'dlq', maxDeliveries: 2 } });
    h.publish('t', msg('a', { orderingKey: 'k' }), msg('b', { orderingKey: 'k' }));
    expect(h.pullTexts('s', 10, 1000)).toEqual(['a']);
    h.advance(1000);
    expect(h.pullTexts('s', 10, 1000)).toEqual(['a']);
    h.advance(1000);
    const next = h.pull('s', 10, 1000);
    expect(next.map((d) => [text(d.message), d.attempt])).toEqual([['b', 1]]);
    expect(h.topic('dlq').messages).toBe(1);
    expect(h.info('s')).toMatchObject({ deadLettered: 1, backlog: 1 });
  });
});

describe('retention (expire)', () => {
  it('messages older than retention go; firstSeq, messages and bytes follow', () => {
    const h = setup({}, { retentionSeconds: 60 });
    h.publish('t', msg('aa'), msg('bb'));
    h.advance(30_000);
    h.publish('t', msg('ccc'));
    expect(h.machine.expireDue(h.nowMs)).toBe(false);
    h.advance(30_000); // the first two are exactly 60 s old: still kept
    expect(h.machine.expireDue(h.nowMs)).toBe(false);
    h.run({ type: 'expire' });
    expect(h.topic('t')).toMatchObject({ firstSeq: 1, lastSeq: 3, messages: 3, bytes: 7 });
    h.advance(1);
    expect(h.machine.expireDue(h.nowMs)).toBe(true);
    expect(h.run({ type: 'expire' })).toEqual({ ok: true });
    expect(h.topic('t')).toMatchObject({ firstSeq: 3, lastSeq: 3, messages: 1, bytes: 3 });
    expect(h.machine.expireDue(h.nowMs)).toBe(false);
    // The bodies are gone from the store too (topic t's id is 1, the index of its create).
    expect(h.store.get(1, 1)).toBeUndefined();
    expect(h.store.get(1, 2)).toBeUndefined();
    expect(h.store.size(1)).toBe(1);
    expect(h.pullTexts('s')).toEqual(['ccc']);
    // Sequence numbers continue after retention.
    expect(h.publish('t', msg('d'))[0]!.seq).toBe(4);
  });

  it('the cursor and pending records follow: expired in-flight messages leave the backlog and their ackIds die', () => {
    const h = setup({}, { retentionSeconds: 60 });
    h.publish('t', msg('a'), msg('b'), msg('c'));
    const [a] = h.pull('s', 1, 600_000);
    h.advance(10_000);
    h.publish('t', msg('d'));
    expect(h.info('s')).toMatchObject({ backlog: 4, inFlight: 1 });
    h.advance(55_000);
    h.run({ type: 'expire' });
    expect(h.topic('t')).toMatchObject({ firstSeq: 4, messages: 1 });
    expect(h.info('s')).toMatchObject({ backlog: 1, inFlight: 0 });
    expect(h.ack('s', [a!.ackId]).invalid).toEqual([a!.ackId]);
    expect(h.pullTexts('s')).toEqual(['d']);
  });

  it('oldestUnackedAgeSeconds follows what is retained', () => {
    const h = setup({}, { retentionSeconds: 60 });
    h.publish('t', msg('a'));
    h.advance(40_000);
    h.publish('t', msg('b'));
    h.advance(25_000);
    expect(h.info('s').oldestUnackedAgeSeconds).toBe(65);
    h.run({ type: 'expire' });
    expect(h.info('s').oldestUnackedAgeSeconds).toBe(25);
  });

  it('a subscription with a filter keeps a correct backlog through retention', () => {
    const h = new Harness();
    h.createTopic('t', { retentionSeconds: 60 });
    h.createSub('s', 't', { filter: { tags: ['x'] } });
    h.publish('t', msg('1', { tags: ['x'] }), msg('2'), msg('3', { tags: ['x'] }));
    h.advance(30_000);
    h.publish('t', msg('4', { tags: ['x'] }));
    expect(h.info('s').backlog).toBe(3);
    h.advance(31_000);
    h.run({ type: 'expire' });
    expect(h.info('s').backlog).toBe(1);
    expect(h.pullTexts('s')).toEqual(['4']);
  });

  it('a pulled and nacked ordered head that expires releases its key', () => {
    const h = setup({ ordered: true }, { retentionSeconds: 60 });
    h.publish('t', msg('a', { orderingKey: 'k' }));
    h.advance(30_000);
    h.publish('t', msg('b', { orderingKey: 'k' }));
    const [a] = h.pull('s');
    h.nack('s', [a!.ackId], 600_000);
    h.advance(30_001);
    h.run({ type: 'expire' });
    expect(h.pullTexts('s')).toEqual(['b']);
  });
});

describe('bounded steps', () => {
  it('one expire step removes at most retentionDeleteBatchMax per topic; expireDue stays true until done', () => {
    const h = setup({}, { retentionSeconds: 60 });
    const n = limits.retentionDeleteBatchMax + 2;
    for (let i = 0; i < n; i += 1000) h.publish('t', ...Array.from({ length: Math.min(1000, n - i) }, () => msg('x')));
    h.advance(61_000);
    h.run({ type: 'expire' });
    expect(h.topic('t')).toMatchObject({ firstSeq: limits.retentionDeleteBatchMax + 1, messages: 2 });
    expect(h.info('s').backlog).toBe(2);
    expect(h.machine.expireDue(h.nowMs)).toBe(true);
    h.run({ type: 'expire' });
    expect(h.topic('t')).toMatchObject({ firstSeq: n + 1, messages: 0, bytes: 0 });
    expect(h.info('s').backlog).toBe(0);
    expect(h.machine.expireDue(h.nowMs)).toBe(false);
  });

  it('a matching message behind more than pullScanRecordsMax filtered-out ones is still reached by later pulls', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't', { filter: { tags: ['x'] } });
    const n = limits.pullScanRecordsMax + 5;
    for (let i = 0; i < n; i += 1000) h.publish('t', ...Array.from({ length: Math.min(1000, n - i) }, () => msg('skip')));
    h.publish('t', msg('wanted', { tags: ['x'] }));
    expect(h.info('s').backlog).toBe(1);
    const got: string[] = [];
    for (let i = 0; i < 3 && got.length === 0; i++) {
      expect(h.machine.hasAvailable('s', h.nowMs)).toBe(true);
      got.push(...h.pullTexts('s'));
    }
    expect(got).toEqual(['wanted']);
  });
});

describe('seek', () => {
  function seekSetup() {
    const h = setup();
    for (let i = 1; i <= 5; i++) {
      h.publish('t', msg(`m${i}`));
      h.advance(1000);
    }
    return h; // m_i published at T0 + (i-1) s
  }

  it('by seq, backwards: every retained message from there on is delivered again', () => {
    const h = seekSetup();
    const ds = h.pull('s');
    h.ack('s', ds.map((d) => d.ackId));
    expect(h.info('s').backlog).toBe(0);
    expect(h.run({ type: 'seek', subscription: 's', target: { seq: 3 } })).toEqual({ ok: true });
    expect(h.info('s').backlog).toBe(3);
    expect(h.pullTexts('s')).toEqual(['m3', 'm4', 'm5']);
  });

  it('by seq, forwards: earlier messages, in flight or not, are skipped', () => {
    const h = seekSetup();
    const [m1] = h.pull('s', 1);
    h.run({ type: 'seek', subscription: 's', target: { seq: 4 } });
    expect(h.info('s')).toMatchObject({ backlog: 2, inFlight: 0 });
    expect(h.ack('s', [m1!.ackId]).invalid).toEqual([m1!.ackId]);
    h.advance(60_000);
    expect(h.pullTexts('s')).toEqual(['m4', 'm5']);
  });

  it('by time: from the first message published at or after that time', () => {
    const h = seekSetup();
    h.ack('s', h.pull('s').map((d) => d.ackId));
    h.run({ type: 'seek', subscription: 's', target: { timeMs: T0 + 2000 } });
    expect(h.pullTexts('s')).toEqual(['m3', 'm4', 'm5']);
    h.run({ type: 'seek', subscription: 's', target: { timeMs: T0 + 1500 } });
    expect(h.pullTexts('s')).toEqual(['m3', 'm4', 'm5']);
    h.run({ type: 'seek', subscription: 's', target: { timeMs: T0 - 1 } });
    expect(h.pullTexts('s')).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    h.run({ type: 'seek', subscription: 's', target: { timeMs: T0 + 99_000 } });
    expect(h.info('s').backlog).toBe(0);
    expect(h.pull('s')).toEqual([]);
    // A future time skips what is published before it, and takes what comes after.
    h.publish('t', msg('m6'));
    expect(h.pull('s')).toEqual([]);
    h.advance(100_000);
    h.publish('t', msg('m7'));
    expect(h.pullTexts('s')).toEqual(['m7']);
  });

  it('before what is retained: from the first retained message', () => {
    const h = seekSetup();
    h.run({ type: 'update-topic', name: 't', patch: { retentionSeconds: 60 } });
    h.advance(57_500); // m1..m3 are now over 60 s old
    h.run({ type: 'expire' });
    expect(h.topic('t').firstSeq).toBe(4);
    h.run({ type: 'seek', subscription: 's', target: { seq: 1 } });
    expect(h.pullTexts('s')).toEqual(['m4', 'm5']);
  });

  it('a rewound message starts its delivery attempts over with a fresh ackId', () => {
    const h = seekSetup();
    const [m1] = h.pull('s', 1);
    h.ack('s', [m1!.ackId]);
    h.run({ type: 'seek', subscription: 's', target: { seq: 1 } });
    const [again] = h.pull('s', 1);
    expect(text(again!.message)).toBe('m1');
    expect(again!.ackId).not.toBe(m1!.ackId);
    expect(h.ack('s', [again!.ackId])).toEqual({ count: 1, invalid: [] });
  });
});

describe('dead-lettering and redrive', () => {
  function dlqSetup(maxDeliveries = 3) {
    const h = new Harness();
    h.createTopic('t');
    h.createTopic('dlq');
    h.createSub('s', 't', { deadLetter: { topic: 'dlq', maxDeliveries }, retry: fixedRetry(1000) });
    h.createSub('dlq-reader', 'dlq');
    return h;
  }

  it('after maxDeliveries the message goes to the DLQ topic with the herald attributes, and is gone here', () => {
    const h = dlqSetup(3);
    h.publish('t', msg('poison', { attributes: { own: 'attr' }, tags: ['x'], routingKey: 'a.b' }), msg('fine'));
    for (let attempt = 1; attempt <= 3; attempt++) {
      const ds = h.pull('s', 10, 1000);
      const poison = ds.find((d) => text(d.message) === 'poison')!;
      expect(poison.attempt).toBe(attempt);
      const fine = ds.find((d) => text(d.message) === 'fine');
      if (fine) h.ack('s', [fine.ackId]);
      h.advance(1000);
    }
    expect(h.pull('s')).toEqual([]);
    expect(h.info('s')).toMatchObject({ backlog: 0, inFlight: 0, deadLettered: 1, delivered: 4 });
    expect(h.topic('dlq').messages).toBe(1);
    const [dead] = h.pull('dlq-reader');
    expect(text(dead!.message)).toBe('poison');
    expect(dead!.message.attributes).toEqual({
      own: 'attr',
      'herald-source-subscription': 's',
      'herald-delivery-attempts': '3',
      'herald-last-error': 'ack-deadline-exceeded',
    });
    expect(dead!.message).toMatchObject({ tags: ['x'], routingKey: 'a.b' });
  });

  it('the last error is the nack when the last delivery was nacked', () => {
    const h = dlqSetup(1);
    h.publish('t', msg('p'));
    const [d] = h.pull('s');
    h.nack('s', [d!.ackId], 0);
    expect(h.pull('s')).toEqual([]);
    const [dead] = h.pull('dlq-reader');
    expect(dead!.message.attributes).toMatchObject({ 'herald-delivery-attempts': '1', 'herald-last-error': 'nacked' });
  });

  it('redrive brings dead-lettered messages back with their attempt count reset', () => {
    const h = dlqSetup(1);
    h.publish('t', msg('p1'), msg('p2'));
    h.pull('s', 10, 1000);
    h.advance(1000);
    expect(h.pull('s')).toEqual([]);
    expect(h.info('s')).toMatchObject({ deadLettered: 2, backlog: 0 });
    expect(h.run({ type: 'redrive', subscription: 's', max: 1 })).toEqual({ ok: true, redriven: 1 });
    expect(h.info('s')).toMatchObject({ deadLettered: 1, backlog: 1 });
    expect(h.run({ type: 'redrive', subscription: 's', max: 1000 })).toEqual({ ok: true, redriven: 1 });
    expect(h.info('s')).toMatchObject({ deadLettered: 0, backlog: 2 });
    const again = h.pull('s');
    expect(again.map((d) => [text(d.message), d.attempt])).toEqual([
      ['p1', 1],
      ['p2', 1],
    ]);
    expect(h.run({ type: 'redrive', subscription: 's', max: 1000 })).toEqual({ ok: true, redriven: 0 });
    expect(h.ack('s', again.map((d) => d.ackId)).count).toBe(2);
    expect(h.info('s').backlog).toBe(0);
  });

  it('creating a subscription whose dead-letter topic is missing is TopicNotFound', () => {
    const h = new Harness();
    h.createTopic('t');
    expect(h.run({ type: 'create-subscription', name: 's', config: subConfig('t', { deadLetter: { topic: 'gone', maxDeliveries: 3 } }) })).toMatchObject({
      ok: false,
      code: 'TopicNotFound',
    });
  });

  it('with the dead-letter topic deleted, nothing is dropped: the message is delivered again', () => {
    const h = dlqSetup(1);
    h.publish('t', msg('p'));
    h.pull('s', 10, 1000);
    h.run({ type: 'delete-topic', name: 'dlq' });
    h.advance(1000);
    expect(h.pull('s').map((d) => [text(d.message), d.attempt])).toEqual([['p', 2]]);
  });
});

describe('topic and subscription lifecycle', () => {
  it('create is idempotent with the same config and AlreadyExists with a different one', () => {
    const h = new Harness();
    h.createTopic('t');
    expect(h.run({ type: 'create-topic', name: 't', config: topicConfig() })).toEqual({ ok: true, created: false });
    expect(h.run({ type: 'create-topic', name: 't', config: topicConfig({ retentionSeconds: 60 }) })).toMatchObject({
      ok: false,
      code: 'AlreadyExists',
    });
    h.createSub('s', 't');
    expect(h.run({ type: 'create-subscription', name: 's', config: subConfig('t') })).toEqual({ ok: true, created: false });
    expect(h.run({ type: 'create-subscription', name: 's', config: subConfig('t', { ackDeadlineSeconds: 31 }) })).toMatchObject({
      ok: false,
      code: 'AlreadyExists',
    });
    expect(h.run({ type: 'create-subscription', name: 'x', config: subConfig('nope') })).toMatchObject({ ok: false, code: 'TopicNotFound' });
  });

  it('a repeated create does not reset the subscription', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't');
    h.publish('t', msg('a'));
    const [a] = h.pull('s');
    h.run({ type: 'create-subscription', name: 's', config: subConfig('t') });
    expect(h.ack('s', [a!.ackId]).count).toBe(1);
  });

  it('deleting a topic removes its subscriptions (and only those)', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createTopic('u');
    h.createSub('s1', 't');
    h.createSub('s2', 't');
    h.createSub('other', 'u');
    h.publish('t', msg('a'));
    expect(h.run({ type: 'delete-topic', name: 't' })).toEqual({ ok: true });
    expect(h.machine.topicInfo('t')).toBeUndefined();
    expect(h.machine.subscriptionInfo('s1', h.nowMs)).toBeUndefined();
    expect(h.machine.subscriptionInfo('s2', h.nowMs)).toBeUndefined();
    expect(h.machine.subscriptionNames()).toEqual(['other']);
    expect(h.run({ type: 'pull', subscription: 's1', max: 1, ackDeadlineMs: 1000 })).toMatchObject({ ok: false, code: 'SubscriptionNotFound' });
    expect(h.run({ type: 'delete-topic', name: 't' })).toMatchObject({ ok: false, code: 'TopicNotFound' });
    // A topic created again under the same name starts empty, with no subscriptions.
    h.createTopic('t');
    expect(h.topic('t')).toMatchObject({ messages: 0, lastSeq: 0, subscriptions: 0 });
    h.createSub('s1', 't');
    expect(h.info('s1').backlog).toBe(0);
  });

  it('deleting a subscription leaves the topic and others alone', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s1', 't');
    h.createSub('s2', 't');
    h.publish('t', msg('a'));
    expect(h.run({ type: 'delete-subscription', name: 's1' })).toEqual({ ok: true });
    expect(h.machine.subscriptionNames('t')).toEqual(['s2']);
    expect(h.topic('t')).toMatchObject({ messages: 1, subscriptions: 1 });
    expect(h.pullTexts('s2')).toEqual(['a']);
  });

  it('updates: topic config changes; a subscription patch is checked and applied', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't');
    expect(h.run({ type: 'update-topic', name: 't', patch: { maxMessageBytes: 2 } })).toEqual({ ok: true });
    expect(h.machine.topicConfig('t')).toEqual(topicConfig({ maxMessageBytes: 2 }));
    expect(h.run({ type: 'publish', topic: 't', messages: [msg('abc')] })).toMatchObject({ ok: false, code: 'PayloadTooLarge' });
    expect(h.run({ type: 'update-topic', name: 'nope', patch: {} })).toMatchObject({ ok: false, code: 'TopicNotFound' });
    expect(h.run({ type: 'update-subscription', name: 's', patch: { deadLetter: { topic: 'gone', maxDeliveries: 2 } } })).toMatchObject({
      ok: false,
      code: 'TopicNotFound',
    });
    expect(h.machine.subscriptionConfig('s')!.deadLetter).toBeNull();
    expect(h.run({ type: 'update-subscription', name: 's', patch: { ackDeadlineSeconds: 99 } })).toEqual({ ok: true });
    expect(h.machine.subscriptionConfig('s')).toEqual(subConfig('t', { ackDeadlineSeconds: 99 }));
  });

  it('create-queue makes a topic and a subscription of the same name, idempotently', () => {
    const h = new Harness();
    const create = { type: 'create-queue' as const, name: 'q', topic: topicConfig(), subscription: subConfig('q') };
    expect(h.run(create)).toEqual({ ok: true, created: true });
    expect(h.run(create)).toEqual({ ok: true, created: false });
    expect(h.run({ ...create, subscription: subConfig('q', { ackDeadlineSeconds: 5 }) })).toMatchObject({ ok: false, code: 'AlreadyExists' });
    h.publish('q', msg('a'));
    expect(h.pullTexts('q')).toEqual(['a']);
  });
});

describe('startAt', () => {
  function startSetup() {
    const h = new Harness();
    h.createTopic('t');
    for (let i = 1; i <= 3; i++) {
      h.publish('t', msg(`m${i}`));
      h.advance(1000);
    }
    return h; // m_i at T0 + (i-1) s
  }

  it('latest: only messages published after the subscription exists', () => {
    const h = startSetup();
    h.createSub('s', 't', { startAt: 'latest' });
    expect(h.info('s').backlog).toBe(0);
    expect(h.pull('s')).toEqual([]);
    h.publish('t', msg('m4'));
    expect(h.pullTexts('s')).toEqual(['m4']);
  });

  it('earliest: everything retained', () => {
    const h = startSetup();
    h.createSub('s', 't', { startAt: 'earliest' });
    expect(h.info('s').backlog).toBe(3);
    expect(h.pullTexts('s')).toEqual(['m1', 'm2', 'm3']);
  });

  it('seq: from that message on, inclusive', () => {
    const h = startSetup();
    h.createSub('s', 't', { startAt: { seq: 2 } });
    expect(h.info('s').backlog).toBe(2);
    expect(h.pullTexts('s')).toEqual(['m2', 'm3']);
  });

  it('time: from the first message published at or after it', () => {
    const h = startSetup();
    h.createSub('s', 't', { startAt: { time: new Date(T0 + 1000).toISOString(), timeMs: T0 + 1000 } });
    expect(h.pullTexts('s')).toEqual(['m2', 'm3']);
    h.createSub('s2', 't', { startAt: { time: new Date(T0 + 500).toISOString(), timeMs: T0 + 500 } });
    expect(h.pullTexts('s2')).toEqual(['m2', 'm3']);
  });
});

describe('start and seek targets beyond the end of the topic', () => {
  // API.md: startAt {seq: n} / {time} is "from that message on, inclusive", and a seek delivers
  // "every retained message from there on (seq n inclusive) ...; those before it are skipped". A target
  // past what is published so far must still skip the messages published later but before it.
  function topicWithOne() {
    const h = new Harness();
    h.createTopic('t');
    h.publish('t', msg('1')); // seq 1 at T0
    return h;
  }
  const publishUpTo5 = (h: Harness) => {
    for (let i = 2; i <= 5; i++) {
      h.advance(1000);
      h.publish('t', msg(String(i))); // seq i at T0 + (i-1) s
    }
  };

  it('startAt {seq: 4} on a topic at seq 1: delivers 4 and 5, not 2 and 3', () => {
    const h = topicWithOne();
    h.createSub('s', 't', { startAt: { seq: 4 } });
    publishUpTo5(h);
    expect(h.pullTexts('s')).toEqual(['4', '5']);
  });

  it('seek {seq: 4} on a topic at seq 1: delivers 4 and 5, not 2 and 3', () => {
    const h = topicWithOne();
    h.createSub('s', 't');
    h.ack('s', h.pull('s').map((d) => d.ackId));
    h.run({ type: 'seek', subscription: 's', target: { seq: 4 } });
    publishUpTo5(h);
    expect(h.pullTexts('s')).toEqual(['4', '5']);
  });

  it('startAt a future time: messages published before that time are not delivered', () => {
    const h = topicWithOne();
    h.createSub('s', 't', { startAt: { time: new Date(T0 + 3000).toISOString(), timeMs: T0 + 3000 } });
    publishUpTo5(h);
    expect(h.pullTexts('s')).toEqual(['4', '5']);
  });

  it('seek to a future time: messages published before that time are skipped', () => {
    const h = topicWithOne();
    h.createSub('s', 't');
    h.ack('s', h.pull('s').map((d) => d.ackId));
    h.run({ type: 'seek', subscription: 's', target: { timeMs: T0 + 3000 } });
    publishUpTo5(h);
    expect(h.pullTexts('s')).toEqual(['4', '5']);
  });
});

describe('stats', () => {
  it('backlog, inFlight, oldestUnackedAgeSeconds, delivered and acked follow the life of messages', () => {
    const h = setup();
    expect(h.info('s')).toMatchObject({ backlog: 0, inFlight: 0, oldestUnackedAgeSeconds: 0, deadLettered: 0, delivered: 0, acked: 0 });
    h.publish('t', msg('a'), msg('b'), msg('c'));
    h.advance(5_000);
    expect(h.info('s')).toMatchObject({ backlog: 3, inFlight: 0, oldestUnackedAgeSeconds: 5 });
    const ds = h.pull('s', 2, 10_000);
    expect(h.info('s')).toMatchObject({ backlog: 3, inFlight: 2, delivered: 2, acked: 0 });
    h.ack('s', [ds[0]!.ackId]);
    h.advance(2_500);
    // The oldest unacked is now b, published 7.5 s ago.
    expect(h.info('s')).toMatchObject({ backlog: 2, inFlight: 1, oldestUnackedAgeSeconds: 7, acked: 1 });
    h.advance(10_000); // b's lease is over
    expect(h.info('s').inFlight).toBe(0);
    const again = h.pull('s');
    expect(again.map((d) => [text(d.message), d.attempt])).toEqual([
      ['b', 2],
      ['c', 1],
    ]);
    expect(h.info('s')).toMatchObject({ backlog: 2, inFlight: 2, delivered: 4 });
    h.ack('s', again.map((d) => d.ackId));
    expect(h.info('s')).toMatchObject({ backlog: 0, inFlight: 0, oldestUnackedAgeSeconds: 0, delivered: 4, acked: 3 });
  });

  it('oldestUnackedAgeSeconds counts only messages the subscription has to deliver (filtered)', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createSub('s', 't', { filter: { tags: ['x'] } });
    h.publish('t', msg('not for s'));
    h.advance(100_000);
    h.publish('t', msg('for s', { tags: ['x'] }));
    h.advance(10_000);
    expect(h.info('s').backlog).toBe(1);
    // The only unacked message of s was published 10 s ago; the unmatched one 110 s ago is not its.
    expect(h.info('s').oldestUnackedAgeSeconds).toBe(10);
  });

  it('topic info counts subscriptions', () => {
    const h = setup();
    h.createSub('s2', 't');
    expect(h.topic('t').subscriptions).toBe(2);
    expect(h.machine.topicNames()).toEqual(['t']);
  });
});

describe('push outcomes, secrets and pausing', () => {
  const push = { url: 'https://example.com/h', headers: {}, format: 'json' as const, timeoutMs: 1000, maxInFlight: 8, rateLimitPerSecond: 0 };
  const failed = (h: Harness, ackId: string, error = '500', retryAfterMs: number | null = null) =>
    h.run({ type: 'push-failed', subscription: 's', failures: [{ ackId, error, retryAfterMs }] });
  const exp = { policy: 'exponential' as const, minBackoffMs: 1000, maxBackoffMs: 5000, multiplier: 2, jitter: 0, maxAttempts: null, maxRetrySeconds: 3600 };

  it('a failed attempt waits out the policy backoff, then Retry-After capped at the largest backoff', () => {
    const h = setup({ push, retry: exp });
    h.publish('t', msg('a'));
    const [d1] = h.pull('s');
    expect(failed(h, d1!.ackId)).toEqual({ ok: true, count: 1, invalid: [] });
    expect(h.machine.nextAvailableAtMs('s')).toBe(h.nowMs + 1000);
    expect(h.pull('s')).toHaveLength(0); // waiting out the backoff: pull gets nothing either
    const [d2] = h.advance(1000).pull('s');
    expect(d2!.attempt).toBe(2);
    failed(h, d2!.ackId, '429', 60_000);
    expect(h.machine.nextAvailableAtMs('s')).toBe(h.nowMs + 5000);
    // A stale ackId is invalid, not applied twice.
    expect(failed(h, d2!.ackId)).toEqual({ ok: true, count: 0, invalid: [d2!.ackId] });
  });

  it('maxAttempts spent: dead-lettered with the last error; without a dead-letter topic, kept at the largest backoff', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createTopic('dlq');
    h.createSub('s', 't', { push, retry: { policy: 'fixed', intervalMs: 100, maxAttempts: 2 }, deadLetter: { topic: 'dlq', maxDeliveries: 100 }, startAt: 'earliest' });
    h.createSub('dlq-reader', 'dlq', { startAt: 'earliest' });
    h.createSub('keep', 't', { push, retry: { policy: 'fixed', intervalMs: 100, maxAttempts: 2 }, startAt: 'earliest' });
    h.publish('t', msg('a'));
    failed(h, h.pull('s')[0]!.ackId);
    failed(h, h.advance(100).pull('s')[0]!.ackId, '503');
    expect(h.info('s')).toMatchObject({ deadLettered: 1, backlog: 0 });
    const [dl] = h.pull('dlq-reader');
    expect(dl!.message.attributes).toMatchObject({ 'herald-last-error': '503', 'herald-delivery-attempts': '2', 'herald-source-subscription': 's' });
    const keepFail = (ackId: string) => h.run({ type: 'push-failed', subscription: 'keep', failures: [{ ackId, error: '500', retryAfterMs: null }] });
    keepFail(h.pull('keep')[0]!.ackId);
    keepFail(h.advance(100).pull('keep')[0]!.ackId);
    expect(h.info('keep')).toMatchObject({ deadLettered: 0, backlog: 1 });
    expect(h.machine.nextAvailableAtMs('keep')).toBe(h.nowMs + 100);
  });

  it('maxRetrySeconds counts from the first delivery', () => {
    const h = new Harness();
    h.createTopic('t');
    h.createTopic('dlq');
    h.createSub('s', 't', { push, retry: { ...exp, maxRetrySeconds: 10 }, deadLetter: { topic: 'dlq', maxDeliveries: 100 }, startAt: 'earliest' });
    h.publish('t', msg('a'));
    failed(h, h.pull('s')[0]!.ackId);
    failed(h, h.advance(9_000).pull('s')[0]!.ackId);
    expect(h.info('s').deadLettered).toBe(0);
    failed(h, h.advance(5_000).pull('s')[0]!.ackId);
    expect(h.info('s').deadLettered).toBe(1);
  });

  it('secrets: set on create with push, rotated with a 24 h overlap; pause and resume need push', () => {
    const h = new Harness();
    h.createTopic('t');
    expect(h.run({ type: 'create-subscription', name: 's', config: subConfig('t', { push }), secret: 'whsec_a' })).toEqual({ ok: true, created: true });
    expect(h.machine.pushSecrets('s', h.nowMs)).toEqual(['whsec_a']);
    h.run({ type: 'rotate-secret', subscription: 's', secret: 'whsec_b' });
    expect(h.machine.pushSecrets('s', h.nowMs)).toEqual(['whsec_b', 'whsec_a']);
    expect(h.machine.pushSecrets('s', h.nowMs + limits.pushSecretOverlapMs)).toEqual(['whsec_b']);
    expect(h.machine.pushPaused('s')).toBe(false);
    h.run({ type: 'pause-push', subscription: 's' });
    expect(h.info('s').pushPaused).toBe(true);
    expect(h.apply({ type: 'resume-push', subscription: 's' }).effects).toContainEqual({ type: 'available', subscription: 's' });
    expect(h.machine.pushPaused('s')).toBe(false);
    // A changed push target clears a pause.
    h.run({ type: 'pause-push', subscription: 's' });
    h.run({ type: 'update-subscription', name: 's', patch: { push: { ...push, url: 'https://example.com/new' } } });
    expect(h.machine.pushPaused('s')).toBe(false);
    h.createSub('p', 't');
    for (const c of [
      { type: 'rotate-secret', subscription: 'p', secret: 'whsec_x' },
      { type: 'pause-push', subscription: 'p' },
      { type: 'resume-push', subscription: 'p' },
    ] as Command[]) {
      expect(h.run(c)).toMatchObject({ ok: false, code: 'InvalidRequest' });
    }
    expect(h.run({ type: 'rotate-secret', subscription: 'nope', secret: 'x' })).toMatchObject({ ok: false, code: 'SubscriptionNotFound' });
    // Push added later by PATCH gets the secret the PATCH carries.
    h.run({ type: 'update-subscription', name: 'p', patch: { push }, secret: 'whsec_p' });
    expect(h.machine.pushSecrets('p', h.nowMs)).toEqual(['whsec_p']);
  });

  it('acking the head of an ordering key wakes the subscription for the next one', () => {
    const h = setup({ ordered: true });
    h.publish('t', msg('a', { orderingKey: 'k' }), msg('b', { orderingKey: 'k' }));
    const [d] = h.pull('s');
    expect(h.pull('s')).toHaveLength(0);
    const { effects } = h.apply({ type: 'ack', subscription: 's', ackIds: [d!.ackId] });
    expect(effects).toContainEqual({ type: 'available', subscription: 's' });
    expect(h.pullTexts('s')).toEqual(['b']);
  });
});
