// Goal: with authentication on, every API route and WebSocket needs a bearer token with the right
// scope: no token or a bad one is 401 Unauthenticated, a token without the scope 403 Forbidden; tokens
// are created (shown once) and revoked by admins, stored hashed, and survive a restart. Health,
// readiness and metrics stay open. Also: the node refuses to start with auth on and no admin token,
// and auth defaults to off on loopback with a warning line.
// Method: real node processes; every refusal is its own assertion.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { api, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';
import { WsClient, type Refusal } from '../helpers/ws-client.js';

const ADMIN = 'admin-token-for-tests-0123456789';
let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald({ args: ['--auth', 'on', '--admin-token', ADMIN] });
});
afterAll(async () => {
  await h.stop();
  removeDataDir(h.dataDir);
});

const as = (token: string | undefined) => (method: string, path: string, body?: unknown) =>
  api(h.url, method, path, body, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
const admin = as(ADMIN);

async function token(scopes: string[], name = 'test'): Promise<string> {
  const r = await admin('POST', '/v1/tokens', { name, scopes });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  expect(r.body.token).toMatch(/^hrd_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
  return r.body.token;
}

function expectRefused(r: { status: number; body: any }, status: 401 | 403): void {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.body.error.code).toBe(status === 401 ? 'Unauthenticated' : 'Forbidden');
}

describe('authentication on', () => {
  beforeAll(async () => {
    for (const t of ['orders-eu', 'orders-us', 'audit']) expect((await admin('PUT', `/v1/topics/${t}`, {})).status).toBe(201);
    for (const [s, t] of [['billing', 'orders-eu'], ['shipping', 'orders-us']]) {
      expect((await admin('PUT', `/v1/subscriptions/${s}`, { topic: t, startAt: 'earliest' })).status).toBe(201);
    }
  });

  test('no token, a malformed header, an unknown or mistyped token: 401 on every kind of route', async () => {
    const good = await token(['admin']);
    const mistyped = good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A');
    for (const client of [as(undefined), as('nope'), as(`hrd_${'0'.repeat(16)}_${'x'.repeat(43)}`), as(mistyped)]) {
      expectRefused(await client('GET', '/v1/topics'), 401);
      expectRefused(await client('POST', '/v1/topics/orders-eu/messages', { messages: [{ data: 'x' }] }), 401);
      expectRefused(await client('POST', '/v1/subscriptions/billing/pull', {}), 401);
      expectRefused(await client('GET', '/v1/cluster'), 401);
      expectRefused(await client('GET', '/v1/no-such-route'), 401);
    }
    const basic = await api(h.url, 'GET', '/v1/topics', undefined, { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
    expectRefused(basic, 401);
  });

  test('health, readiness and metrics are open', async () => {
    expect((await api(h.url, 'GET', '/healthz')).status).toBe(200);
    expect((await api(h.url, 'GET', '/readyz')).status).toBe(200);
    expect((await api(h.url, 'GET', '/metrics')).status).toBe(200);
  });

  test('a publish token publishes to the topics its pattern names, and nothing else', async () => {
    const t = as(await token(['publish:orders-*']));
    const ok = await t('POST', '/v1/topics/orders-eu/messages', { messages: [{ data: 'a' }] });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect((await t('POST', '/v1/topics/orders-us/messages', { messages: [{ data: 'b' }] })).status).toBe(200);
    expect((await t('GET', '/v1/topics/orders-eu')).status).toBe(200);
    expectRefused(await t('POST', '/v1/topics/audit/messages', { messages: [{ data: 'c' }] }), 403);
    expectRefused(await t('PUT', '/v1/topics/orders-new', {}), 403);
    expectRefused(await t('DELETE', '/v1/topics/orders-eu'), 403);
    expectRefused(await t('POST', '/v1/subscriptions/billing/pull', {}), 403);
    expectRefused(await t('GET', '/v1/topics'), 403);
    expectRefused(await t('POST', '/v1/tokens', { scopes: ['admin'] }), 403);
  });

  test('a consume token pulls, acks and nacks its subscription only, and cannot publish or seek', async () => {
    await admin('POST', '/v1/topics/orders-eu/messages', { messages: [{ data: 'for billing' }] });
    const t = as(await token(['consume:billing']));
    const pulled = await t('POST', '/v1/subscriptions/billing/pull', { max: 10 });
    expect(pulled.status, JSON.stringify(pulled.body)).toBe(200);
    expect(pulled.body.messages.length).toBeGreaterThan(0);
    const ack = await t('POST', '/v1/subscriptions/billing/ack', { ackIds: pulled.body.messages.map((m: any) => m.ackId) });
    expect(ack.status).toBe(200);
    expect((await t('GET', '/v1/subscriptions/billing')).status).toBe(200);
    expectRefused(await t('POST', '/v1/subscriptions/shipping/pull', {}), 403);
    expectRefused(await t('POST', '/v1/topics/orders-eu/messages', { messages: [{ data: 'x' }] }), 403);
    expectRefused(await t('POST', '/v1/subscriptions/billing/seek', { seq: 1 }), 403);
    expectRefused(await t('PATCH', '/v1/subscriptions/billing', { ackDeadlineSeconds: 5 }), 403);
  });

  test('tokens are listed without secrets, and a revoked token is refused at once', async () => {
    const secret = await token(['publish:audit'], 'to-revoke');
    const t = as(secret);
    expect((await t('POST', '/v1/topics/audit/messages', { messages: [{ data: 'x' }] })).status).toBe(200);
    const list = await admin('GET', '/v1/tokens');
    expect(list.status).toBe(200);
    const entry = list.body.tokens.find((x: any) => x.name === 'to-revoke');
    expect(entry).toMatchObject({ scopes: ['publish:audit'] });
    // The secret part is everything after `hrd_<id>_` (it may itself hold an underscore).
    const secretPart = /^hrd_[0-9a-f]{16}_(.{43})$/.exec(secret)![1]!;
    expect(JSON.stringify(list.body)).not.toContain(secretPart);
    expect((await admin('DELETE', `/v1/tokens/${entry.id}`)).status).toBe(200);
    expectRefused(await t('POST', '/v1/topics/audit/messages', { messages: [{ data: 'x' }] }), 401);
    expect((await admin('DELETE', `/v1/tokens/${entry.id}`)).status).toBe(404);
  });

  test('bad token requests are 400s', async () => {
    for (const body of [{}, { scopes: [] }, { scopes: ['root'] }, { scopes: ['publish:'] }, { scopes: ['publish:a b'] }, { scopes: ['admin'], extra: 1 }]) {
      const r = await admin('POST', '/v1/tokens', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe('InvalidRequest');
    }
    expect((await admin('DELETE', '/v1/tokens/not-an-id')).status).toBe(400);
  });

  test('WebSocket consumers need consume on the subscription, tails need tail on the topic', async () => {
    const refused = async (path: string, tokenValue?: string): Promise<Refusal> => {
      try {
        const c = await WsClient.open(h.url, path, tokenValue ? { headers: { authorization: `Bearer ${tokenValue}` } } : {});
        c.ws.terminate();
        throw new Error(`${path} was accepted`);
      } catch (e) {
        const r = (e as { refusal?: Refusal }).refusal;
        if (!r) throw e;
        return r;
      }
    };
    expect((await refused('/v1/subscriptions/billing/ws')).status).toBe(401);
    const publisher = await token(['publish:*']);
    expect((await refused('/v1/subscriptions/billing/ws', publisher)).status).toBe(403);
    expect((await refused('/v1/topics/audit/ws', publisher)).status).toBe(403);
    const consumer = await token(['consume:billing', 'tail:audit']);
    const c = await WsClient.open(h.url, '/v1/subscriptions/billing/ws', { headers: { authorization: `Bearer ${consumer}` } });
    c.ws.close();
    const tail = await WsClient.open(h.url, '/v1/topics/audit/ws?from=1', { headers: { authorization: `Bearer ${consumer}` } });
    tail.ws.close();
  });

  test('a publishing socket needs publish on its topic, and every frame is checked as a request is', async () => {
    const headers = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
    let refusal = await WsClient.refusal(h.url, '/v1/topics/audit/messages/ws');
    expect(refusal.status).toBe(401);
    refusal = await WsClient.open(h.url, '/v1/topics/audit/messages/ws', headers(await token(['consume:*', 'tail:*']))).then(
      (c) => (c.ws.terminate(), undefined as unknown as Refusal),
      (e) => (e as { refusal: Refusal }).refusal,
    );
    expect(refusal.status).toBe(403);
    const created = await admin('POST', '/v1/tokens', { name: 'ws-publisher', scopes: ['publish:audit'], rateLimitPerSecond: 3 });
    const c = await WsClient.open(h.url, '/v1/topics/audit/messages/ws', headers(created.body.token));
    // The upgrade spent one request of 3 a second: a burst of frames runs into the limit.
    for (let i = 0; i < 6; i++) c.send({ type: 'publish', id: i, messages: [{ data: `w${i}` }] });
    const answers = await c.take(6);
    expect(answers.filter((f) => f.type === 'published').length).toBeGreaterThanOrEqual(1);
    expect(answers.find((f) => f.type === 'error')).toMatchObject({ code: 'RateLimited' });
    // Revoked: the next frame is refused, on the socket that is still open.
    expect((await admin('DELETE', `/v1/tokens/${created.body.id}`)).status).toBe(200);
    c.send({ type: 'publish', id: 'after-revoke', messages: [{ data: 'no' }] });
    expect(await c.next('error')).toMatchObject({ id: 'after-revoke', code: 'Unauthenticated' });
    c.ws.close();
  });

  test('tokens survive a restart (they are in the replicated state, hashed)', async () => {
    const secret = await token(['publish:audit'], 'durable');
    await h.stop();
    h = await startHerald({ dataDir: h.dataDir, args: ['--auth', 'on', '--admin-token', ADMIN] });
    expect((await as(secret)('POST', '/v1/topics/audit/messages', { messages: [{ data: 'after restart' }] })).status).toBe(200);
    expectRefused(await as(undefined)('GET', '/v1/topics'), 401);
  });
});

describe('configuration', () => {
  test('auth on without an admin token does not start; loopback defaults to off with a warning', async () => {
    await expect(startHerald({ args: ['--auth', 'on'] })).rejects.toThrow(/admin-token/);
    await expect(startHerald({ args: ['--auth', 'on', '--admin-token', 'short'] })).rejects.toThrow(/at least 24/);
    const open = await startHerald();
    try {
      expect(open.output()).toMatch(/authentication is OFF/);
      expect((await api(open.url, 'GET', '/v1/topics')).status).toBe(200);
    } finally {
      await open.stop();
      removeDataDir(open.dataDir);
    }
  });
});

describe('per-token limits', () => {
  test('a token over its rate gets 429 RateLimited with Retry-After, and is let through again later', async () => {
    const created = await admin('POST', '/v1/tokens', { scopes: ['publish:audit'], rateLimitPerSecond: 5 });
    expect(created.body).toMatchObject({ rateLimitPerSecond: 5, webSocketsMax: 100 });
    const t = as(created.body.token);
    const statuses: number[] = [];
    let limited: { status: number; body: any; headers: Headers } | undefined;
    for (let i = 0; i < 20 && !limited; i++) {
      const r = await t('POST', '/v1/topics/audit/messages', { messages: [{ data: `r${i}` }] });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(5);
    expect(limited?.body.error.code).toBe('RateLimited');
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // The bucket refills at 5 per second: within a second or so one more request goes through.
    const deadline = Date.now() + 3000;
    let again = 429;
    while (again === 429 && Date.now() < deadline) {
      again = (await t('POST', '/v1/topics/audit/messages', { messages: [{ data: 'later' }] })).status;
      if (again === 429) await new Promise((r) => setTimeout(r, 100));
    }
    expect(again).toBe(200);
    // Another token is not held back by this one's limit.
    expect((await as(await token(['publish:audit']))('POST', '/v1/topics/audit/messages', { messages: [{ data: 'x' }] })).status).toBe(200);
  });

  test('a token holds at most webSocketsMax sockets on a node; a closed one frees its place', async () => {
    const created = await admin('POST', '/v1/tokens', { scopes: ['consume:billing', 'tail:audit'], webSocketsMax: 2 });
    const headers = { authorization: `Bearer ${created.body.token}` };
    const a = await WsClient.open(h.url, '/v1/subscriptions/billing/ws', { headers });
    const b = await WsClient.open(h.url, '/v1/topics/audit/ws', { headers });
    let refusal: Refusal | undefined;
    try {
      (await WsClient.open(h.url, '/v1/subscriptions/billing/ws', { headers })).ws.terminate();
    } catch (e) {
      refusal = (e as { refusal?: Refusal }).refusal;
    }
    expect(refusal?.status).toBe(429);
    expect(refusal?.body.error.code).toBe('RateLimited');
    a.ws.close();
    await a.closed;
    // The place comes back once the server has seen the close.
    let c: WsClient | undefined;
    const deadline = Date.now() + 5000;
    while (!c && Date.now() < deadline) {
      c = await WsClient.open(h.url, '/v1/subscriptions/billing/ws', { headers }).catch(() => undefined);
      if (!c) await new Promise((r) => setTimeout(r, 50));
    }
    expect(c).toBeDefined();
    c!.ws.close();
    b.ws.close();
  });

  test('bad limits are 400s', async () => {
    for (const body of [{ scopes: ['admin'], rateLimitPerSecond: -1 }, { scopes: ['admin'], webSocketsMax: 0 }, { scopes: ['admin'], rateLimitPerSecond: 1.5 }]) {
      expect((await admin('POST', '/v1/tokens', body)).status, JSON.stringify(body)).toBe(400);
    }
  });
});
