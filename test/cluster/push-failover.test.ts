// Goal: webhook push in a 3-node cluster survives the leader's death: push resumes on the new leader
// within seconds, every published message reaches the receiver, and only the messages in flight at
// the crash are delivered again. Also: a follower answers the push routes (forwarded to the leader).
// Method: real node processes (--allow-private-webhooks, the receiver is on 127.0.0.1) and a real HTTP
// receiver that answers 200 after a few ms; a publisher sends 600 messages in batches of 5 (25 ms apart) to any live
// node (same dedupIds on retry); we kill -9 the leader twice during the run, restarting it each time.
// Afterwards: every message id received, the subscription's backlog is 0 on the leader, and the
// receiver saw each id more than once only for messages in flight at a crash (at most the window plus
// the answered-but-not-yet-acked ones, per crash).
import { afterAll, expect, test } from 'vitest';
import { TestCluster, eventually } from '../helpers/herald-process.js';
import { WebhookReceiver } from '../helpers/webhook-receiver.js';
import { call, waitCaughtUp, waitConverged } from './util.js';

let cluster: TestCluster | undefined;
let rx: WebhookReceiver | undefined;
afterAll(async () => {
  await cluster?.stopAll();
  await rx?.close();
});

test('push resumes on a new leader after kill -9, losing nothing and repeating only what was in flight', async () => {
  const c = (cluster = await TestCluster.create(3));
  c.extraArgs = ['--allow-private-webhooks'];
  await c.startAll();
  rx = await WebhookReceiver.start(() => ({ status: 200, delayMs: 3 }));
  const maxInFlight = 8;
  let leader = await c.leader();
  const follower = [...c.nodes.keys()].find((id) => id !== leader)!;
  expect((await call(c.url(follower), 'PUT', '/v1/topics/orders', {})).status).toBe(201);
  const created = await call(c.url(follower), 'PUT', '/v1/subscriptions/hook', {
    topic: 'orders',
    push: { url: `${rx.url}/in`, maxInFlight, timeoutMs: 2000 },
    retry: { policy: 'fixed', intervalMs: 200, maxAttempts: null },
  });
  expect(created.status).toBe(201);
  expect(created.body.secret).toMatch(/^whsec_/);

  const total = 600;
  const published = new Set<string>();
  let sent = 0;
  const publisher = (async () => {
    const deadline = Date.now() + 60_000;
    while (sent < total && Date.now() < deadline) {
      const batch = Array.from({ length: 5 }, (_, i) => ({ data: `m${sent + i}`, dedupId: `d${sent + i}` }));
      const live = [...c.nodes.keys()];
      const node = live[(sent / 5) % live.length]!;
      const r = await call(c.url(node), 'POST', '/v1/topics/orders/messages', { messages: batch }, 3000).catch(() => undefined);
      if (r?.status === 200) {
        for (const x of r.body.results as { id: string }[]) published.add(x.id);
        sent += 5;
        await new Promise((res) => setTimeout(res, 25));
      } else {
        await new Promise((res) => setTimeout(res, 50));
      }
    }
  })();

  for (let kill = 0; kill < 2; kill++) {
    await eventually(() => sent >= (kill + 1) * 200 && rx!.received.length >= sent - 50, 30_000);
    leader = await c.leader();
    const seenAtKill = rx.received.length;
    const killedAt = Date.now();
    await c.kill(leader);
    // Push resumes on the new leader: new deliveries arrive within a few seconds of the kill.
    await eventually(() => rx!.received.length > seenAtKill + 20, 15_000);
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    await c.start(leader);
    await waitCaughtUp(c, leader, await c.leader());
  }
  await publisher;
  expect(sent).toBe(total);

  // Everything published reaches the receiver and is acked.
  await eventually(async () => {
    const ids = new Set(rx!.received.map((r) => String(r.headers['webhook-id'])));
    for (const id of published) if (!ids.has(id)) return false;
    const st = await call(c.url(await c.leader()), 'GET', '/v1/subscriptions/hook');
    return st.body.backlog === 0;
  }, 30_000);
  const perId = new Map<string, number>();
  for (const r of rx.received) perId.set(String(r.headers['webhook-id']), (perId.get(String(r.headers['webhook-id'])) ?? 0) + 1);
  const repeated = [...perId.values()].filter((n) => n > 1).length;
  // Per crash: the window in flight plus the answered ones whose ack had not committed yet.
  expect(repeated).toBeLessThanOrEqual(2 * 2 * maxInFlight);
  expect(perId.size).toBe(total);

  // The push routes answer on a follower too (forwarded to the leader).
  leader = await c.leader();
  const other = [...c.nodes.keys()].find((id) => id !== leader)!;
  const attempts = await call(c.url(other), 'GET', '/v1/subscriptions/hook/attempts?limit=5');
  expect(attempts.status).toBe(200);
  expect(attempts.body.attempts.length).toBeGreaterThan(0);
  expect((await call(c.url(other), 'POST', '/v1/subscriptions/hook/rotate-secret')).body.secret).toMatch(/^whsec_/);
  await waitConverged(c, [...c.nodes.keys()]);
}, 180_000);
