// Goal: webhook push as API.md promises it, on a real node against real HTTP receivers: formats and
// Standard Webhooks signatures (verified with the `standardwebhooks` package), acks on 2xx, retries on
// the policy's schedule, Retry-After, 410 pause and resume, timeouts and resets, redirects not
// followed, dead-lettering when retries are spent, the in-flight window, the rate limit (also when
// rewound), per-key order, secret rotation, the attempts log, the circuit breaker (a failing endpoint
// slows no other subscription), pull and push sharing one subscription, and the SSRF check when
// connecting. Method: one node with --allow-private-webhooks (receivers are on 127.0.0.1) and one node
// without it; each test has its own topic, subscription and receiver; waits poll with a deadline.
import { createHmac } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isBlockedAddress } from '../../src/delivery/ssrf.js';
import { api, eventually, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';
import { WebhookReceiver, type Answer, type Received } from '../helpers/webhook-receiver.js';

let h: HeraldProcess;
const receivers: WebhookReceiver[] = [];
beforeAll(async () => {
  h = await startHerald({ args: ['--allow-private-webhooks'] });
});
afterAll(async () => {
  for (const r of receivers) await r.close();
  await h.stop();
  removeDataDir(h.dataDir);
});

async function receiver(behaviour?: (r: Received, i: number) => Answer): Promise<WebhookReceiver> {
  const r = await WebhookReceiver.start(behaviour);
  receivers.push(r);
  return r;
}

let n = 0;
/** A topic and a push subscription to `url`; returns their names and the secret given on create. */
async function setup(push: Record<string, unknown>, sub: Record<string, unknown> = {}): Promise<{ t: string; s: string; secret: string }> {
  n++;
  const t = `wh-topic-${n}`;
  const s = `wh-sub-${n}`;
  expect((await api(h.url, 'PUT', `/v1/topics/${t}`, {})).status).toBe(201);
  const r = await api(h.url, 'PUT', `/v1/subscriptions/${s}`, { topic: t, push, ...sub });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  expect(r.body.secret).toMatch(/^whsec_[A-Za-z0-9+/=]+$/);
  return { t, s, secret: r.body.secret };
}

const publish = async (t: string, messages: unknown[]) => {
  const r = await api(h.url, 'POST', `/v1/topics/${t}/messages`, { messages });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.results as { id: string; seq: number }[];
};
const stats = async (s: string) => (await api(h.url, 'GET', `/v1/subscriptions/${s}`)).body;
const attempts = async (s: string, limit = 50) => (await api(h.url, 'GET', `/v1/subscriptions/${s}/attempts?limit=${limit}`)).body.attempts as any[];
const gaps = (rs: Received[]) => rs.slice(1).map((r, i) => r.atMs - rs[i]!.atMs);

function verify(secret: string, r: Received): unknown {
  const json = String(r.headers['content-type']).startsWith('application/json');
  return new Webhook(secret).verify(
    r.body.toString(),
    {
      'webhook-id': String(r.headers['webhook-id']),
      'webhook-timestamp': String(r.headers['webhook-timestamp']),
      'webhook-signature': String(r.headers['webhook-signature']),
    },
    { jsonParse: json },
  );
}

/**
 * The spec's HMAC over the raw bytes (standardwebhooks reads the payload as UTF-8, so it cannot
 * check a body that is not): "<id>.<timestamp>.<body>" with the secret's key.
 */
function verifyBytes(secret: string, r: Received): void {
  const mac = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64'));
  mac.update(`${r.headers['webhook-id']}.${r.headers['webhook-timestamp']}.`);
  mac.update(r.body);
  expect(String(r.headers['webhook-signature']).split(' ')).toContain(`v1,${mac.digest('base64')}`);
}

describe('webhook formats and signatures', () => {
  test('json: pull’s message object, signed, acked on 2xx, listed in attempts', async () => {
    const rx = await receiver();
    const { t, s, secret } = await setup({ url: `${rx.url}/hook`, headers: { authorization: 'Bearer abc' } });
    const [res] = await publish(t, [{ data: 'hello', attributes: { k: 'v' }, tags: ['a'], routingKey: 'a.b', orderingKey: 'o' }]);
    const r = (await eventually(() => rx.for(s)[0]))!;
    expect(r.path).toBe('/hook');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers.authorization).toBe('Bearer abc');
    expect(r.headers['webhook-id']).toBe(res!.id);
    expect(r.json).toMatchObject({
      id: res!.id,
      seq: res!.seq,
      data: 'hello',
      encoding: 'utf8',
      attributes: { k: 'v' },
      tags: ['a'],
      routingKey: 'a.b',
      orderingKey: 'o',
      deliveryAttempt: 1,
    });
    expect(r.json.ackId).toBeUndefined();
    expect(verify(secret, r)).toMatchObject({ id: res!.id, data: 'hello' });
    await eventually(async () => {
      const st = await stats(s);
      expect(st.backlog).toBe(0);
      expect(st.acked).toBe(1);
      expect(st.pushState).toBe('active');
      return true;
    });
    const [a] = await attempts(s);
    expect(a).toMatchObject({ messageId: res!.id, seq: res!.seq, attempt: 1, outcome: 200 });
    expect(typeof a.latencyMs).toBe('number');
    expect(Date.parse(a.time)).toBeGreaterThan(0);
    // The secret is shown once: a repeated create with the same config does not show it.
    const again = await api(h.url, 'PUT', `/v1/subscriptions/${s}`, { topic: t, push: { url: `${rx.url}/hook`, headers: { authorization: 'Bearer abc' } } });
    expect(again.status).toBe(200);
    expect(again.body.secret).toBeUndefined();
    expect((await api(h.url, 'GET', `/v1/subscriptions/${s}`)).body.secret).toBeUndefined();
  });

  test('raw: the decoded data as the body, attributes as herald-attr- headers', async () => {
    const rx = await receiver();
    const { t, s, secret } = await setup({ url: rx.url, format: 'raw' });
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    await publish(t, [{ data: bytes.toString('base64'), encoding: 'base64', attributes: { Color: 'red', note: 'ünï' } }]);
    const r = (await eventually(() => rx.for(s)[0]))!;
    expect(r.body.equals(bytes)).toBe(true);
    expect(r.headers['herald-attr-color']).toBe('red');
    expect(decodeURIComponent(String(r.headers['herald-attr-note']))).toBe('ünï');
    expect(r.headers['content-type']).toBe('application/octet-stream');
    verifyBytes(secret, r);
    // A UTF-8 body checks with the standardwebhooks package too.
    await publish(t, [{ data: 'plain text' }]);
    const text = (await eventually(() => rx.for(s)[1]))!;
    expect(text.body.toString()).toBe('plain text');
    verify(secret, text);
  });

  test('cloudevents: HTTP binary mode', async () => {
    const rx = await receiver();
    const { t, s, secret } = await setup({ url: rx.url, format: 'cloudevents' });
    const [res] = await publish(t, [{ data: '{"x":1}', attributes: { k: 'v' } }]);
    const r = (await eventually(() => rx.for(s)[0]))!;
    expect(r.headers).toMatchObject({
      'ce-specversion': '1.0',
      'ce-id': res!.id,
      'ce-source': `/topics/${t}`,
      'ce-type': 'herald.message',
      'herald-attr-k': 'v',
    });
    expect(Date.parse(String(r.headers['ce-time']))).toBeGreaterThan(0);
    expect(r.body.toString()).toBe('{"x":1}');
    verify(secret, r);
  });

  test('rotate-secret: both secrets sign until the overlap ends; the new one is returned', async () => {
    const rx = await receiver();
    const { t, s, secret } = await setup({ url: rx.url });
    const rot = await api(h.url, 'POST', `/v1/subscriptions/${s}/rotate-secret`);
    expect(rot.status).toBe(200);
    expect(rot.body.secret).toMatch(/^whsec_/);
    expect(rot.body.secret).not.toBe(secret);
    await publish(t, [{ data: 'after rotation' }]);
    const r = (await eventually(() => rx.for(s)[0]))!;
    expect(String(r.headers['webhook-signature']).split(' ')).toHaveLength(2);
    verify(secret, r);
    verify(rot.body.secret, r);
    expect((await api(h.url, 'POST', `/v1/subscriptions/nope-${n}/rotate-secret`)).status).toBe(404);
  });
});

