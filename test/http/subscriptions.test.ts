// Goal: pull delivery as API.md promises it, on a real node: long polling, the visibility lock,
// ack/nack/modify-ack-deadline, filters, delays, ordering, seek, dead-lettering and redrive, stats.
// Method: one real node process; each test has its own topic and subscription; waits poll state
// with a deadline instead of sleeping.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { api, eventually, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald();
});
afterAll(async () => {
  await h.stop();
  removeDataDir(h.dataDir);
});

let n = 0;
async function setup(sub: Record<string, unknown> = {}, topic: Record<string, unknown> = {}): Promise<{ t: string; s: string }> {
  n++;
  const t = `topic-${n}`;
  const s = `sub-${n}`;
  expect((await api(h.url, 'PUT', `/v1/topics/${t}`, topic)).status).toBe(201);
  const r = await api(h.url, 'PUT', `/v1/subscriptions/${s}`, { topic: t, ...sub });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return { t, s };
}

const publish = (t: string, messages: unknown[]) => api(h.url, 'POST', `/v1/topics/${t}/messages`, { messages });
const pull = async (s: string, body: Record<string, unknown> = {}) => {
  const r = await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, { max: 100, ...body });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.messages as any[];
};
const ack = (s: string, ackIds: string[]) => api(h.url, 'POST', `/v1/subscriptions/${s}/ack`, { ackIds });
const stats = async (s: string) => (await api(h.url, 'GET', `/v1/subscriptions/${s}`)).body;

