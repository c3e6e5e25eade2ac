// Goal: any request works on any node of a cluster: followers pass API calls to the leader and
// stream its answer back (status, body, errors), so a client need not know who leads.
// Method: a 3-node cluster of real processes. Create a topic via node 2, publish via node 3, pull via
// node 1 (and ack via node 2); then the same with every rotation of the three roles, so each node
// takes each kind of call while being a follower. A long-poll pull through one follower is woken by a
// publish through another, and one its client abandons stops waiting at the leader (so the next
// message is not leased to nobody); binary (base64) data and attributes survive the hops; errors (404, 409,
// 400) come back from a follower as the leader gave them; and reads agree on every node.
import { afterAll, expect, test } from 'vitest';
import { eventually, TestCluster } from '../helpers/herald-process.js';
import { call, view, waitConverged } from './util.js';

let cluster: TestCluster | undefined;
afterAll(async () => {
  await cluster?.stopAll();
});

test('create via node 2, publish via node 3, pull via node 1 (and every other rotation)', async () => {
  const testStart = Date.now();
  cluster = await TestCluster.create(3);
  const c = cluster;
  await c.startAll();
  const leader = await c.leader(15_000);
  console.log(`[any-node] leader is node ${leader}`);

  const rotations: [number, number, number][] = [
    [2, 3, 1],
    [3, 1, 2],
    [1, 2, 3],
  ];
  for (const [creator, publisher, puller] of rotations) {
    const topic = `t-${creator}${publisher}${puller}`;
    const sub = `s-${creator}${publisher}${puller}`;
    const created = await call(c.url(creator), 'PUT', `/v1/topics/${topic}`, { retentionSeconds: 3600 });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect((await call(c.url(creator), 'PUT', `/v1/subscriptions/${sub}`, { topic, ackDeadlineSeconds: 30 })).status).toBe(201);
    // The same create again, via another node: 200, same config.
    expect((await call(c.url(publisher), 'PUT', `/v1/topics/${topic}`, { retentionSeconds: 3600 })).status).toBe(200);

    const binary = Buffer.from([0, 1, 2, 250, 255, 128, 10, 13]).toString('base64');
    const pub = await call(c.url(publisher), 'POST', `/v1/topics/${topic}/messages`, {
      messages: [
        { data: `hello from node ${publisher}`, attributes: { via: String(publisher) }, tags: ['x'] },
        { data: binary, encoding: 'base64', orderingKey: 'k1' },
      ],
    });
    expect(pub.status, JSON.stringify(pub.body)).toBe(200);
    expect(pub.body.results.map((r: { seq: number }) => r.seq)).toEqual([1, 2]);

    const pulled = await call(c.url(puller), 'POST', `/v1/subscriptions/${sub}/pull`, { max: 10, waitSeconds: 2 });
    expect(pulled.status, JSON.stringify(pulled.body)).toBe(200);
    let msgs = pulled.body.messages as any[];
    if (msgs.length < 2) {
      const more = await call(c.url(puller), 'POST', `/v1/subscriptions/${sub}/pull`, { max: 10, waitSeconds: 2 });
      msgs = [...msgs, ...(more.body.messages as any[])];
    }
    expect(msgs.map((m) => m.data)).toEqual([`hello from node ${publisher}`, binary]);
    expect(msgs[0].attributes).toEqual({ via: String(publisher) });
    expect(msgs[0].tags).toEqual(['x']);
    expect(msgs[1].encoding).toBe('base64');
    expect(msgs[1].orderingKey).toBe('k1');
    expect(msgs.map((m) => m.id)).toEqual(pub.body.results.map((r: { id: string }) => r.id));

    // Ack via yet another node (the creator): both acked, nothing invalid; a second ack lists them invalid.
    const ack = await call(c.url(creator), 'POST', `/v1/subscriptions/${sub}/ack`, { ackIds: msgs.map((m) => m.ackId) });
    expect(ack.status).toBe(200);
    expect(ack.body).toEqual({ acked: 2, invalid: [] });
    const again = await call(c.url(publisher), 'POST', `/v1/subscriptions/${sub}/ack`, { ackIds: msgs.map((m) => m.ackId) });
    expect(again.body.invalid).toHaveLength(2);

    // Reads agree on every node.
    for (const id of [1, 2, 3]) {
      const t = await call(c.url(id), 'GET', `/v1/topics/${topic}`);
      expect(t.status).toBe(200);
      expect(t.body).toMatchObject({ messages: 2, firstSeq: 1, lastSeq: 2, retentionSeconds: 3600 });
      const s = await call(c.url(id), 'GET', `/v1/subscriptions/${sub}`);
      expect(s.body).toMatchObject({ topic, backlog: 0, inFlight: 0, acked: 2 });
    }
  }

  // A long poll through one follower is woken by a publish through the other.
  const [f1, f2] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
  expect((await call(c.url(f1), 'PUT', '/v1/topics/lp')).status).toBe(201);
  expect((await call(c.url(f2), 'PUT', '/v1/subscriptions/lp-sub', { topic: 'lp' })).status).toBe(201);
  const t0 = Date.now();
  const waiting = call(c.url(f1), 'POST', '/v1/subscriptions/lp-sub/pull', { max: 5, waitSeconds: 10 }, 15_000);
  expect((await call(c.url(f2), 'POST', '/v1/topics/lp/messages', { messages: [{ data: 'wake up' }] })).status).toBe(200);
  const woke = await waiting;
  expect(woke.status).toBe(200);
  expect(woke.body.messages.map((m: { data: string }) => m.data)).toEqual(['wake up']);
  expect(Date.now() - t0).toBeLessThan(8000);

  // A long poll that its client abandons at a follower must not lease the next message to nobody: the
  // follower has to drop its forwarded request too, so that the leader sees the caller gone (as it does
  // for a client that leaves a long poll made to the leader directly).
  expect((await call(c.url(f1), 'PUT', '/v1/subscriptions/lp-abandon', { topic: 'lp', ackDeadlineSeconds: 60 })).status).toBe(201);
  const abandoned = await call(c.url(f1), 'POST', '/v1/subscriptions/lp-abandon/pull', { max: 5, waitSeconds: 30 }, 500);
  expect(abandoned.status).toBe(0); // the client gave up after 500 ms
  // The leader ends the wait as soon as the follower drops the forwarded request: its count of waiting
  // long polls goes to 0 (a poll kept waiting would take the next message and lease it to nobody).
  // (Seen within milliseconds; the deadline is for a loaded machine, well short of the poll's 30 s.)
  await eventually(async () => pullsWaiting(await metricsText(c.url(leader))) === 0, 10_000);
  expect((await call(c.url(f2), 'POST', '/v1/topics/lp/messages', { messages: [{ data: 'after abandon' }] })).status).toBe(200);
  const next = await call(c.url(leader), 'POST', '/v1/subscriptions/lp-abandon/pull', { max: 5, waitSeconds: 8 }, 15_000);
  const abandonInfo = await call(c.url(leader), 'GET', '/v1/subscriptions/lp-abandon');
  expect(
    next.body.messages.map((m: { data: string }) => m.data),
    `the message went to the abandoned long poll (leased to nobody for 60 s): ${JSON.stringify(abandonInfo.body)}`,
  ).toEqual(['after abandon']);

  // Errors come back from a follower as the leader gives them.
  const missing = await call(c.url(f1), 'GET', '/v1/topics/no-such-topic');
  expect(missing.status).toBe(404);
  expect(missing.body.error.code).toBe('TopicNotFound');
  const conflict = await call(c.url(f2), 'PUT', '/v1/topics/lp', { retentionSeconds: 120 });
  expect(conflict.status).toBe(409);
  expect(conflict.body.error.code).toBe('AlreadyExists');
  const invalid = await call(c.url(f1), 'POST', '/v1/topics/lp/messages', { messages: [] });
  expect(invalid.status).toBe(400);
  expect(invalid.body.error.code).toBe('InvalidRequest');
  const noSub = await call(c.url(f2), 'POST', '/v1/subscriptions/nope/pull', { max: 1 });
  expect(noSub.status).toBe(404);
  expect(noSub.body.error.code).toBe('SubscriptionNotFound');

  // Lists are the same everywhere, and every node has applied the same state.
  const lists = await Promise.all([1, 2, 3].map((id) => call(c.url(id), 'GET', '/v1/topics')));
  for (const l of lists) expect(l.body).toEqual(lists[0]!.body);
  await waitConverged(c, [1, 2, 3], 10_000);
  for (const id of [1, 2, 3]) {
    const v = (await view(c.url(id)))!;
    expect(v.nodeId).toBe(String(id));
    expect(v.leaderId).toBe(String(leader));
    expect(v.members.map((m) => m.id).sort()).toEqual(['1', '2', '3']);
    expect((await call(c.url(id), 'GET', '/readyz')).status).toBe(200);
  }
  console.log(`[any-node] test took ${Date.now() - testStart} ms`);
}, 60_000);

async function metricsText(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) });
  return res.text();
}

/** `herald_pull_waiting_requests`, or undefined when the scrape lacks it. */
function pullsWaiting(text: string): number | undefined {
  const m = /^herald_pull_waiting_requests (\S+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}