describe('retries, backoff and dead-lettering', () => {
  test('500s are retried on the fixed schedule, then dead-lettered with the last error', async () => {
    const rx = await receiver(() => ({ status: 500 }));
    const dlq = `wh-dlq-${n + 1}`;
    expect((await api(h.url, 'PUT', `/v1/topics/${dlq}`, {})).status).toBe(201);
    const { t, s } = await setup(
      { url: rx.url },
      { retry: { policy: 'fixed', intervalMs: 300, maxAttempts: 3 }, deadLetter: { topic: dlq, maxDeliveries: 100 } },
    );
    expect((await api(h.url, 'PUT', `/v1/subscriptions/${dlq}-reader`, { topic: dlq, startAt: 'earliest' })).status).toBe(201);
    const [res] = await publish(t, [{ data: 'doomed' }]);
    await eventually(async () => expect((await stats(s)).deadLettered).toBe(1), 15_000);
    const got = rx.for(s);
    expect(got).toHaveLength(3);
    expect(got.map((r) => r.json.deliveryAttempt)).toEqual([1, 2, 3]);
    expect(new Set(got.map((r) => r.headers['webhook-id']))).toEqual(new Set([res!.id]));
    for (const g of gaps(got)) {
      expect(g).toBeGreaterThanOrEqual(280);
      expect(g).toBeLessThan(1500);
    }
    const pulled = await api(h.url, 'POST', `/v1/subscriptions/${dlq}-reader/pull`, { max: 10 });
    expect(pulled.body.messages).toHaveLength(1);
    expect(pulled.body.messages[0].attributes).toMatchObject({
      'herald-source-subscription': s,
      'herald-delivery-attempts': '3',
      'herald-last-error': '500',
    });
    expect((await stats(s)).backlog).toBe(0);
    expect((await attempts(s)).map((a) => a.outcome)).toEqual([500, 500, 500]);
  });

  test('exponential backoff grows by the multiplier (jitter 0) and stays capped', async () => {
    const rx = await receiver((_r, i) => ({ status: i < 4 ? 503 : 200 }));
    const { t, s } = await setup(
      { url: rx.url },
      { retry: { policy: 'exponential', minBackoffMs: 200, maxBackoffMs: 700, multiplier: 2, jitter: 0, maxAttempts: null, maxRetrySeconds: 3600 } },
    );
    await publish(t, [{ data: 'x' }]);
    await eventually(async () => expect((await stats(s)).acked).toBe(1), 15_000);
    const g = gaps(rx.for(s));
    expect(g).toHaveLength(4);
    // 200, 400, then the cap: 700, 700 (503 without Retry-After follows the policy).
    const expected = [200, 400, 700, 700];
    g.forEach((gap, i) => {
      expect(gap).toBeGreaterThanOrEqual(expected[i]! - 20);
      expect(gap).toBeLessThan(expected[i]! + 600);
    });
  });

  test('429 with Retry-After waits that long, capped by the largest backoff', async () => {
    const rx = await receiver((_r, i) => (i === 0 ? { status: 429, headers: { 'retry-after': '1' } } : i === 1 ? { status: 429, headers: { 'retry-after': '3600' } } : { status: 200 }));
    const { t, s } = await setup(
      { url: rx.url },
      { retry: { policy: 'exponential', minBackoffMs: 50, maxBackoffMs: 1500, multiplier: 2, jitter: 0, maxAttempts: null, maxRetrySeconds: 3600 } },
    );
    await publish(t, [{ data: 'x' }]);
    await eventually(async () => expect((await stats(s)).acked).toBe(1), 15_000);
    const [g1, g2] = gaps(rx.for(s));
    expect(g1).toBeGreaterThanOrEqual(980);
    expect(g1).toBeLessThan(2000);
    expect(g2).toBeGreaterThanOrEqual(1480); // an hour asked, capped at maxBackoffMs
    expect(g2).toBeLessThan(2600);
  });

  test('maxRetrySeconds gives up by time', async () => {
    const rx = await receiver(() => ({ status: 502 }));
    const dlq = `wh-dlq-${n + 1}`;
    expect((await api(h.url, 'PUT', `/v1/topics/${dlq}`, {})).status).toBe(201);
    const { t, s } = await setup(
      { url: rx.url },
      {
        retry: { policy: 'exponential', minBackoffMs: 300, maxBackoffMs: 300, multiplier: 1, jitter: 0, maxAttempts: null, maxRetrySeconds: 1 },
        deadLetter: { topic: dlq, maxDeliveries: 1000 },
      },
    );
    await publish(t, [{ data: 'x' }]);
    await eventually(async () => expect((await stats(s)).deadLettered).toBe(1), 15_000);
    const got = rx.for(s);
    // First attempt at 0, retries every 300 ms; the one at or after 1 s is the last.
    expect(got.length).toBeGreaterThanOrEqual(4);
    expect(got.length).toBeLessThanOrEqual(6);
    expect(got.at(-1)!.atMs - got[0]!.atMs).toBeGreaterThanOrEqual(950);
  });

  test('without a dead-letter topic nothing is dropped: retries go on at the largest backoff', async () => {
    let fail = true;
    const rx = await receiver(() => ({ status: fail ? 500 : 200 }));
    const { t, s } = await setup({ url: rx.url }, { retry: { policy: 'fixed', intervalMs: 200, maxAttempts: 2 } });
    await publish(t, [{ data: 'x' }]);
    await eventually(() => expect(rx.for(s).length).toBeGreaterThanOrEqual(4), 10_000);
    expect((await stats(s)).backlog).toBe(1);
    fail = false;
    await eventually(async () => expect((await stats(s)).acked).toBe(1), 10_000);
    expect((await stats(s)).deadLettered).toBe(0);
  });

  test('timeouts, connection resets, redirects and 4xx are failed attempts with their names', async () => {
    const rx = await receiver((_r, i) =>
      i === 0 ? { hang: true } : i === 1 ? { reset: true } : i === 2 ? { status: 302, headers: { location: '/elsewhere' } } : i === 3 ? { status: 404 } : { status: 204 },
    );
    const { t, s } = await setup({ url: `${rx.url}/in`, timeoutMs: 300 }, { retry: { policy: 'fixed', intervalMs: 100, maxAttempts: null } });
    await publish(t, [{ data: 'x' }]);
    await eventually(async () => expect((await stats(s)).acked).toBe(1), 15_000);
    expect(rx.for(s).map((r) => r.path)).toEqual(['/in', '/in', '/in', '/in', '/in']); // the redirect was not followed
    expect((await attempts(s)).map((a) => a.outcome).reverse()).toEqual(['timeout', 'connection-reset', 302, 404, 204]);
    const timedOut = (await attempts(s)).at(-1)!;
    expect(timedOut.latencyMs).toBeGreaterThanOrEqual(280);
  });
});

