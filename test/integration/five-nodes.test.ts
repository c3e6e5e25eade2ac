// Goal: a 5-node group keeps serving with two members down, and the two catch up when they return.
// Method: five real node processes; kill -9 the leader and one follower (a majority of three stays),
// publish through the survivors, restart both, and compare every node's applied state.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, eventually, TestCluster } from '../helpers/herald-process.js';

let c: TestCluster;
beforeAll(async () => {
  c = await TestCluster.create(5);
  await c.startAll();
});
afterAll(async () => {
  await c?.stopAll();
});

async function publish(via: number, data: string): Promise<void> {
  // Retry through 503s (an election is under way); the dedupId makes a retry safe.
  const r = await eventually(async () => {
    const res = await api(c.url(via), 'POST', '/v1/topics/t5/messages', { messages: [{ data, dedupId: data }] });
    return res.status === 503 ? undefined : res;
  }, 15_000, 50);
  expect(r!.status).toBe(200);
}

test('five nodes: two down, the other three go on; the two catch up', async () => {
  const first = await c.leader();
  expect((await api(c.url(first), 'PUT', '/v1/topics/t5')).status).toBe(201);
  expect((await api(c.url(first), 'PUT', '/v1/subscriptions/s5', { topic: 't5', startAt: 'earliest' })).status).toBe(201);
  for (let i = 0; i < 20; i++) await publish(1 + (i % 5), `a-${i}`);

  const follower = [1, 2, 3, 4, 5].find((id) => id !== first)!;
  await c.kill(first);
  await c.kill(follower);
  const survivors = [1, 2, 3, 4, 5].filter((id) => id !== first && id !== follower);
  const second = await c.leader();
  expect(survivors).toContain(second);
  for (let i = 0; i < 20; i++) await publish(survivors[i % 3]!, `b-${i}`);

  await c.start(first);
  await c.start(follower);
  await eventually(async () => {
    const views = await Promise.all([1, 2, 3, 4, 5].map(async (id) => (await api(c.url(id), 'GET', '/v1/cluster?digest=1')).body));
    return new Set(views.map((v) => v.stateDigest)).size === 1 && views.every((v) => v.leaderId === views[0].leaderId);
  }, 30_000, 100);

  const got: string[] = [];
  for (let round = 0; round < 10 && got.length < 40; round++) {
    const r = await api(c.url(first), 'POST', '/v1/subscriptions/s5/pull', { max: 100 });
    got.push(...r.body.messages.map((m: any) => m.data));
  }
  expect(got).toEqual([...Array.from({ length: 20 }, (_, i) => `a-${i}`), ...Array.from({ length: 20 }, (_, i) => `b-${i}`)]);
}, 120_000);
