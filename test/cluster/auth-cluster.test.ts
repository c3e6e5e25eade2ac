// Goal: with authentication on in a 3-node cluster, a token created through any node works at once
// through every node (what a follower forwards, the leader checks), refusals pass through followers
// unchanged, and WebSocket consumers proxied by a follower are checked by the leader with the client's
// token. Method: real node processes with --auth on and one admin token.
import { afterAll, expect, test } from 'vitest';
import { TestCluster, api, eventually } from '../helpers/herald-process.js';
import { WsClient, type Refusal } from '../helpers/ws-client.js';

const ADMIN = 'cluster-admin-token-0123456789abc';
let cluster: TestCluster | undefined;
afterAll(async () => {
  await cluster?.stopAll();
});

test('tokens work through every node; followers pass refusals and sockets on to the leader', async () => {
  const c = (cluster = await TestCluster.create(3));
  c.extraArgs = ['--auth', 'on', '--admin-token', ADMIN];
  c.authToken = ADMIN;
  await c.startAll();
  const leader = await c.leader();
  const [f1, f2] = [...c.nodes.keys()].filter((id) => id !== leader) as [number, number];
  const call = (id: number, method: string, path: string, body?: unknown, token?: string) =>
    api(c.url(id), method, path, body, token ? { headers: { authorization: `Bearer ${token}` } } : {});

  expect((await call(f1, 'PUT', '/v1/topics/t', {}, ADMIN)).status).toBe(201);
  expect((await call(f1, 'PUT', '/v1/subscriptions/s', { topic: 't', startAt: 'earliest' }, ADMIN)).status).toBe(201);
  const created = await call(f1, 'POST', '/v1/tokens', { scopes: ['publish:t', 'consume:s'] }, ADMIN);
  expect(created.status).toBe(201);
  const token = created.body.token as string;
  // Through the other follower, at once: it forwards, the leader checks.
  expect((await call(f2, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'x' }] }, token)).status).toBe(200);
  const none = await call(f2, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'x' }] });
  expect(none.status).toBe(401);
  expect(none.body.error.code).toBe('Unauthenticated');
  const forbidden = await call(f2, 'PUT', '/v1/topics/other', {}, token);
  expect(forbidden.status).toBe(403);
  expect(forbidden.body.error.code).toBe('Forbidden');
  // A follower's own cluster view is checked there (admin only).
  expect((await call(f2, 'GET', '/v1/cluster')).status).toBe(401);
  expect((await call(f2, 'GET', '/v1/cluster', undefined, ADMIN)).status).toBe(200);

  // A consumer socket through a follower: refused without a token, served with one.
  let refusal: Refusal | undefined;
  try {
    (await WsClient.open(c.url(f2), '/v1/subscriptions/s/ws')).ws.terminate();
  } catch (e) {
    refusal = (e as { refusal?: Refusal }).refusal;
  }
  expect(refusal?.status).toBe(401);
  const ws = await WsClient.open(c.url(f2), '/v1/subscriptions/s/ws', { headers: { authorization: `Bearer ${token}` } });
  ws.credit(10);
  await eventually(() => ws.all.some((f) => f.type === 'message'));
  ws.ws.close();
}, 60_000);
