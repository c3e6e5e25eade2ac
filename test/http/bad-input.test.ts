// Goal: a real Herald node answers bad input on every route of API.md with the contract's error
// (`{"error": {"code", "message"}}` and the status of its table) and loses nothing it stored.
// Method: one real node process; a protected topic and subscription are filled first and checked
// last; every bad request in between must leave no trace (no topic, subscription or message made).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { api, apiOk, eventually, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';
import { sendOverSocket } from '../helpers/raw-http.js';

let h: HeraldProcess;

type Res = { status: number; body: any };

/** The contract's error body, and nothing else in it. */
function expectError(r: Res, status: number, code: string | string[]): void {
  const codes = Array.isArray(code) ? code : [code];
  expect({ status: r.status, body: r.body }).toEqual({
    status,
    body: { error: { code: expect.toSatisfy((c: unknown) => codes.includes(c as string)), message: expect.any(String) } },
  });
  expect(r.body.error.message.length).toBeGreaterThan(0);
}


/** A raw request (any body bytes, any or no content-type), answered with the parsed JSON body. */
async function rawRequest(method: string, path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Res> {
  const r = await sendOverSocket(h.url, method, path, Buffer.from(body), headers);
  let parsed: any = r.text;
  try {
    parsed = r.text.length > 0 ? JSON.parse(r.text) : undefined;
  } catch {
    /* keep the text */
  }
  return { status: r.status, body: parsed };
}

const KEEP_TOPIC = 'keep';
const KEEP_SUB = 'keep-sub';
const KEEP_MESSAGES = [
  { data: 'first', attributes: { n: '1' }, tags: ['a'] },
  { data: 'AAECAwQ=', encoding: 'base64' as const, routingKey: 'x.y' },
  { data: 'third é 😀', orderingKey: 'k', dedupId: 'keep-3' },
];
let keepLastSeq = 0;

const seg = (name: string) => encodeURIComponent(name);

beforeAll(async () => {
  h = await startHerald();
  const mk = (method: string, path: string, body?: unknown) => apiOk(h.url, method, path, body);
  await mk('PUT', `/v1/topics/${KEEP_TOPIC}`, {});
  await mk('PUT', `/v1/subscriptions/${KEEP_SUB}`, { topic: KEEP_TOPIC, startAt: 'earliest' });
  const p = await mk('POST', `/v1/topics/${KEEP_TOPIC}/messages`, { messages: KEEP_MESSAGES });
  keepLastSeq = p.body.results.at(-1).seq;
  // Scratch resources the bad requests aim at.
  await mk('PUT', '/v1/topics/t', {});
  await mk('PUT', '/v1/topics/dlq', {});
  await mk('PUT', '/v1/topics/small', { maxMessageBytes: 16 });
  await mk('PUT', '/v1/subscriptions/s', { topic: 't', startAt: 'earliest' });
  await mk('PUT', '/v1/subscriptions/small-sub', { topic: 'small', startAt: 'earliest' });
  await mk('PUT', '/v1/queues/q', {});
});

afterAll(async () => {
  await h?.stop();
  if (h) removeDataDir(h.dataDir);
});

/** Every route that takes a JSON body, with a minimal valid body for it. */
const bodyRoutes: { method: string; path: string; valid: Record<string, unknown> }[] = [
  { method: 'PUT', path: '/v1/topics/never-made-t', valid: {} },
  { method: 'PATCH', path: '/v1/topics/t', valid: {} },
  { method: 'POST', path: '/v1/topics/t/messages', valid: { messages: [{ data: 'x' }] } },
  { method: 'PUT', path: '/v1/queues/never-made-q', valid: {} },
  { method: 'POST', path: '/v1/queues/q/messages', valid: { messages: [{ data: 'x' }] } },
  { method: 'POST', path: '/v1/queues/q/pull', valid: { max: 1 } },
  { method: 'POST', path: '/v1/queues/q/ack', valid: { ackIds: ['x'] } },
  { method: 'POST', path: '/v1/queues/q/nack', valid: { ackIds: ['x'] } },
  { method: 'POST', path: '/v1/queues/q/modify-ack-deadline', valid: { ackIds: ['x'], seconds: 10 } },
  { method: 'PUT', path: '/v1/subscriptions/never-made-s', valid: { topic: 't' } },
  { method: 'PATCH', path: '/v1/subscriptions/s', valid: {} },
  { method: 'POST', path: '/v1/subscriptions/s/pull', valid: { max: 1 } },
  { method: 'POST', path: '/v1/subscriptions/s/ack', valid: { ackIds: ['x'] } },
  { method: 'POST', path: '/v1/subscriptions/s/nack', valid: { ackIds: ['x'] } },
  { method: 'POST', path: '/v1/subscriptions/s/modify-ack-deadline', valid: { ackIds: ['x'], seconds: 10 } },
  { method: 'POST', path: '/v1/subscriptions/s/seek', valid: { seq: 1 } },
  { method: 'POST', path: '/v1/subscriptions/s/redrive', valid: { max: 10 } },
];

async function expectNotMade(): Promise<void> {
  expectError(await api(h.url, 'GET', '/v1/topics/never-made-t'), 404, 'TopicNotFound');
  expectError(await api(h.url, 'GET', '/v1/topics/never-made-q'), 404, 'TopicNotFound');
  expectError(await api(h.url, 'GET', '/v1/subscriptions/never-made-s'), 404, 'SubscriptionNotFound');
  expectError(await api(h.url, 'GET', '/v1/subscriptions/never-made-q'), 404, 'SubscriptionNotFound');
}

async function lastSeq(topic: string): Promise<number> {
  const r = await api(h.url, 'GET', `/v1/topics/${topic}`);
  expect(r.status).toBe(200);
  return r.body.lastSeq;
}

describe('malformed JSON and wrong body types', () => {
  const malformed = ['{', '{bad', '{"a":}', "{'max': 1}", '{"max": 1}}', '[1,]', 'nul', '{"a":1,}', '\u0000', '{"a":"\\x"}'];
  for (const route of bodyRoutes) {
    test(`${route.method} ${route.path}: malformed JSON → 400 InvalidRequest`, async () => {
      for (const raw of malformed) {
        expectError(await api(h.url, route.method, route.path, undefined, { raw }), 400, 'InvalidRequest');
      }
    });

    test(`${route.method} ${route.path}: a body that is not an object → 400`, async () => {
      for (const body of [[], [route.valid], 'text', 42, true]) {
        expectError(await api(h.url, route.method, route.path, body), 400, 'InvalidRequest');
      }
    });

    test(`${route.method} ${route.path}: unknown fields → 400`, async () => {
      expectError(await api(h.url, route.method, route.path, { ...route.valid, bogus: 1 }), 400, 'InvalidRequest');
      expectError(await api(h.url, route.method, route.path, { ...route.valid, Max: 1, MAX: 1 }), 400, 'InvalidRequest');
    });
  }

  test('a JSON body with a content-type that is not JSON is refused with a contract error', async () => {
    for (const ct of ['application/xml', 'application/octet-stream', 'application/x-www-form-urlencoded', 'text/plain', 'garbage']) {
      const r = await rawRequest('POST', '/v1/topics/t/messages', JSON.stringify({ messages: [{ data: 'x' }] }), { 'content-type': ct });
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
    }
  });

  test('the bad bodies made nothing', async () => {
    await expectNotMade();
  });
});

describe('names', () => {
  const badNames: [string, string][] = [
    ['129 characters', 'a'.repeat(129)],
    ['starting with -', '-abc'],
    ['starting with .', '.abc'],
    ['starting with _', '_abc'],
    ['containing /', 'a/b'],
    ['containing a space', 'a b'],
    ['containing unicode', 'café'],
    ['an emoji', '😀'],
    ['containing a NUL', 'a\u0000b'],
    ['containing :', 'a:b'],
    ['containing *', 'a*b'],
    ['containing +', 'a+b'],
    ['containing %', 'a%b'],
  ];
  for (const [what, name] of badNames) {
    test(`a name ${what} → 400 on every named route`, async () => {
      const n = seg(name);
      const cases: [string, string, unknown][] = [
        ['PUT', `/v1/topics/${n}`, {}],
        ['GET', `/v1/topics/${n}`, undefined],
        ['PATCH', `/v1/topics/${n}`, {}],
        ['DELETE', `/v1/topics/${n}`, undefined],
        ['POST', `/v1/topics/${n}/messages`, { messages: [{ data: 'x' }] }],
        ['PUT', `/v1/queues/${n}`, {}],
        ['GET', `/v1/queues/${n}`, undefined],
        ['DELETE', `/v1/queues/${n}`, undefined],
        ['POST', `/v1/queues/${n}/messages`, { messages: [{ data: 'x' }] }],
        ['POST', `/v1/queues/${n}/pull`, {}],
        ['POST', `/v1/queues/${n}/ack`, { ackIds: ['x'] }],
        ['PUT', `/v1/subscriptions/${n}`, { topic: 't' }],
        ['GET', `/v1/subscriptions/${n}`, undefined],
        ['PATCH', `/v1/subscriptions/${n}`, {}],
        ['DELETE', `/v1/subscriptions/${n}`, undefined],
        ['POST', `/v1/subscriptions/${n}/pull`, {}],
        ['POST', `/v1/subscriptions/${n}/ack`, { ackIds: ['x'] }],
        ['POST', `/v1/subscriptions/${n}/nack`, { ackIds: ['x'] }],
        ['POST', `/v1/subscriptions/${n}/modify-ack-deadline`, { ackIds: ['x'], seconds: 1 }],
        ['POST', `/v1/subscriptions/${n}/seek`, { seq: 1 }],
        ['POST', `/v1/subscriptions/${n}/redrive`, {}],
        ['GET', `/v1/subscriptions?topic=${n}`, undefined],
      ];
      for (const [method, path, body] of cases) {
        const r = await api(h.url, method, path, body);
        expect({ route: `${method} ${path}`, status: r.status, body: r.body }).toEqual({
          route: `${method} ${path}`,
          status: 400,
          body: { error: { code: 'InvalidRequest', message: expect.any(String) } },
        });
      }
      // Names inside bodies are names too.
      expectError(await api(h.url, 'PUT', '/v1/subscriptions/never-made-s', { topic: name }), 400, 'InvalidRequest');
      expectError(
        await api(h.url, 'PUT', '/v1/subscriptions/never-made-s', { topic: 't', deadLetter: { topic: name } }),
        400,
        'InvalidRequest',
      );
      expectError(await api(h.url, 'PATCH', '/v1/subscriptions/s', { deadLetter: { topic: name } }), 400, 'InvalidRequest');
    });
  }

  test('an empty name → 400 (or 404: no such route), never a 2xx', async () => {
    for (const [method, path, body] of [
      ['PUT', '/v1/topics/', {}],
      ['POST', '/v1/topics//messages', { messages: [{ data: 'x' }] }],
      ['PUT', '/v1/subscriptions/', { topic: 't' }],
      ['POST', '/v1/subscriptions//pull', {}],
      ['PUT', '/v1/queues/', {}],
      ['GET', '/v1/subscriptions?topic=', undefined],
    ] as [string, string, unknown][]) {
      const r = await api(h.url, method, path, body);
      expect([400, 404], `${method} ${path}`).toContain(r.status);
      expectError(r, r.status, r.status === 400 ? 'InvalidRequest' : 'NotFound');
    }
    expectError(await api(h.url, 'PUT', '/v1/subscriptions/never-made-s', { topic: '' }), 400, 'InvalidRequest');
  });

  test('a malformed percent-encoding in a name → 400 with the contract body', async () => {
    for (const path of ['/v1/topics/%ZZ', '/v1/topics/a%C3', '/v1/subscriptions/%/pull']) {
      expectError(await api(h.url, 'GET', path), 400, 'InvalidRequest');
    }
  });

  test('valid names at the edges are accepted: 1 and 128 characters, every allowed character', async () => {
    for (const name of ['A', '9', 'a.b_c-D', 'x'.repeat(100), 'y'.repeat(101), 'z'.repeat(128)]) {
      const t = await api(h.url, 'PUT', `/v1/topics/${name}`, {});
      expect({ name, status: t.status }).toEqual({ name, status: 201 });
      const p = await api(h.url, 'POST', `/v1/topics/${name}/messages`, { messages: [{ data: 'x' }] });
      expect({ name, status: p.status }).toEqual({ name, status: 200 });
      const d = await api(h.url, 'DELETE', `/v1/topics/${name}`);
      expect({ name, status: d.status }).toEqual({ name, status: 200 });
    }
  });

  test('the bad names made nothing', async () => {
    await expectNotMade();
    const topics = await api(h.url, 'GET', '/v1/topics');
    expect(topics.body.topics.map((t: any) => t.name).sort()).toEqual(['dlq', KEEP_TOPIC, 'q', 'small', 't'].sort());
  });
});

describe('topic and queue configuration', () => {
  const badTopicConfigs: Record<string, unknown>[] = [
    { retentionSeconds: 59 },
    { retentionSeconds: 1296001 },
    { retentionSeconds: 0 },
    { retentionSeconds: -60 },
    { retentionSeconds: '3600' },
    { retentionSeconds: 3600.5 },
    { retentionSeconds: null },
    { retentionSeconds: [3600] },
    { retentionSeconds: { s: 3600 } },
    { retentionSeconds: true },
    { maxMessageBytes: '1024' },
    { maxMessageBytes: -1 },
    { maxMessageBytes: null },
    { maxMessageBytes: 1.5 },
    { dedupWindowSeconds: 'x' },
    { dedupWindowSeconds: -1 },
    { dedupWindowSeconds: null },
  ];
  test('PUT and PATCH topic, PUT queue: out of range and wrong types → 400, nothing changed', async () => {
    for (const body of badTopicConfigs) {
      expectError(await api(h.url, 'PUT', '/v1/topics/never-made-t', body), 400, 'InvalidRequest');
      expectError(await api(h.url, 'PATCH', '/v1/topics/t', body), 400, 'InvalidRequest');
      expectError(await api(h.url, 'PUT', '/v1/queues/never-made-q', body), 400, 'InvalidRequest');
    }
    await expectNotMade();
    const t = await api(h.url, 'GET', '/v1/topics/t');
    expect(t.body).toMatchObject({ retentionSeconds: 345600, maxMessageBytes: 1048576, dedupWindowSeconds: 300 });
  });

  test('retentionSeconds at its bounds (60 and 1296000) is accepted', async () => {
    for (const retentionSeconds of [60, 1296000]) {
      const r = await api(h.url, 'PUT', `/v1/topics/edge-${retentionSeconds}`, { retentionSeconds });
      expect(r.status).toBe(201);
      expect(r.body.retentionSeconds).toBe(retentionSeconds);
      expect((await api(h.url, 'DELETE', `/v1/topics/edge-${retentionSeconds}`)).status).toBe(200);
    }
  });

  test('re-creating a topic: 200 with the same config, 409 AlreadyExists with another, config kept', async () => {
    expect((await api(h.url, 'PUT', '/v1/topics/re-t', { retentionSeconds: 3600 })).status).toBe(201);
    expect((await api(h.url, 'PUT', '/v1/topics/re-t', { retentionSeconds: 3600 })).status).toBe(200);
    expect((await api(h.url, 'PUT', '/v1/topics/re-t', { retentionSeconds: 3600, maxMessageBytes: 1048576 })).status).toBe(200);
    expectError(await api(h.url, 'PUT', '/v1/topics/re-t', { retentionSeconds: 7200 }), 409, 'AlreadyExists');
    expectError(await api(h.url, 'PUT', '/v1/topics/re-t', {}), 409, 'AlreadyExists');
    expect((await api(h.url, 'GET', '/v1/topics/re-t')).body.retentionSeconds).toBe(3600);
    // The default config, given explicitly or not, is the same config.
    expect((await api(h.url, 'PUT', '/v1/topics/t', { retentionSeconds: 345600, maxMessageBytes: 1048576, dedupWindowSeconds: 300 })).status).toBe(200);
    expect((await api(h.url, 'PUT', '/v1/topics/t')).status).toBe(200);
    expect((await api(h.url, 'DELETE', '/v1/topics/re-t')).status).toBe(200);
  });

  test('re-creating a queue: 200 with the same config, 409 AlreadyExists with another', async () => {
    expect((await api(h.url, 'PUT', '/v1/queues/q', {})).status).toBe(200);
    expectError(await api(h.url, 'PUT', '/v1/queues/q', { ackDeadlineSeconds: 31 }), 409, 'AlreadyExists');
    expectError(await api(h.url, 'PUT', '/v1/queues/q', { retentionSeconds: 61 }), 409, 'AlreadyExists');
    const q = await api(h.url, 'GET', '/v1/queues/q');
    expect(q.status).toBe(200);
    expect(JSON.stringify(q.body)).toContain('"ackDeadlineSeconds":30');
  });

  test('a queue with subscription fields out of range, or dead-lettering to itself → 400', async () => {
    for (const body of [{ ackDeadlineSeconds: 0 }, { ackDeadlineSeconds: 43201 }, { deadLetter: { topic: 'never-made-q' } }, { ordered: 'yes' }, { startAt: 'middle' }]) {
      expectError(await api(h.url, 'PUT', '/v1/queues/never-made-q', body), 400, 'InvalidRequest');
    }
    await expectNotMade();
  });
});

describe('subscription configuration', () => {
  const bad: Record<string, unknown>[] = [
    { ackDeadlineSeconds: 0 },
    { ackDeadlineSeconds: 43201 },
    { ackDeadlineSeconds: '30' },
    { ackDeadlineSeconds: 1.5 },
    { ackDeadlineSeconds: null },
    { ordered: 'yes' },
    { ordered: null },
    { startAt: 'middle' },
    { startAt: null },
    { startAt: 5 },
    { startAt: { seq: -1 } },
    { startAt: { seq: '1' } },
    { startAt: { time: 'yesterday' } },
    { startAt: { time: 5 } },
    { startAt: { time: '2024-13-45T00:00:00Z' } },
    { startAt: { seq: 1, time: '2024-01-01T00:00:00Z' } },
    { filter: [] },
    { filter: 'paid' },
    { filter: { tags: 'paid' } },
    { filter: { tags: [1] } },
    { filter: { tags: [''] } },
    { filter: { tags: Array.from({ length: 17 }, (_, i) => `t${i}`) } },
    { filter: { tags: ['t'.repeat(65)] } },
    { filter: { bindingKeys: Array.from({ length: 17 }, (_, i) => `k${i}`) } },
    { filter: { bindingKeys: [Array(17).fill('a').join('.')] } },
    { filter: { bindingKeys: ['a'.repeat(256)] } },
    { filter: { bogus: 1 } },
    { push: 'https://example.com/hook' },
    { push: { url: 5 } },
    { push: { url: 'not a url' } },
    { push: { url: 'ftp://example.com/hook' } },
    { push: { url: 'https://example.com/hook', format: 'xml' } },
    { push: { url: 'https://example.com/hook', bogus: 1 } },
    { push: {} },
    { retry: 'fixed' },
    { retry: { policy: 'bogus' } },
    { retry: { policy: 'fixed', bogus: 1 } },
    { retry: null },
    { deadLetter: 'dlq' },
    { deadLetter: { topic: 5 } },
    { deadLetter: { topic: 'dlq', bogus: 1 } },
    { deadLetter: { maxDeliveries: 5 } },
  ];
  test('PUT subscription: bad fields → 400, nothing made', async () => {
    for (const body of bad) {
      const r = await api(h.url, 'PUT', '/v1/subscriptions/never-made-s', { topic: 't', ...body });
      expect({ body, status: r.status, code: r.body?.error?.code }).toEqual({ body, status: 400, code: 'InvalidRequest' });
    }
    for (const body of [{}, { topic: null }, { topic: 5 }, { topic: ['t'] }, { topic: { name: 't' } }]) {
      expectError(await api(h.url, 'PUT', '/v1/subscriptions/never-made-s', body), 400, 'InvalidRequest');
    }
    await expectNotMade();
  });

  test('PATCH subscription: bad fields → 400, config unchanged', async () => {
    for (const body of bad.filter((b) => !('ordered' in b) && !('startAt' in b))) {
      const r = await api(h.url, 'PATCH', '/v1/subscriptions/s', body);
      expect({ body, status: r.status, code: r.body?.error?.code }).toEqual({ body, status: 400, code: 'InvalidRequest' });
    }
    const s = await api(h.url, 'GET', '/v1/subscriptions/s');
    expect(s.body).toMatchObject({ topic: 't', ackDeadlineSeconds: 30, push: null, filter: null, deadLetter: null });
  });

  test('a subscription whose deadLetter topic is its own topic → 400, on PUT and PATCH', async () => {
    expectError(await api(h.url, 'PUT', '/v1/subscriptions/never-made-s', { topic: 't', deadLetter: { topic: 't' } }), 400, 'InvalidRequest');
    expectError(await api(h.url, 'PATCH', '/v1/subscriptions/s', { deadLetter: { topic: 't', maxDeliveries: 3 } }), 400, 'InvalidRequest');
    expectError(await api(h.url, 'PUT', '/v1/queues/never-made-q', { deadLetter: { topic: 'never-made-q' } }), 400, 'InvalidRequest');
    await expectNotMade();
  });

  test('push URLs to loopback, private, link-local or metadata addresses are refused at create and PATCH with 400', async () => {
    try {
      for (const url of ['http://127.0.0.1:9/hook', 'http://10.1.2.3/hook', 'http://192.168.0.1/hook', 'http://169.254.169.254/latest/meta-data', 'http://[::1]/hook']) {
        const c = await api(h.url, 'PUT', '/v1/subscriptions/ssrf-s', { topic: 't', push: { url } });
        await api(h.url, 'DELETE', '/v1/subscriptions/ssrf-s');
        expect({ url, status: c.status, code: c.body?.error?.code }).toEqual({ url, status: 400, code: 'InvalidRequest' });
        const p = await api(h.url, 'PATCH', '/v1/subscriptions/s', { push: { url } });
        expect({ url, status: p.status, code: p.body?.error?.code }).toEqual({ url, status: 400, code: 'InvalidRequest' });
      }
    } finally {
      // Leave s as it was, whatever happened above.
      await api(h.url, 'PATCH', '/v1/subscriptions/s', { push: null });
      await api(h.url, 'DELETE', '/v1/subscriptions/ssrf-s');
    }
  });

  test('re-creating a subscription: 200 with the same config, 409 AlreadyExists with another', async () => {
    const body = { topic: 't', ackDeadlineSeconds: 20, filter: { tags: ['a'] }, deadLetter: { topic: 'dlq', maxDeliveries: 5 } };
    expect((await api(h.url, 'PUT', '/v1/subscriptions/re-s', body)).status).toBe(201);
    expect((await api(h.url, 'PUT', '/v1/subscriptions/re-s', body)).status).toBe(200);
    // The same config with its fields in another order is the same config.
    const reordered = { deadLetter: { maxDeliveries: 5, topic: 'dlq' }, filter: { tags: ['a'] }, ackDeadlineSeconds: 20, topic: 't' };
    expect((await api(h.url, 'PUT', '/v1/subscriptions/re-s', reordered)).status).toBe(200);
    expectError(await api(h.url, 'PUT', '/v1/subscriptions/re-s', { ...body, ackDeadlineSeconds: 21 }), 409, 'AlreadyExists');
    expectError(await api(h.url, 'PUT', '/v1/subscriptions/re-s', { ...body, topic: KEEP_TOPIC }), 409, 'AlreadyExists');
    expectError(await api(h.url, 'PUT', '/v1/subscriptions/re-s', { topic: 't' }), 409, 'AlreadyExists');
    const s = await api(h.url, 'GET', '/v1/subscriptions/re-s');
    expect(s.body).toMatchObject({ topic: 't', ackDeadlineSeconds: 20, deadLetter: { topic: 'dlq', maxDeliveries: 5 } });
    expect((await api(h.url, 'DELETE', '/v1/subscriptions/re-s')).status).toBe(200);
  });

  test('GET /v1/subscriptions?topic= with bad queries → 400', async () => {
    for (const q of ['?topic=', '?topic=-x', '?topic=a&topic=b', `?topic=${'a'.repeat(129)}`]) {
      expectError(await api(h.url, 'GET', `/v1/subscriptions${q}`), 400, 'InvalidRequest');
    }
    const ok = await api(h.url, 'GET', '/v1/subscriptions?topic=t');
    expect(ok.status).toBe(200);
    expect(ok.body.subscriptions.map((s: any) => s.name)).toEqual(['s']);
  });
});

describe('publish', () => {
  const msg = (m: Record<string, unknown>) => ({ messages: [{ data: 'x', ...m }] });
  const attrs = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
  const badBodies: [string, unknown][] = [
    ['0 messages', { messages: [] }],
    ['1001 messages', { messages: Array.from({ length: 1001 }, () => ({ data: 'x' })) }],
    ['no messages field', {}],
    ['messages null', { messages: null }],
    ['messages an object', { messages: { data: 'x' } }],
    ['messages a string', { messages: 'x' }],
    ['a message null', { messages: [null] }],
    ['a message a string', { messages: ['x'] }],
    ['a message an array', { messages: [['x']] }],
    ['data missing', { messages: [{}] }],
    ['data null', msg({ data: null })],
    ['data a number', msg({ data: 5 })],
    ['data an object', msg({ data: { a: 1 } })],
    ['encoding hex', msg({ encoding: 'hex' })],
    ['encoding null', msg({ encoding: null })],
    ['33 attributes', msg({ attributes: attrs(33) })],
    ['attribute value of 1025', msg({ attributes: { a: 'v'.repeat(1025) } })],
    ['attribute name of 129', msg({ attributes: { ['n'.repeat(129)]: 'v' } })],
    ['empty attribute name', msg({ attributes: { '': 'v' } })],
    ['attribute value a number', msg({ attributes: { a: 1 } })],
    ['attribute value null', msg({ attributes: { a: null } })],
    ['attributes an array', msg({ attributes: ['a'] })],
    ['attributes a string', msg({ attributes: 'a=b' })],
    ['17 tags', msg({ tags: Array.from({ length: 17 }, (_, i) => `t${i}`) })],
    ['a tag of 65', msg({ tags: ['t'.repeat(65)] })],
    ['an empty tag', msg({ tags: [''] })],
    ['tags a string', msg({ tags: 'a' })],
    ['a tag a number', msg({ tags: [1] })],
    ['routingKey of 17 words', msg({ routingKey: Array(17).fill('w').join('.') })],
    ['routingKey of 256 characters', msg({ routingKey: 'r'.repeat(256) })],
    ['routingKey a number', msg({ routingKey: 5 })],
    ['orderingKey of 129', msg({ orderingKey: 'o'.repeat(129) })],
    ['orderingKey a number', msg({ orderingKey: 7 })],
    ['dedupId of 129', msg({ dedupId: 'd'.repeat(129) })],
    ['dedupId null', msg({ dedupId: null })],
    ['delaySeconds 901', msg({ delaySeconds: 901 })],
    ['delaySeconds -1', msg({ delaySeconds: -1 })],
    ['delaySeconds a string', msg({ delaySeconds: '5' })],
    ['delaySeconds 1.5', msg({ delaySeconds: 1.5 })],
    ['an unknown message field', msg({ priority: 1 })],
    ['one bad message among good ones', { messages: [{ data: 'ok' }, { data: 'ok', tags: [''] }, { data: 'ok' }] }],
  ];
  for (const [what, body] of badBodies) {
    test(`${what} → 400 on topic and queue publish, nothing stored`, async () => {
      const beforeT = await lastSeq('t');
      const beforeQ = await lastSeq('q');
      expectError(await api(h.url, 'POST', '/v1/topics/t/messages', body), 400, 'InvalidRequest');
      expectError(await api(h.url, 'POST', '/v1/queues/q/messages', body), 400, 'InvalidRequest');
      expect(await lastSeq('t')).toBe(beforeT);
      expect(await lastSeq('q')).toBe(beforeQ);
    });
  }

  test('invalid base64 with encoding base64 → 400, nothing stored', async () => {
    const before = await lastSeq('t');
    for (const data of ['!!!!', 'YW=j', 'Y===', 'not base64 at all!', 'YWJj*', 'YW Jj', '@@@@']) {
      const r = await api(h.url, 'POST', '/v1/topics/t/messages', msg({ data, encoding: 'base64' }));
      expect({ data, status: r.status, code: r.body?.error?.code }).toEqual({ data, status: 400, code: 'InvalidRequest' });
    }
    expect(await lastSeq('t')).toBe(before);
  });

  test('values at the limits are accepted', async () => {
    const r = await api(h.url, 'POST', '/v1/topics/t/messages', {
      messages: [
        { data: 'x', attributes: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, 'v'.repeat(1024)])) },
        { data: 'x', attributes: { ['n'.repeat(128)]: '' } },
        { data: 'x', tags: Array.from({ length: 16 }, (_, i) => `${i}`.padEnd(64, 't')) },
        { data: 'x', routingKey: Array(16).fill('w').join('.') },
        { data: 'x', routingKey: 'r'.repeat(255) },
        { data: 'x', orderingKey: 'o'.repeat(128), dedupId: 'd'.repeat(128) },
        { data: 'x', delaySeconds: 900 },
        { data: 'YWJj', encoding: 'base64' },
        { data: '', encoding: 'utf8' },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.body.results).toHaveLength(9);
    const many = await api(h.url, 'POST', '/v1/topics/t/messages', { messages: Array.from({ length: 1000 }, (_, i) => ({ data: `m${i}` })) });
    expect(many.status).toBe(200);
    expect(many.body.results).toHaveLength(1000);
  });

  test("a message over the topic's maxMessageBytes → 413 PayloadTooLarge, nothing of the batch stored", async () => {
    const before = await lastSeq('small');
    const over: unknown[] = [
      msg({ data: 'x'.repeat(17) }),
      msg({ data: 'é'.repeat(9) }), // 9 characters, 18 bytes
      msg({ data: Buffer.alloc(17, 7).toString('base64'), encoding: 'base64' }),
      { messages: [{ data: 'ok' }, { data: 'x'.repeat(17) }, { data: 'ok' }] },
    ];
    for (const body of over) expectError(await api(h.url, 'POST', '/v1/topics/small/messages', body), 413, 'PayloadTooLarge');
    expect(await lastSeq('small')).toBe(before);
    const ok = await api(h.url, 'POST', '/v1/topics/small/messages', {
      messages: [{ data: 'x'.repeat(16) }, { data: Buffer.alloc(16, 7).toString('base64'), encoding: 'base64' }],
    });
    expect(ok.status).toBe(200);
    expect(await lastSeq('small')).toBe(before + 2);
  });

  test('a body over 10 MiB → 413 PayloadTooLarge on publish and elsewhere, server alive', async () => {
    const before = await lastSeq('t');
    const big = JSON.stringify({ messages: [{ data: 'x'.repeat(10 * 1024 * 1024) }] });
    const json = { 'content-type': 'application/json' };
    expectError(await rawRequest('POST', '/v1/topics/t/messages', big, json), 413, 'PayloadTooLarge');
    expectError(await rawRequest('POST', '/v1/queues/q/messages', big, json), 413, 'PayloadTooLarge');
    const many = JSON.stringify({ messages: Array.from({ length: 11 }, () => ({ data: 'y'.repeat(1024 * 1024 - 100) })) });
    expectError(await rawRequest('POST', '/v1/topics/t/messages', many, json), 413, 'PayloadTooLarge');
    expectError(await rawRequest('PUT', '/v1/topics/never-made-t', `{"x":"${'z'.repeat(10 * 1024 * 1024)}"}`, json), 413, 'PayloadTooLarge');
    expectError(await rawRequest('POST', '/v1/subscriptions/s/pull', 'w'.repeat(10 * 1024 * 1024 + 1), json), 413, 'PayloadTooLarge');
    expect(await lastSeq('t')).toBe(before);
    expect((await api(h.url, 'GET', '/healthz')).status).toBe(200);
    await expectNotMade();
  });
});

