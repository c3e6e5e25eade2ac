// Goal: the test helper itself starts a real node and talks to it. Method: start, create, stop.
import { afterAll, expect, test } from 'vitest';
import { api, removeDataDir, startHerald, type HeraldProcess } from './helpers/herald-process.js';

let h: HeraldProcess | undefined;
afterAll(async () => {
  await h?.stop();
  if (h) removeDataDir(h.dataDir);
});

test('a node starts on a free port and answers', async () => {
  h = await startHerald();
  expect(h.output()).toMatch(/herald listening on http:\/\/127\.0\.0\.1:\d+/);
  const r = await api(h.url, 'PUT', '/v1/topics/smoke', {});
  expect(r.status).toBe(201);
});