describe('pull', () => {
  test('messages come with every field, in order, and acks remove them', async () => {
    const { t, s } = await setup();
    await publish(t, [
      { data: 'a', attributes: { k: 'v' }, tags: ['x'], routingKey: 'r.1', orderingKey: 'o' },
      { data: 'Yg==', encoding: 'base64' },
    ]);
    const msgs = await pull(s);
    expect(msgs).toHaveLength(2);
    expect(msgs[0]).toMatchObject({ seq: 1, data: 'a', encoding: 'utf8', attributes: { k: 'v' }, tags: ['x'], routingKey: 'r.1', orderingKey: 'o', deliveryAttempt: 1 });
    expect(typeof msgs[0].id).toBe('string');
    expect(typeof msgs[0].ackId).toBe('string');
    expect(Number.isNaN(Date.parse(msgs[0].publishTime))).toBe(false);
    expect(msgs[1]).toMatchObject({ seq: 2, data: 'Yg==', encoding: 'base64' });
    expect(await stats(s)).toMatchObject({ backlog: 2, inFlight: 2, delivered: 2, acked: 0 });
    const r = await ack(s, msgs.map((m) => m.ackId));
    expect(r.body).toEqual({ acked: 2, invalid: [] });
    expect(await stats(s)).toMatchObject({ backlog: 0, inFlight: 0, acked: 2 });
    // Acking twice: the ackIds are no longer valid.
    expect((await ack(s, [msgs[0].ackId])).body).toEqual({ acked: 0, invalid: [msgs[0].ackId] });
  });

  test('startAt latest (the default) skips what was published before; earliest takes it', async () => {
    n++;
    const t = `topic-${n}`;
    await api(h.url, 'PUT', `/v1/topics/${t}`);
    await publish(t, [{ data: 'old' }]);
    await api(h.url, 'PUT', `/v1/subscriptions/latest-${n}`, { topic: t });
    await api(h.url, 'PUT', `/v1/subscriptions/earliest-${n}`, { topic: t, startAt: 'earliest' });
    await api(h.url, 'PUT', `/v1/subscriptions/seq-${n}`, { topic: t, startAt: { seq: 2 } });
    await publish(t, [{ data: 'new' }]);
    expect((await pull(`latest-${n}`)).map((m) => m.data)).toEqual(['new']);
    expect((await pull(`earliest-${n}`)).map((m) => m.data)).toEqual(['old', 'new']);
    expect((await pull(`seq-${n}`)).map((m) => m.data)).toEqual(['new']);
  });

  test('a long poll answers as soon as a message commits', async () => {
    const { t, s } = await setup();
    const started = Date.now();
    const waiting = pull(s, { waitSeconds: 20 });
    await new Promise((r) => setTimeout(r, 200)); // let the poll start waiting first
    await publish(t, [{ data: 'wake' }]);
    const msgs = await waiting;
    expect(msgs.map((m) => m.data)).toEqual(['wake']);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test('a long poll with nothing to deliver returns empty after its wait', async () => {
    const { s } = await setup();
    const started = Date.now();
    expect(await pull(s, { waitSeconds: 1 })).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  test('pull max bounds the batch', async () => {
    const { t, s } = await setup();
    await publish(t, Array.from({ length: 25 }, (_, i) => ({ data: `m${i}` })));
    expect(await pull(s, { max: 10 })).toHaveLength(10);
    expect(await pull(s, { max: 10 })).toHaveLength(10);
    expect(await pull(s, { max: 10 })).toHaveLength(5);
  });

  test('a pull can carry acks: they are applied first, and the answer says what they did', async () => {
    const { t, s } = await setup({ startAt: 'earliest' });
    await publish(t, Array.from({ length: 5 }, (_, i) => ({ data: `m${i}` })));
    const first = await pull(s, { max: 3 });
    expect(first.map((m) => m.data)).toEqual(['m0', 'm1', 'm2']);
    expect((await stats(s)).inFlight).toBe(3);

    const r = await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, { max: 3, ackIds: [...first.map((m) => m.ackId), 'not-an-ack-id'] });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.acked).toBe(3);
    expect(r.body.invalid).toEqual(['not-an-ack-id']);
    expect(r.body.messages.map((m: any) => m.data)).toEqual(['m3', 'm4']);
    expect(await stats(s)).toMatchObject({ inFlight: 2, backlog: 2, acked: 3 });

    // Nothing left to hand out: the acks still go, and the answer is empty.
    const last = await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, { ackIds: r.body.messages.map((m: any) => m.ackId) });
    expect(last.body).toEqual({ messages: [], acked: 2, invalid: [] });
    expect(await stats(s)).toMatchObject({ inFlight: 0, backlog: 0, acked: 5 });
    // Without ackIds the answer has no ack fields.
    expect((await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, {})).body).toEqual({ messages: [] });
  });

  test('acks carried by a pull are checked like the ack route\'s', async () => {
    const { s } = await setup();
    for (const ackIds of [[], Array.from({ length: 1001 }, () => 'x'), [''], 'x', [1]]) {
      const r = await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, { ackIds });
      expect(r.status, JSON.stringify(ackIds).slice(0, 40)).toBe(400);
      expect(r.body.error.code).toBe('InvalidRequest');
    }
  });
});