describe('pull, ack, nack, modify-ack-deadline, seek, redrive', () => {
  const consumerPrefixes = ['/v1/subscriptions/s', '/v1/queues/q'];

  for (const prefix of consumerPrefixes) {
    test(`${prefix}/pull: out of range and wrong types → 400`, async () => {
      for (const body of [
        { max: 0 },
        { max: 1001 },
        { max: -1 },
        { max: '10' },
        { max: 1.5 },
        { max: null },
        { waitSeconds: 31 },
        { waitSeconds: -1 },
        { waitSeconds: '1' },
        { waitSeconds: null },
        { ackDeadlineSeconds: 0 },
        { ackDeadlineSeconds: 43201 },
        { ackDeadlineSeconds: '30' },
      ]) {
        const r = await api(h.url, 'POST', `${prefix}/pull`, body);
        expect({ body, status: r.status, code: r.body?.error?.code }).toEqual({ body, status: 400, code: 'InvalidRequest' });
      }
    });

    test(`${prefix}/ack|nack|modify-ack-deadline: bad ackIds → 400`, async () => {
      const badIds: unknown[] = [[], Array.from({ length: 1001 }, (_, i) => `id${i}`), ['a'.repeat(257)], [''], [1], [null], [['x']], 'x', null, { id: 'x' }];
      for (const verb of ['ack', 'nack', 'modify-ack-deadline']) {
        for (const ackIds of badIds) {
          const body = verb === 'modify-ack-deadline' ? { ackIds, seconds: 10 } : { ackIds };
          const r = await api(h.url, 'POST', `${prefix}/${verb}`, body);
          expect({ verb, ackIds, status: r.status, code: r.body?.error?.code }).toEqual({ verb, ackIds, status: 400, code: 'InvalidRequest' });
        }
        const r = await api(h.url, 'POST', `${prefix}/${verb}`, verb === 'modify-ack-deadline' ? { seconds: 10 } : {});
        expectError(r, 400, 'InvalidRequest');
      }
      for (const body of [{ ackIds: ['x'], delaySeconds: -1 }, { ackIds: ['x'], delaySeconds: '1' }, { ackIds: ['x'], delaySeconds: 1.5 }]) {
        expectError(await api(h.url, 'POST', `${prefix}/nack`, body), 400, 'InvalidRequest');
      }
      for (const body of [{ ackIds: ['x'] }, { ackIds: ['x'], seconds: -1 }, { ackIds: ['x'], seconds: '60' }, { ackIds: ['x'], seconds: null }]) {
        expectError(await api(h.url, 'POST', `${prefix}/modify-ack-deadline`, body), 400, 'InvalidRequest');
      }
    });

    test(`${prefix}/ack|nack|modify-ack-deadline: unknown or garbage ids of 1–256 characters → 200, all listed in invalid`, async () => {
      const garbage = [
        'x',
        'a'.repeat(256),
        '1.1',
        '0.1',
        '1.0',
        '-1.1',
        'zzzzzzzzzzzz.zzzzzzzzzzzz',
        '99999999999999999999.1',
        '1.1.1',
        '.',
        ' ',
        'é',
        '😀',
        '\u0000',
        '1.1\n',
        '__proto__',
        'constructor',
        '{"seq":1}',
        '%ZZ',
        '9'.repeat(256),
        `${'1'.repeat(11)}.${'z'.repeat(244)}`,
      ];
      for (const verb of ['ack', 'nack', 'modify-ack-deadline']) {
        const body = verb === 'modify-ack-deadline' ? { ackIds: garbage, seconds: 10 } : { ackIds: garbage };
        const r = await api(h.url, 'POST', `${prefix}/${verb}`, body);
        expect({ verb, status: r.status }).toEqual({ verb, status: 200 });
        expect(r.body.invalid).toEqual(garbage);
        expect(Object.values(r.body).filter((v) => typeof v === 'number')).toEqual([0]);
      }
      const thousand = Array.from({ length: 1000 }, (_, i) => `garbage-${i}`);
      const r = await api(h.url, 'POST', `${prefix}/ack`, { ackIds: thousand });
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ acked: 0, invalid: thousand });
    });
  }

  test('an expired ackId is listed in invalid by ack, nack and modify-ack-deadline; the next delivery acks', async () => {
    expect((await api(h.url, 'PUT', '/v1/topics/exp-t', {})).status).toBe(201);
    expect((await api(h.url, 'PUT', '/v1/subscriptions/exp-s', { topic: 'exp-t', startAt: 'earliest' })).status).toBe(201);
    expect((await api(h.url, 'POST', '/v1/topics/exp-t/messages', { messages: [{ data: 'once' }] })).status).toBe(200);
    const first = await api(h.url, 'POST', '/v1/subscriptions/exp-s/pull', { max: 1, ackDeadlineSeconds: 1 });
    expect(first.body.messages).toHaveLength(1);
    const oldId: string = first.body.messages[0].ackId;
    const pulledAt = Date.now();
    // The lease is 1 s: wait it out (a deadline is time; nothing else to poll for).
    await eventually(async () => {
      const s = await api(h.url, 'GET', '/v1/subscriptions/exp-s');
      return Date.now() - pulledAt > 1100 && s.body.inFlight === 0;
    }, 10_000, 50);
    expect((await api(h.url, 'POST', '/v1/subscriptions/exp-s/ack', { ackIds: [oldId] })).body).toEqual({ acked: 0, invalid: [oldId] });
    const nack = await api(h.url, 'POST', '/v1/subscriptions/exp-s/nack', { ackIds: [oldId] });
    expect(nack.status).toBe(200);
    expect(nack.body.invalid).toEqual([oldId]);
    const mod = await api(h.url, 'POST', '/v1/subscriptions/exp-s/modify-ack-deadline', { ackIds: [oldId], seconds: 60 });
    expect(mod.status).toBe(200);
    expect(mod.body.invalid).toEqual([oldId]);
    // Redelivered: the old id stays invalid, the new one acks.
    const second = await api(h.url, 'POST', '/v1/subscriptions/exp-s/pull', { max: 1, waitSeconds: 5 });
    expect(second.body.messages).toHaveLength(1);
    expect(second.body.messages[0]).toMatchObject({ data: 'once', deliveryAttempt: 2 });
    const newId: string = second.body.messages[0].ackId;
    expect(newId).not.toBe(oldId);
    expect((await api(h.url, 'POST', '/v1/subscriptions/exp-s/ack', { ackIds: [oldId, newId] })).body).toEqual({ acked: 1, invalid: [oldId] });
    expect((await api(h.url, 'POST', '/v1/subscriptions/exp-s/ack', { ackIds: [newId] })).body).toEqual({ acked: 0, invalid: [newId] });
  });

  test('seek with a bad time string or bad seq → 400, cursor untouched', async () => {
    const before = await api(h.url, 'GET', '/v1/subscriptions/s');
    for (const body of [
      { time: 'yesterday' },
      { time: '' },
      { time: '2024-13-45T00:00:00Z' },
      { time: '12345' },
      { time: 'T10:00:00Z' },
      { time: '2024-01-01T25:61:00Z' },
      { time: 5 },
      { time: null },
      { seq: -1 },
      { seq: '1' },
      { seq: 1.5 },
      { seq: null },
      { seq: 1, time: '2024-01-01T00:00:00Z' },
      {},
      { bogus: 1 },
      { seq: 1, bogus: 1 },
    ]) {
      const r = await api(h.url, 'POST', '/v1/subscriptions/s/seek', body);
      expect({ body, status: r.status, code: r.body?.error?.code }).toEqual({ body, status: 400, code: 'InvalidRequest' });
    }
    const after = await api(h.url, 'GET', '/v1/subscriptions/s');
    expect(after.body.backlog).toBe(before.body.backlog);
  });

  test('redrive with bad max → 400', async () => {
    for (const body of [{ max: -1 }, { max: '10' }, { max: 1.5 }, { max: null }, { bogus: 1 }]) {
      expectError(await api(h.url, 'POST', '/v1/subscriptions/s/redrive', body), 400, 'InvalidRequest');
    }
    const ok = await api(h.url, 'POST', '/v1/subscriptions/s/redrive', {});
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ redriven: 0 });
  });
});