describe('pausing, windows, rates and order', () => {
  test('410 pauses the push (backlog kept, pull still works) until resume', async () => {
    let gone = true;
    const rx = await receiver(() => ({ status: gone ? 410 : 200 }));
    const { t, s } = await setup({ url: rx.url }, { retry: { policy: 'fixed', intervalMs: 100, maxAttempts: null } });
    await publish(t, [{ data: 'a' }, { data: 'b' }, { data: 'c' }]);
    await eventually(async () => expect((await stats(s)).pushState).toBe('paused'));
    const seen = rx.for(s).length;
    expect(seen).toBeGreaterThanOrEqual(1);
    // A pull consumer may still take from the subscription; its attempt count includes the push's.
    const pulled = await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, { max: 1 });
    expect(pulled.body.messages).toHaveLength(1);
    expect((await api(h.url, 'POST', `/v1/subscriptions/${s}/ack`, { ackIds: [pulled.body.messages[0].ackId] })).body.acked).toBe(1);
    expect((await stats(s)).backlog).toBe(2);
    expect(rx.for(s).length).toBe(seen); // nothing pushed while paused
    gone = false;
    const resumed = await api(h.url, 'POST', `/v1/subscriptions/${s}/resume`);
    expect(resumed.status).toBe(200);
    expect(resumed.body.pushState).not.toBe('paused');
    await eventually(async () => expect((await stats(s)).backlog).toBe(0));
    // resume of a subscription without push is refused
    expect((await api(h.url, 'PUT', `/v1/subscriptions/${s}-pull`, { topic: t })).status).toBe(201);
    const bad = await api(h.url, 'POST', `/v1/subscriptions/${s}-pull/resume`);
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('InvalidRequest');
  });

  test('maxInFlight bounds the requests open at once', async () => {
    const rx = await receiver(() => ({ status: 200, delayMs: 50 }));
    const { t, s } = await setup({ url: rx.url, maxInFlight: 3 });
    await publish(t, Array.from({ length: 30 }, (_, i) => ({ data: `m${i}` })));
    await eventually(async () => expect((await stats(s)).acked).toBe(30), 15_000);
    expect(rx.maxOpen).toBeGreaterThanOrEqual(2);
    expect(rx.maxOpen).toBeLessThanOrEqual(3);
  });

  test('rateLimitPerSecond paces deliveries, also when a seek replays them', async () => {
    const rx = await receiver();
    const { t, s } = await setup({ url: rx.url, rateLimitPerSecond: 10 });
    const published = await publish(t, Array.from({ length: 25 }, (_, i) => ({ data: `m${i}` })));
    await eventually(async () => expect((await stats(s)).acked).toBe(25), 15_000);
    const first = rx.for(s);
    // A burst of at most one second's worth, then 10/s: 25 take at least 1.5 s.
    expect(first.at(-1)!.atMs - first[0]!.atMs).toBeGreaterThanOrEqual(1400);
    const before = first.length;
    expect((await api(h.url, 'POST', `/v1/subscriptions/${s}/seek`, { seq: published[0]!.seq })).status).toBe(200);
    await eventually(() => expect(rx.for(s).length).toBe(before + 25), 15_000);
    const replay = rx.for(s).slice(before);
    expect(replay.at(-1)!.atMs - replay[0]!.atMs).toBeGreaterThanOrEqual(1400);
  });

  test('ordered: per key in order, one in flight per key, even with retries', async () => {
    const failedOnce = new Set<string>();
    const rx = await receiver((r) => {
      const key = r.json.orderingKey as string;
      // The first message of each key fails once: the rest of that key must wait for it.
      if (r.json.data.endsWith('-0') && !failedOnce.has(key)) {
        failedOnce.add(key);
        return { status: 500 };
      }
      return { status: 200, delayMs: 5 };
    });
    const { t, s } = await setup({ url: rx.url, maxInFlight: 16 }, { ordered: true, retry: { policy: 'fixed', intervalMs: 100, maxAttempts: null } });
    const keys = ['k1', 'k2', 'k3'];
    for (let i = 0; i < 5; i++) await publish(t, keys.map((k) => ({ data: `${k}-${i}`, orderingKey: k })));
    await eventually(async () => expect((await stats(s)).acked).toBe(15), 15_000);
    for (const k of keys) {
      const okOrder = rx
        .for(s)
        .filter((r) => r.json.orderingKey === k)
        .map((r) => r.json.data);
      expect(okOrder).toEqual([`${k}-0`, `${k}-0`, `${k}-1`, `${k}-2`, `${k}-3`, `${k}-4`]);
    }
  });
});

