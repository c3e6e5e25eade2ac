// Goal: retention by time is enforced in the background on a real node: messages older than the
// topic's retentionSeconds leave the topic, and subscriptions' backlogs follow. Method: a topic with
// the smallest retention (60 s), polled with a deadline; this file runs beside the others.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, eventually, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald();
});
afterAll(async () => {
  await h.stop();
  removeDataDir(h.dataDir);
});

test('messages older than retentionSeconds are removed, with the backlogs that held them', async () => {
  expect((await api(h.url, 'PUT', '/v1/topics/short', { retentionSeconds: 60 })).status).toBe(201);
  expect((await api(h.url, 'PUT', '/v1/topics/long')).status).toBe(201);
  await api(h.url, 'PUT', '/v1/subscriptions/short-sub', { topic: 'short' });
  const published = Date.now();
  const messages = Array.from({ length: 50 }, (_, i) => ({ data: `m${i}` }));
  await api(h.url, 'POST', '/v1/topics/short/messages', { messages });
  await api(h.url, 'POST', '/v1/topics/long/messages', { messages });
  // One of them is out with a consumer when it expires.
  const [leased] = (await api(h.url, 'POST', '/v1/subscriptions/short-sub/pull', { max: 1, ackDeadlineSeconds: 600 })).body.messages;
  expect((await api(h.url, 'GET', '/v1/subscriptions/short-sub')).body.backlog).toBe(50);

  const topic = await eventually(async () => {
    const t = (await api(h.url, 'GET', '/v1/topics/short')).body;
    return t.messages === 0 ? t : undefined;
  }, 90_000, 250);
  expect(Date.now() - published).toBeGreaterThanOrEqual(59_000);
  expect(topic).toMatchObject({ messages: 0, bytes: 0, firstSeq: 51, lastSeq: 50 });
  expect((await api(h.url, 'GET', '/v1/subscriptions/short-sub')).body).toMatchObject({ backlog: 0, inFlight: 0 });
  expect((await api(h.url, 'POST', '/v1/subscriptions/short-sub/ack', { ackIds: [leased.ackId] })).body.invalid).toEqual([leased.ackId]);
  // The other topic keeps everything.
  expect((await api(h.url, 'GET', '/v1/topics/long')).body.messages).toBe(50);
  // Publishing goes on after the expired range.
  const p = await api(h.url, 'POST', '/v1/topics/short/messages', { messages: [{ data: 'new' }] });
  expect(p.body.results[0].seq).toBe(51);
}, 120_000);