describe('404s', () => {
  test('TopicNotFound for every topic route and for subscriptions of a missing topic', async () => {
    for (const [method, path, body] of [
      ['GET', '/v1/topics/nope', undefined],
      ['PATCH', '/v1/topics/nope', { retentionSeconds: 3600 }],
      ['DELETE', '/v1/topics/nope', undefined],
      ['POST', '/v1/topics/nope/messages', { messages: [{ data: 'x' }] }],
      ['POST', '/v1/queues/nope/messages', { messages: [{ data: 'x' }] }],
      ['DELETE', '/v1/queues/nope', undefined],
      ['PUT', '/v1/subscriptions/never-made-s', { topic: 'nope' }],
      ['PUT', '/v1/subscriptions/never-made-s', { topic: 't', deadLetter: { topic: 'nope' } }],
      ['PATCH', '/v1/subscriptions/s', { deadLetter: { topic: 'nope' } }],
      ['GET', '/v1/subscriptions?topic=nope', undefined],
    ] as [string, string, unknown][]) {
      const r = await api(h.url, method, path, body);
      expect({ route: `${method} ${path}`, status: r.status, body: r.body }).toEqual({
        route: `${method} ${path}`,
        status: 404,
        body: { error: { code: 'TopicNotFound', message: expect.any(String) } },
      });
    }
    await expectNotMade();
  });

  test('SubscriptionNotFound for every subscription route', async () => {
    for (const prefix of ['/v1/subscriptions/nope', '/v1/queues/nope']) {
      for (const [method, suffix, body] of [
        ['POST', '/pull', {}],
        ['POST', '/ack', { ackIds: ['x'] }],
        ['POST', '/nack', { ackIds: ['x'] }],
        ['POST', '/modify-ack-deadline', { ackIds: ['x'], seconds: 10 }],
      ] as [string, string, unknown][]) {
        expectError(await api(h.url, method, prefix + suffix, body), 404, 'SubscriptionNotFound');
      }
    }
    for (const [method, path, body] of [
      ['GET', '/v1/subscriptions/nope', undefined],
      ['PATCH', '/v1/subscriptions/nope', { ackDeadlineSeconds: 10 }],
      ['DELETE', '/v1/subscriptions/nope', undefined],
      ['POST', '/v1/subscriptions/nope/seek', { seq: 1 }],
      ['POST', '/v1/subscriptions/nope/redrive', {}],
    ] as [string, string, unknown][]) {
      expectError(await api(h.url, method, path, body), 404, 'SubscriptionNotFound');
    }
    expectError(await api(h.url, 'GET', '/v1/queues/nope'), 404, ['TopicNotFound', 'SubscriptionNotFound']);
  });

  test('NotFound for unknown routes and wrong methods', async () => {
    for (const [method, path] of [
      ['GET', '/'],
      ['GET', '/v1'],
      ['GET', '/v1/nothing'],
      ['GET', '/v2/topics'],
      ['POST', '/v1/topics'],
      ['DELETE', '/v1/topics'],
      ['GET', '/v1/topics/t/nothing'],
      ['PUT', '/v1/topics/t/messages'],
      ['GET', '/v1/topics/t/messages'],
      ['POST', '/v1/topics/t'],
      ['GET', '/v1/subscriptions/s/pull'],
      ['DELETE', '/v1/subscriptions/s/ack'],
      ['POST', '/v1/subscriptions/s/unknown-verb'],
      ['OPTIONS', '/v1/topics/t'],
      ['GET', '/V1/TOPICS'],
      ['GET', '//v1/topics'],
    ]) {
      expectError(await api(h.url, method!, path!), 404, 'NotFound');
    }
    expect((await api(h.url, 'GET', '/v1/topics/t')).status).toBe(200);
  });
});

