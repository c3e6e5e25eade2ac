// Goal: topics and queues behave as API.md says on a real node: create/read/patch/delete, the
// 201/200/409 rule, publish results (seq, id, dedup), queue routes. Method: one real node process,
// each test with its own names.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { api, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald();
});
afterAll(async () => {
  await h.stop();
  removeDataDir(h.dataDir);
});

describe('topics', () => {
  test('create answers 201, then 200 with the same config and 409 with another', async () => {
    const a = await api(h.url, 'PUT', '/v1/topics/t-create', { retentionSeconds: 3600 });
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({ name: 't-create', retentionSeconds: 3600, maxMessageBytes: 1048576, dedupWindowSeconds: 300, messages: 0 });
    expect((await api(h.url, 'PUT', '/v1/topics/t-create', { retentionSeconds: 3600 })).status).toBe(200);
    const c = await api(h.url, 'PUT', '/v1/topics/t-create', { retentionSeconds: 7200 });
    expect(c.status).toBe(409);
    expect(c.body.error.code).toBe('AlreadyExists');
  });

  test('defaults, stats after publishing, list, patch and delete', async () => {
    expect((await api(h.url, 'PUT', '/v1/topics/t-stats')).status).toBe(201);
    const p = await api(h.url, 'POST', '/v1/topics/t-stats/messages', {
      messages: [{ data: 'abc' }, { data: 'AAEC', encoding: 'base64' }],
    });
    expect(p.status).toBe(200);
    expect(p.body.results.map((r: any) => r.seq)).toEqual([1, 2]);
    expect(new Set(p.body.results.map((r: any) => r.id)).size).toBe(2);
    const g = await api(h.url, 'GET', '/v1/topics/t-stats');
    expect(g.body).toMatchObject({ retentionSeconds: 345600, messages: 2, bytes: 6, firstSeq: 1, lastSeq: 2 });
    const list = await api(h.url, 'GET', '/v1/topics');
    expect(list.body.topics.map((t: any) => t.name)).toContain('t-stats');
    const patched = await api(h.url, 'PATCH', '/v1/topics/t-stats', { maxMessageBytes: 4 });
    expect(patched.status).toBe(200);
    expect(patched.body.maxMessageBytes).toBe(4);
    const big = await api(h.url, 'POST', '/v1/topics/t-stats/messages', { messages: [{ data: '12345' }] });
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('PayloadTooLarge');
    expect((await api(h.url, 'DELETE', '/v1/topics/t-stats')).status).toBe(200);
    const gone = await api(h.url, 'GET', '/v1/topics/t-stats');
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe('TopicNotFound');
  });

  test('deleting a topic removes its subscriptions', async () => {
    await api(h.url, 'PUT', '/v1/topics/t-del');
    expect((await api(h.url, 'PUT', '/v1/subscriptions/t-del-sub', { topic: 't-del' })).status).toBe(201);
    await api(h.url, 'DELETE', '/v1/topics/t-del');
    expect((await api(h.url, 'GET', '/v1/subscriptions/t-del-sub')).status).toBe(404);
    // The name is free again, with a fresh log.
    await api(h.url, 'PUT', '/v1/topics/t-del');
    const p = await api(h.url, 'POST', '/v1/topics/t-del/messages', { messages: [{ data: 'x' }] });
    expect(p.body.results[0].seq).toBe(1);
  });

  test('dedup ids suppress repeats within the window, across and inside batches', async () => {
    await api(h.url, 'PUT', '/v1/topics/t-dedup');
    const a = await api(h.url, 'POST', '/v1/topics/t-dedup/messages', {
      messages: [{ data: 'one', dedupId: 'pay-1' }, { data: 'one again', dedupId: 'pay-1' }, { data: 'two', dedupId: 'pay-2' }],
    });
    expect(a.body.results).toEqual([
      { id: a.body.results[0].id, seq: 1, duplicate: false },
      { id: a.body.results[0].id, seq: 1, duplicate: true },
      { id: a.body.results[2].id, seq: 2, duplicate: false },
    ]);
    const b = await api(h.url, 'POST', '/v1/topics/t-dedup/messages', { messages: [{ data: 'one', dedupId: 'pay-1' }] });
    expect(b.body.results[0]).toMatchObject({ seq: 1, duplicate: true });
    expect((await api(h.url, 'GET', '/v1/topics/t-dedup')).body.messages).toBe(2);
  });

  test('publishing to a missing topic is 404 TopicNotFound', async () => {
    const r = await api(h.url, 'POST', '/v1/topics/nope-topic/messages', { messages: [{ data: 'x' }] });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('TopicNotFound');
  });
});

describe('queues', () => {
  test('a queue is a topic and a pull subscription of the same name', async () => {
    const c = await api(h.url, 'PUT', '/v1/queues/q1', { ackDeadlineSeconds: 10, retentionSeconds: 600 });
    expect(c.status).toBe(201);
    expect(c.body.topic).toMatchObject({ name: 'q1', retentionSeconds: 600 });
    expect(c.body.subscription).toMatchObject({ name: 'q1', topic: 'q1', ackDeadlineSeconds: 10 });
    expect((await api(h.url, 'PUT', '/v1/queues/q1', { ackDeadlineSeconds: 10, retentionSeconds: 600 })).status).toBe(200);
    expect((await api(h.url, 'PUT', '/v1/queues/q1', { ackDeadlineSeconds: 11, retentionSeconds: 600 })).status).toBe(409);

    await api(h.url, 'POST', '/v1/queues/q1/messages', { messages: [{ data: 'job-1' }, { data: 'job-2' }] });
    const pulled = await api(h.url, 'POST', '/v1/queues/q1/pull', { max: 10 });
    expect(pulled.body.messages.map((m: any) => m.data)).toEqual(['job-1', 'job-2']);
    const ack = await api(h.url, 'POST', '/v1/queues/q1/ack', { ackIds: pulled.body.messages.map((m: any) => m.ackId) });
    expect(ack.body).toEqual({ acked: 2, invalid: [] });
    const info = await api(h.url, 'GET', '/v1/queues/q1');
    expect(info.body.subscription).toMatchObject({ backlog: 0, acked: 2, delivered: 2 });
  });
});
