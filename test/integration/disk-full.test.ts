// Goal: when storage is full, publishes get a clear 503 Unavailable (with Retry-After) and lose
// nothing; what is stored stays readable and deliverable; publishing resumes by itself once space
// returns. Method: a real node with small segment files (HERALD_SEGMENT_BYTES=256 KiB) and a quota
// on its data directory (--storage-max-bytes 8 MiB), filled by publishing 1 KiB messages until it
// refuses; then we read and pull, delete the topic that filled it, and wait for publishing to work again.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, eventually, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

let h: HeraldProcess;
beforeAll(async () => {
  h = await startHerald({ env: { HERALD_SEGMENT_BYTES: String(256 * 1024) }, args: ['--storage-max-bytes', String(8 * 1024 * 1024)] });
});
afterAll(async () => {
  await h.stop();
  removeDataDir(h.dataDir);
});

test('full: publishes refused with 503, stored messages still delivered; space back: publishing resumes', async () => {
  expect((await api(h.url, 'PUT', '/v1/topics/big', {})).status).toBe(201);
  expect((await api(h.url, 'PUT', '/v1/subscriptions/reader', { topic: 'big', startAt: 'earliest' })).status).toBe(201);
  expect((await api(h.url, 'PUT', '/v1/topics/small', {})).status).toBe(201);
  const batch = { messages: Array.from({ length: 100 }, (_, i) => ({ data: `${i}`.padEnd(1024, 'x') })) };
  let accepted = 0;
  let refused: { status: number; body: any; headers: Headers } | undefined;
  // At most 40 MiB offered against an 8 MiB quota (checked once a second): it must refuse well before.
  for (let i = 0; i < 400 && !refused; i++) {
    const r = await api(h.url, 'POST', '/v1/topics/big/messages', batch);
    if (r.status === 200) accepted += 100;
    else refused = r;
  }
  expect(refused, 'the quota was never enforced').toBeDefined();
  expect(refused!.status).toBe(503);
  expect(refused!.body.error.code).toBe('Unavailable');
  expect(refused!.body.error.message).toMatch(/storage is full/);
  expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThan(0);
  // Every accepted message is there and deliverable; the refused batch left nothing behind.
  expect((await api(h.url, 'GET', '/v1/topics/big')).body.messages).toBe(accepted);
  const pulled = await api(h.url, 'POST', '/v1/subscriptions/reader/pull', { max: 1000 });
  expect(pulled.status).toBe(200);
  expect(pulled.body.messages).toHaveLength(Math.min(1000, accepted));
  expect((await api(h.url, 'POST', '/v1/subscriptions/reader/ack', { ackIds: pulled.body.messages.map((m: any) => m.ackId) })).body.acked).toBe(
    pulled.body.messages.length,
  );
  // Another topic is refused too while full.
  expect((await api(h.url, 'POST', '/v1/topics/small/messages', { messages: [{ data: 'x' }] })).status).toBe(503);
  // Space returns: the big topic goes, its segments are freed, and publishing works again.
  expect((await api(h.url, 'DELETE', '/v1/topics/big')).status).toBe(200);
  await eventually(async () => (await api(h.url, 'POST', '/v1/topics/small/messages', { messages: [{ data: 'after' }] })).status === 200, 20_000);
  expect((await api(h.url, 'GET', '/v1/topics/small')).body.messages).toBe(1);
}, 60_000);
