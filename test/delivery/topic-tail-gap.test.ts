// Goal: a topic tail that asks for messages retention has already removed learns what it missed: the
// first frame is {"type":"gap","requested","firstAvailable"}, then the retained messages follow.
// Method: a real node; a topic with the smallest retention (60 s), polled with a deadline until it has
// expired everything (this file runs beside the others, as test/http/retention.test.ts does).
import { expect, test } from 'vitest';
import { api, apiOk, eventually } from '../helpers/herald-process.js';
import { heraldWithSockets } from '../helpers/ws-client.js';

const node = heraldWithSockets();

test('a tail from before the first retained seq starts with a gap frame', async () => {
  await apiOk(node.url, 'PUT', '/v1/topics/brief', { retentionSeconds: 60 });
  await apiOk(node.url, 'POST', '/v1/topics/brief/messages', { messages: Array.from({ length: 50 }, (_, i) => ({ data: `old${i}` })) });
  await eventually(async () => (await api(node.url, 'GET', '/v1/topics/brief')).body.firstSeq === 51, 90_000, 250);
  await apiOk(node.url, 'POST', '/v1/topics/brief/messages', { messages: Array.from({ length: 3 }, (_, i) => ({ data: `new${i}` })) });

  for (const from of [1, 20]) {
    const c = await node.open(`/v1/topics/brief/ws?from=${from}`);
    const [gap, ...rest] = await c.take(4);
    expect(gap).toEqual({ type: 'gap', requested: from, firstAvailable: 51 });
    expect(rest.map((f) => [f.seq, f.data])).toEqual([[51, 'new0'], [52, 'new1'], [53, 'new2']]);
  }
  // From the first retained seq on: no gap.
  const c = await node.open('/v1/topics/brief/ws?from=51');
  expect((await c.take(1))[0]).toMatchObject({ type: 'message', seq: 51 });
}, 120_000);
