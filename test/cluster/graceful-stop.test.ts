// Goal: SIGTERM is a planned stop. The leader hands leadership over before it goes (the group does
// not wait out an election), finishes the webhook calls it has in flight and commits their outcomes
// (nothing it delivered is delivered again), answers what it accepted, and exits 0; nothing
// acknowledged is lost.
// Method: a 3-node cluster of real processes under a publish load (dedupIds, retried on 503) with a
// push subscription to a slow local receiver (40 ms per call, so calls are in flight at the stop);
// SIGTERM the leader; time until another node leads; restart it; then every confirmed publish is in
// the topic, every message reached the receiver, and none reached it twice.
import { afterAll, expect, test } from 'vitest';
import { TestCluster, eventually } from '../helpers/herald-process.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';
import { call, drain, waitCaughtUp } from './util.js';

let cluster: TestCluster | undefined;
let rx: WebhookReceiver | undefined;
afterAll(async () => {
  await cluster?.stopAll();
  await rx?.close();
});

test('SIGTERM on the leader: leadership handed over, in-flight webhooks finished, nothing lost or repeated', async () => {
  const c = (cluster = await TestCluster.create(3));
  c.extraArgs = ['--allow-private-webhooks'];
  await c.startAll();
  rx = await WebhookReceiver.start(() => ({ status: 200, delayMs: 40 }));
  const leader = await c.leader();
  expect((await call(c.url(leader), 'PUT', '/v1/topics/t', {})).status).toBe(201);
  expect((await call(c.url(leader), 'PUT', '/v1/subscriptions/hook', { topic: 't', push: { url: rx.url, maxInFlight: 16 } })).status).toBe(201);
  expect((await call(c.url(leader), 'PUT', '/v1/subscriptions/reader', { topic: 't', startAt: 'earliest' })).status).toBe(201);

  const confirmed = new Set<string>();
  let stop = false;
  let n = 0;
  const publisher = (async () => {
    const deadline = Date.now() + 60_000;
    while (!stop && Date.now() < deadline) {
      const batch = Array.from({ length: 5 }, (_, i) => ({ data: `m${n + i}`, dedupId: `d${n + i}` }));
      const live = [...c.nodes.keys()];
      const r = await call(c.url(live[(n / 5) % live.length]!), 'POST', '/v1/topics/t/messages', { messages: batch }, 3000);
      if (r.status === 200) {
        for (const m of batch) confirmed.add(m.data);
        n += 5;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
  })();

  await eventually(() => rx!.received.length >= 100, 20_000);
  const stopping = c.nodes.get(leader)!;
  const stoppedAt = Date.now();
  await stopping.stop(); // SIGTERM, and wait for the exit
  expect(stopping.child.exitCode).toBe(0);
  c.nodes.delete(leader);
  const newLeader = await c.leader(10_000);
  expect(newLeader).not.toBe(leader);
  // Handed over before the exit: a leader was there by the time the process had gone, or very soon after.
  expect(Date.now() - stoppedAt).toBeLessThan(5000);
  await c.start(leader);
  await waitCaughtUp(c, leader, await c.leader());
  stop = true;
  await publisher;

  const inTopic = new Set(await drain(c.url(await c.leader()), 'reader'));
  for (const d of confirmed) expect(inTopic.has(d), d).toBe(true);
  await eventually(async () => {
    const st = await call(c.url(await c.leader()), 'GET', '/v1/subscriptions/hook');
    return st.body.backlog === 0;
  }, 30_000);
  const perId = new Map<string, number>();
  for (const r of rx.received) perId.set(String(r.headers['webhook-id']), (perId.get(String(r.headers['webhook-id'])) ?? 0) + 1);
  expect(perId.size).toBe(inTopic.size);
  expect([...perId.entries()].filter(([, k]) => k > 1)).toEqual([]);
}, 120_000);