describe('isolation and shared consumption', () => {
  test('a failing endpoint is circuit-broken and slows no other subscription', async () => {
    const bad = await receiver(() => ({ hang: true }));
    const good = await receiver();
    const { t } = await setup({ url: bad.url, timeoutMs: 500, maxInFlight: 4 }, { retry: { policy: 'fixed', intervalMs: 50, maxAttempts: null } });
    const okSub = `wh-ok-${n}`;
    expect((await api(h.url, 'PUT', `/v1/subscriptions/${okSub}`, { topic: t, push: { url: good.url } })).status).toBe(201);
    const badSub = `wh-sub-${n}`;
    await publish(t, Array.from({ length: 200 }, (_, i) => ({ data: `m${i}` })));
    const started = Date.now();
    await eventually(async () => expect((await stats(okSub)).acked).toBe(200), 10_000);
    expect(Date.now() - started).toBeLessThan(5000);
    await eventually(async () => expect((await stats(badSub)).pushState).toBe('backing-off'), 10_000);
    // The circuit holds the bad endpoint to a probe at a time: far fewer attempts than messages.
    const st = await stats(badSub);
    expect(st.backlog).toBe(200);
    expect(bad.for(badSub).length).toBeLessThan(40);
  });

  test('pull consumers and push share one subscription’s locks and attempt counts', async () => {
    const rx = await receiver(() => ({ status: 500 }));
    const { t, s } = await setup({ url: rx.url }, { retry: { policy: 'fixed', intervalMs: 300, maxAttempts: null } });
    await publish(t, [{ data: 'shared' }]);
    await eventually(() => expect(rx.for(s).length).toBe(1));
    // Waiting out its backoff, the message is not handed to pull either.
    expect((await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, { max: 1 })).body.messages).toHaveLength(0);
    const pulled = await api(h.url, 'POST', `/v1/subscriptions/${s}/pull`, { max: 1, waitSeconds: 5, ackDeadlineSeconds: 60 });
    expect(pulled.body.messages).toHaveLength(1);
    const m = pulled.body.messages[0];
    // Either push retried first (attempt 2 failed) or pull won the race right after the backoff.
    expect(m.deliveryAttempt).toBe(rx.for(s).length + 1);
    const pushedBefore = rx.for(s).length;
    expect((await api(h.url, 'POST', `/v1/subscriptions/${s}/ack`, { ackIds: [m.ackId] })).body.acked).toBe(1);
    expect((await stats(s)).backlog).toBe(0);
    expect(rx.for(s).length).toBe(pushedBefore);
  });
});