describe('requests the HTTP layer refuses before routing', () => {
  // API.md: every error is {"error": {"code", "message"}} with a status of its table.
  const tableStatus: Record<string, number> = { InvalidRequest: 400, NotFound: 404, PayloadTooLarge: 413 };

  test('an unknown method → 400 InvalidRequest in the contract shape', async () => {
    const r = await rawRequest('FOO', '/v1/topics', '');
    expectError(r, 400, 'InvalidRequest');
  });

  test('a request line over the header limit → a 4xx of the table, in the contract shape', async () => {
    const r = await rawRequest('GET', `/v1/topics/${'a'.repeat(20_000)}`, '');
    expect(r.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
    expect(tableStatus[r.body.error.code]).toBe(r.status);
  });

  test('the node still serves', async () => {
    expect((await api(h.url, 'GET', '/healthz')).status).toBe(200);
  });
});

describe('nothing stored is lost', () => {
  test('the node is alive, the protected topic is unchanged and its subscription still pulls every message', async () => {
    expect(h.child.exitCode).toBeNull();
    expect((await api(h.url, 'GET', '/healthz')).status).toBe(200);
    const t = await api(h.url, 'GET', `/v1/topics/${KEEP_TOPIC}`);
    expect(t.body).toMatchObject({ messages: KEEP_MESSAGES.length, firstSeq: 1, lastSeq: keepLastSeq });
    const s = await api(h.url, 'GET', `/v1/subscriptions/${KEEP_SUB}`);
    expect(s.body).toMatchObject({ backlog: KEEP_MESSAGES.length, inFlight: 0, acked: 0, delivered: 0 });
    const pulled = await api(h.url, 'POST', `/v1/subscriptions/${KEEP_SUB}/pull`, { max: 100 });
    expect(pulled.status).toBe(200);
    expect(pulled.body.messages.map((m: any) => ({ seq: m.seq, data: m.data, encoding: m.encoding }))).toEqual(
      KEEP_MESSAGES.map((m, i) => ({ seq: i + 1, data: m.data, encoding: m.encoding ?? 'utf8' })),
    );
    expect(pulled.body.messages[0]).toMatchObject({ attributes: { n: '1' }, tags: ['a'] });
    expect(pulled.body.messages[1]).toMatchObject({ routingKey: 'x.y' });
    expect(pulled.body.messages[2]).toMatchObject({ orderingKey: 'k' });
    const acked = await api(h.url, 'POST', `/v1/subscriptions/${KEEP_SUB}/ack`, { ackIds: pulled.body.messages.map((m: any) => m.ackId) });
    expect(acked.body).toEqual({ acked: KEEP_MESSAGES.length, invalid: [] });
    // A dedupId seen before is still remembered: no new message.
    const dup = await api(h.url, 'POST', `/v1/topics/${KEEP_TOPIC}/messages`, { messages: [{ data: 'again', dedupId: 'keep-3' }] });
    expect(dup.body.results[0]).toMatchObject({ seq: 3, duplicate: true });
  });
});
