// Goal: membership changes on a live cluster that holds data lose nothing: a 4th node joins (it
// catches up by a snapshot streamed in chunks, since the leader's log is compacted), becomes a voter and holds the same
// state; another node is removed and the group goes on with the rest. Also leader transfer.
// Method: real node processes; small snapshot interval so the log is compacted; every wait polls.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, eventually, TestCluster } from '../helpers/herald-process.js';

let c: TestCluster;
beforeAll(async () => {
  c = await TestCluster.create(4);
  c.extraArgs = ['--snapshot-entries', '100'];
  // Small chunks, so the snapshot the new node receives comes as a stream of many.
  c.env = { HERALD_SNAPSHOT_CHUNK_BYTES: '4096' };
  await c.startAll([1, 2, 3]);
});
afterAll(async () => {
  await c?.stopAll();
});

async function digests(ids: number[]): Promise<string[]> {
  return Promise.all(ids.map(async (id) => (await api(c.url(id), 'GET', '/v1/cluster?digest=1')).body.stateDigest as string));
}

test('a joining node catches up by snapshot and votes; a removed node leaves; nothing is lost', async () => {
  await c.leader();
  expect((await api(c.url(1), 'PUT', '/v1/queues/jobs')).status).toBe(201);
  for (let i = 0; i < 300; i++) {
    const r = await api(c.url(1 + (i % 3)), 'POST', '/v1/queues/jobs/messages', { messages: [{ data: `job-${i}` }] });
    expect(r.status).toBe(200);
  }

  // Node 4 starts empty, knowing how to reach the others, and is added through any member.
  await c.start(4, c.peersArg(), [...c.extraArgs, '--join']);
  const added = await api(c.url(2), 'POST', '/v1/cluster/members', { id: 4, address: c.address(4) });
  expect(added.status, JSON.stringify(added.body)).toBe(200);
  expect(added.body.members.find((m: any) => m.id === '4')).toMatchObject({ role: 'follower' });
  // The leader's log no longer starts at 1: node 4 can only have caught up from a snapshot.
  expect((await api(c.url(4), 'GET', '/v1/cluster')).body.snapshotIndex).toBeGreaterThan(100);
  await eventually(async () => {
    const [a, b] = await digests([1, 4]);
    const s4 = (await api(c.url(4), 'GET', '/v1/cluster')).body;
    return a === b && s4.leaderId !== null;
  }, 30_000, 100);

  // Adding it again is refused.
  const again = await api(c.url(1), 'POST', '/v1/cluster/members', { id: 4, address: c.address(4) });
  expect(again.status).toBe(400);

  // Remove node 2 and stop it; the other three go on.
  const removed = await api(c.url(3), 'DELETE', '/v1/cluster/members/2');
  expect(removed.status, JSON.stringify(removed.body)).toBe(200);
  expect(removed.body.members.map((m: any) => m.id).sort()).toEqual(['1', '3', '4']);
  await c.kill(2);
  // If node 2 led, the others elect a new leader first (clients see 503 NoLeader meanwhile).
  await c.leader();
  for (let i = 300; i < 350; i++) {
    const r = await eventually(async () => {
      // A dedupId makes the retry safe if a 503 came after the write was in the log.
      const res = await api(c.url(4), 'POST', '/v1/queues/jobs/messages', { messages: [{ data: `job-${i}`, dedupId: `job-${i}` }] });
      return res.status === 503 ? undefined : res;
    }, 10_000, 50);
    expect(r!.status).toBe(200);
  }

  // Every message is there, in order, pulled through the new node.
  const seen: string[] = [];
  for (let round = 0; round < 20 && seen.length < 350; round++) {
    const r = await api(c.url(4), 'POST', '/v1/queues/jobs/pull', { max: 100 });
    expect(r.status).toBe(200);
    for (const m of r.body.messages) seen.push(m.data);
    if (r.body.messages.length > 0) await api(c.url(4), 'POST', '/v1/queues/jobs/ack', { ackIds: r.body.messages.map((m: any) => m.ackId) });
  }
  expect(seen).toEqual(Array.from({ length: 350 }, (_, i) => `job-${i}`));
  await eventually(async () => new Set(await digests([1, 3, 4])).size === 1, 20_000, 100);
}, 120_000);

test('leadership moves where it is asked to', async () => {
  const leader = await c.leader();
  const to = [1, 3, 4].find((id) => id !== leader)!;
  const r = await api(c.url(leader), 'POST', '/v1/cluster/transfer-leadership', { to });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(await c.leader()).toBe(to);
  const p = await api(c.url(leader), 'POST', '/v1/queues/jobs/messages', { messages: [{ data: 'after-transfer' }] });
  expect(p.status).toBe(200);
}, 60_000);