describe('the SSRF guard', () => {
  test('a node without --allow-private-webhooks refuses loopback URLs at create, and names resolving there at connect', async () => {
    const strict = await startHerald();
    try {
      expect((await api(strict.url, 'PUT', '/v1/topics/t', {})).status).toBe(201);
      const refused = await api(strict.url, 'PUT', '/v1/subscriptions/s', { topic: 't', push: { url: 'http://127.0.0.1:9/x' } });
      expect(refused.status).toBe(400);
      expect(refused.body.error.code).toBe('InvalidRequest');
      // This machine's own name resolves to one of its own (loopback or private) addresses.
      const own = hostname();
      const resolved = await lookup(own, { all: true });
      expect(resolved.some((a) => isBlockedAddress(a.address))).toBe(true);
      const rx = await receiver();
      const port = new URL(rx.url).port;
      const created = await api(strict.url, 'PUT', '/v1/subscriptions/s', {
        topic: 't',
        push: { url: `http://${own}:${port}/x` },
        retry: { policy: 'fixed', intervalMs: 100, maxAttempts: null },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      await api(strict.url, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'x' }] });
      await eventually(async () => {
        const a = (await api(strict.url, 'GET', '/v1/subscriptions/s/attempts')).body.attempts;
        expect(a[0]?.outcome).toBe('ssrf-blocked');
        return true;
      });
      expect(rx.received).toHaveLength(0);
    } finally {
      await strict.stop();
      removeDataDir(strict.dataDir);
    }
  });

  test('bad push settings are 400s: reserved headers, bad header values, bad attempts limit', async () => {
    expect((await api(h.url, 'PUT', '/v1/topics/bad-push', {})).status).toBe(201);
    for (const push of [
      { url: 'http://127.0.0.1:9/', headers: { 'webhook-signature': 'x' } },
      { url: 'http://127.0.0.1:9/', headers: { 'content-length': '1' } },
      { url: 'http://127.0.0.1:9/', headers: { 'x-ok': 'line\nbreak' } },
    ]) {
      const r = await api(h.url, 'PUT', '/v1/subscriptions/bad-push', { topic: 'bad-push', push });
      expect(r.status, JSON.stringify(push)).toBe(400);
      expect(r.body.error.code).toBe('InvalidRequest');
    }
    expect((await api(h.url, 'PUT', '/v1/subscriptions/bad-push', { topic: 'bad-push', push: { url: 'http://127.0.0.1:9/' } })).status).toBe(201);
    for (const q of ['limit=0', 'limit=201', 'limit=abc', 'other=1']) {
      const r = await api(h.url, 'GET', `/v1/subscriptions/bad-push/attempts?${q}`);
      expect(r.status, q).toBe(400);
    }
    expect((await api(h.url, 'GET', '/v1/subscriptions/nope/attempts')).status).toBe(404);
  });
});