describe('the visibility lock', () => {
  test('a leased message is invisible until its deadline, then comes back with the next attempt', async () => {
    const { t, s } = await setup();
    await publish(t, [{ data: 'x' }]);
    const [first] = await pull(s, { ackDeadlineSeconds: 1 });
    expect(first.deliveryAttempt).toBe(1);
    expect(await pull(s)).toEqual([]);
    const again = await eventually(async () => (await pull(s, { waitSeconds: 2 }))[0], 10_000);
    expect(again.seq).toBe(first.seq);
    expect(again.deliveryAttempt).toBe(2);
    expect(again.ackId).not.toBe(first.ackId);
    // The first delivery's ackId is no longer valid; the second is.
    expect((await ack(s, [first.ackId, again.ackId])).body).toEqual({ acked: 1, invalid: [first.ackId] });
  });

  test('modify-ack-deadline extends a lease, and 0 releases it at once', async () => {
    const { t, s } = await setup();
    await publish(t, [{ data: 'x' }]);
    const [m] = await pull(s, { ackDeadlineSeconds: 1 });
    const r = await api(h.url, 'POST', `/v1/subscriptions/${s}/modify-ack-deadline`, { ackIds: [m.ackId], seconds: 60 });
    expect(r.body).toEqual({ modified: 1, invalid: [] });
    // Past the original 1 s deadline it is still leased: the ack succeeds.
    await new Promise((res) => setTimeout(res, 1300));
    expect(await pull(s)).toEqual([]);
    const r0 = await api(h.url, 'POST', `/v1/subscriptions/${s}/modify-ack-deadline`, { ackIds: [m.ackId], seconds: 0 });
    expect(r0.body.modified).toBe(1);
    const [back] = await pull(s);
    expect(back).toMatchObject({ seq: m.seq, deliveryAttempt: 2 });
  });

  test('nack redelivers after its delay; an expired ackId is invalid', async () => {
    const { t, s } = await setup();
    await publish(t, [{ data: 'x' }]);
    const [m] = await pull(s);
    const r = await api(h.url, 'POST', `/v1/subscriptions/${s}/nack`, { ackIds: [m.ackId, 'garbage'], delaySeconds: 1 });
    expect(r.body).toEqual({ nacked: 1, invalid: ['garbage'] });
    expect(await pull(s)).toEqual([]);
    const back = await eventually(async () => (await pull(s, { waitSeconds: 2 }))[0], 10_000);
    expect(back).toMatchObject({ seq: m.seq, deliveryAttempt: 2 });
    expect((await ack(s, [m.ackId])).body.invalid).toEqual([m.ackId]);
  });

  test('nack without a delay follows the retry policy', async () => {
    const { t, s } = await setup({ retry: { policy: 'fixed', intervalMs: 1500 } });
    await publish(t, [{ data: 'x' }]);
    const [m] = await pull(s);
    const nackedAt = Date.now();
    await api(h.url, 'POST', `/v1/subscriptions/${s}/nack`, { ackIds: [m.ackId] });
    const back = await eventually(async () => (await pull(s, { waitSeconds: 5 }))[0], 10_000);
    expect(back.seq).toBe(m.seq);
    expect(Date.now() - nackedAt).toBeGreaterThanOrEqual(1400);
  });
});

describe('filters', () => {
  test('tags: any listed tag matches; backlog counts only matching messages', async () => {
    const { t, s } = await setup({ filter: { tags: ['paid', 'refunded'] } });
    await publish(t, [{ data: '1', tags: ['paid'] }, { data: '2', tags: ['new'] }, { data: '3' }, { data: '4', tags: ['x', 'refunded'] }]);
    expect((await stats(s)).backlog).toBe(2);
    expect((await pull(s)).map((m) => m.data)).toEqual(['1', '4']);
  });

  test('binding keys: * is one word, # is zero or more; no routing key matches nothing', async () => {
    const { t, s } = await setup({ filter: { bindingKeys: ['order.*.eu', 'audit.#'] } });
    await publish(t, [
      { data: '1', routingKey: 'order.paid.eu' },
      { data: '2', routingKey: 'order.paid.us' },
      { data: '3', routingKey: 'order.eu' },
      { data: '4', routingKey: 'audit' },
      { data: '5', routingKey: 'audit.a.b.c' },
      { data: '6' },
    ]);
    expect((await pull(s)).map((m) => m.data)).toEqual(['1', '4', '5']);
  });

  test('tags and binding keys together: both must match', async () => {
    const { t, s } = await setup({ filter: { tags: ['a'], bindingKeys: ['x.#'] } });
    await publish(t, [
      { data: '1', tags: ['a'], routingKey: 'x.y' },
      { data: '2', tags: ['b'], routingKey: 'x.y' },
      { data: '3', tags: ['a'], routingKey: 'z' },
    ]);
    expect((await pull(s)).map((m) => m.data)).toEqual(['1']);
  });
});

