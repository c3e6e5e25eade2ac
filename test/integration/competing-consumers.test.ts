// Goal: competing consumers on one subscription never share a message and lose none. Method: a real
// node; 10,000 messages; 8 concurrent pullers that long-poll, record what they got and ack it. Every
// seq must be handed out exactly once (the lease is long, so there is no redelivery), every ack must
// be accepted, and the subscription must end empty.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

const messageCount = 10_000;
const pullerCount = 8;

let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald();
});
afterAll(async () => {
  await h.stop();
  removeDataDir(h.dataDir);
});

test(`${pullerCount} pullers share ${messageCount} messages: each acked exactly once, none lost`, async () => {
  expect((await api(h.url, 'PUT', '/v1/queues/work', { ackDeadlineSeconds: 300 })).status).toBe(201);

  // Publish in batches while the pullers already run, so they compete for fresh commits too.
  const publishing = (async () => {
    for (let i = 0; i < messageCount; i += 100) {
      const messages = Array.from({ length: 100 }, (_, j) => ({ data: `job-${i + j}` }));
      const r = await api(h.url, 'POST', '/v1/queues/work/messages', { messages });
      expect(r.status).toBe(200);
    }
  })();

  const deliveredTo = new Map<number, number>(); // seq → puller
  const dataBySeq = new Map<number, string>();
  let ackedTotal = 0;
  const deadline = Date.now() + 90_000;
  const pullers = Array.from({ length: pullerCount }, async (_, id) => {
    while (ackedTotal < messageCount && Date.now() < deadline) {
      const r = await api(h.url, 'POST', '/v1/queues/work/pull', { max: 50, waitSeconds: 1 });
      expect(r.status).toBe(200);
      const msgs = r.body.messages as { seq: number; data: string; ackId: string; deliveryAttempt: number }[];
      if (msgs.length === 0) continue;
      for (const m of msgs) {
        // A second hand-out of a seq while its lease holds would be a broken visibility lock.
        expect(deliveredTo.has(m.seq), `seq ${m.seq} handed to ${deliveredTo.get(m.seq)} and ${id}`).toBe(false);
        expect(m.deliveryAttempt).toBe(1);
        deliveredTo.set(m.seq, id);
        dataBySeq.set(m.seq, m.data);
      }
      const a = await api(h.url, 'POST', '/v1/queues/work/ack', { ackIds: msgs.map((m) => m.ackId) });
      expect(a.body).toEqual({ acked: msgs.length, invalid: [] });
      ackedTotal += a.body.acked;
    }
  });
  await Promise.all([publishing, ...pullers]);

  expect(ackedTotal).toBe(messageCount);
  expect(deliveredTo.size).toBe(messageCount);
  for (let seq = 1; seq <= messageCount; seq++) expect(dataBySeq.get(seq)).toBe(`job-${seq - 1}`);
  // Every puller got a share: they really competed.
  expect(new Set(deliveredTo.values()).size).toBeGreaterThan(1);
  const stats = (await api(h.url, 'GET', '/v1/subscriptions/work')).body;
  expect(stats).toMatchObject({ backlog: 0, inFlight: 0, acked: messageCount, delivered: messageCount });
}, 120_000);