describe('delays', () => {
  test('a delayed message is invisible until its time and does not hold back others', async () => {
    const { t, s } = await setup();
    const published = Date.now();
    await publish(t, [{ data: 'later', delaySeconds: 2 }, { data: 'now' }]);
    expect((await pull(s)).map((m) => m.data)).toEqual(['now']);
    const later = await eventually(async () => (await pull(s, { waitSeconds: 3 }))[0], 10_000);
    expect(later.data).toBe('later');
    expect(Date.now() - published).toBeGreaterThanOrEqual(1900);
  });
});

describe('ordered subscriptions', () => {
  test('per ordering key in order, one in flight per key; other keys go on', async () => {
    const { t, s } = await setup({ ordered: true });
    await publish(t, [
      { data: 'a1', orderingKey: 'a' },
      { data: 'a2', orderingKey: 'a' },
      { data: 'b1', orderingKey: 'b' },
      { data: 'n1' },
      { data: 'b2', orderingKey: 'b' },
    ]);
    const first = await pull(s);
    expect(first.map((m) => m.data)).toEqual(['a1', 'b1', 'n1']);
    expect(await pull(s)).toEqual([]);
    await ack(s, [first[0].ackId]);
    const second = await pull(s);
    expect(second.map((m) => m.data)).toEqual(['a2']);
    await ack(s, [first[1].ackId]);
    expect((await pull(s)).map((m) => m.data)).toEqual(['b2']);
  });

  test('a nacked head is redelivered before the next message of its key', async () => {
    const { t, s } = await setup({ ordered: true });
    await publish(t, [{ data: 'k1', orderingKey: 'k' }, { data: 'k2', orderingKey: 'k' }]);
    const [m1] = await pull(s);
    await api(h.url, 'POST', `/v1/subscriptions/${s}/nack`, { ackIds: [m1.ackId], delaySeconds: 0 });
    const [again] = await pull(s);
    expect(again).toMatchObject({ data: 'k1', deliveryAttempt: 2 });
    expect(await pull(s)).toEqual([]);
  });
});

describe('seek', () => {
  test('by seq: rewinds to deliver again, or skips ahead', async () => {
    const { t, s } = await setup();
    await publish(t, Array.from({ length: 5 }, (_, i) => ({ data: `m${i + 1}` })));
    const all = await pull(s);
    await ack(s, all.map((m) => m.ackId));
    expect((await api(h.url, 'POST', `/v1/subscriptions/${s}/seek`, { seq: 2 })).status).toBe(200);
    const again = await pull(s);
    expect(again.map((m) => m.seq)).toEqual([2, 3, 4, 5]);
    // The rewind invalidated the leases it replaced.
    await api(h.url, 'POST', `/v1/subscriptions/${s}/seek`, { seq: 5 });
    expect((await ack(s, [again[0].ackId])).body.invalid).toEqual([again[0].ackId]);
    expect((await pull(s)).map((m) => m.seq)).toEqual([5]);
    expect((await stats(s)).backlog).toBe(1);
  });

  test('by time: from the first message published at or after it', async () => {
    const { t, s } = await setup();
    await publish(t, [{ data: 'before' }]);
    const [m1] = await pull(s);
    await new Promise((r) => setTimeout(r, 20));
    const cut = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await publish(t, [{ data: 'after' }]);
    await ack(s, [m1.ackId]);
    await pull(s).then((ms) => ack(s, ms.map((m) => m.ackId)));
    await api(h.url, 'POST', `/v1/subscriptions/${s}/seek`, { time: cut });
    expect((await pull(s)).map((m) => m.data)).toEqual(['after']);
    await api(h.url, 'POST', `/v1/subscriptions/${s}/seek`, { time: '2000-01-01T00:00:00Z' });
    expect((await pull(s)).map((m) => m.data)).toEqual(['before', 'after']);
  });
});

describe('dead-lettering', () => {
  test('after maxDeliveries the message moves to the dead-letter topic, and redrive brings it back', async () => {
    n++;
    const dlq = `dlq-${n}`;
    await api(h.url, 'PUT', `/v1/topics/${dlq}`);
    await api(h.url, 'PUT', `/v1/subscriptions/${dlq}-reader`, { topic: dlq });
    const { t, s } = await setup({ deadLetter: { topic: dlq, maxDeliveries: 2 } });
    await publish(t, [{ data: 'poison', attributes: { a: '1' } }, { data: 'fine' }]);
    const first = await pull(s);
    await ack(s, [first[1].ackId]);
    await api(h.url, 'POST', `/v1/subscriptions/${s}/nack`, { ackIds: [first[0].ackId], delaySeconds: 0 });
    const [second] = await pull(s);
    expect(second.deliveryAttempt).toBe(2);
    await api(h.url, 'POST', `/v1/subscriptions/${s}/nack`, { ackIds: [second.ackId], delaySeconds: 0 });
    // The third delivery would exceed maxDeliveries: it is dead-lettered instead.
    expect(await pull(s)).toEqual([]);
    expect(await stats(s)).toMatchObject({ deadLettered: 1, backlog: 0 });
    const [dead] = await pull(`${dlq}-reader`);
    expect(dead.data).toBe('poison');
    expect(dead.attributes).toEqual({
      a: '1',
      'herald-source-subscription': s,
      'herald-delivery-attempts': '2',
      'herald-last-error': 'nacked',
    });
    const r = await api(h.url, 'POST', `/v1/subscriptions/${s}/redrive`, { max: 10 });
    expect(r.body).toEqual({ redriven: 1 });
    expect(await stats(s)).toMatchObject({ deadLettered: 0, backlog: 1 });
    const [back] = await pull(s);
    expect(back).toMatchObject({ data: 'poison', deliveryAttempt: 1 });
  });

  test('a lease that runs out counts as a delivery; the last error says so', async () => {
    n++;
    const dlq = `dlq-${n}`;
    await api(h.url, 'PUT', `/v1/topics/${dlq}`);
    await api(h.url, 'PUT', `/v1/subscriptions/${dlq}-reader`, { topic: dlq });
    const { t, s } = await setup({ deadLetter: { topic: dlq, maxDeliveries: 1 }, ackDeadlineSeconds: 1 });
    await publish(t, [{ data: 'slow' }]);
    expect(await pull(s)).toHaveLength(1);
    const dead = await eventually(async () => {
      await pull(s);
      return (await pull(`${dlq}-reader`))[0];
    }, 10_000);
    expect(dead.attributes['herald-last-error']).toBe('ack-deadline-exceeded');
    expect(dead.attributes['herald-delivery-attempts']).toBe('1');
  });
});

describe('stats', () => {
  test('oldestUnackedAgeSeconds grows while a message waits', async () => {
    const { t, s } = await setup();
    await publish(t, [{ data: 'x' }]);
    await eventually(async () => (await stats(s)).oldestUnackedAgeSeconds >= 1, 5000, 100);
    const [m] = await pull(s);
    await ack(s, [m.ackId]);
    expect((await stats(s)).oldestUnackedAgeSeconds).toBe(0);
  });

  test('list by topic', async () => {
    const { t, s } = await setup();
    const r = await api(h.url, 'GET', `/v1/subscriptions?topic=${t}`);
    expect(r.body.subscriptions.map((x: any) => x.name)).toEqual([s]);
    expect((await api(h.url, 'GET', '/v1/subscriptions?topic=no-such')).status).toBe(404);
  });

  test('PATCH changes the config; a changed filter recounts the backlog', async () => {
    const { t, s } = await setup();
    await publish(t, [{ data: '1', tags: ['a'] }, { data: '2' }]);
    expect((await stats(s)).backlog).toBe(2);
    const r = await api(h.url, 'PATCH', `/v1/subscriptions/${s}`, { filter: { tags: ['a'] }, ackDeadlineSeconds: 99 });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ ackDeadlineSeconds: 99, backlog: 1, filter: { tags: ['a'] } });
    expect((await api(h.url, 'PATCH', `/v1/subscriptions/${s}`, { ordered: true })).status).toBe(400);
  });
});
