// Goal: WebSocket delivery as API.md promises it, on a real node: subscription sockets (credits,
// ack, nack, ack deadlines, release on disconnect, competing sockets, backpressure from a slow reader,
// heartbeats, bad frames, refused upgrades) and topic tails (from a seq or a time, live messages,
// resuming, topic deletion). Method: real node processes and real `ws` clients on 127.0.0.1; each test
// has its own topic and subscription; every wait polls with a deadline, and every load loop is bounded.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { api, apiOk, eventually, removeDataDir, startHerald, type HeraldProcess } from '../helpers/herald-process.js';
import { WsClient } from '../helpers/ws-client.js';

let h: HeraldProcess;
/** A second node whose heartbeat is fast (200 ms), for the tests about pings. */
let fast: HeraldProcess;
const clients: WsClient[] = [];

beforeAll(async () => {
  [h, fast] = await Promise.all([startHerald(), startHerald({ env: { HERALD_WS_PING_MS: '200' } })]);
});
afterAll(async () => {
  for (const c of clients) c.ws.terminate();
  await Promise.all([h.stop(), fast.stop()]);
  removeDataDir(h.dataDir);
  removeDataDir(fast.dataDir);
});

let n = 0;
async function setup(sub: Record<string, unknown> = {}, base = h.url): Promise<{ t: string; s: string }> {
  n++;
  const t = `ws-topic-${n}`;
  const s = `ws-sub-${n}`;
  await apiOk(base, 'PUT', `/v1/topics/${t}`, {});
  await apiOk(base, 'PUT', `/v1/subscriptions/${s}`, { topic: t, startAt: 'earliest', ...sub });
  return { t, s };
}

async function publish(t: string, count: number, data: (i: number) => string = (i) => `m${i}`, base = h.url): Promise<void> {
  for (let i = 0; i < count; i += 1000) {
    const messages = Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({ data: data(i + j) }));
    await apiOk(base, 'POST', `/v1/topics/${t}/messages`, { messages });
  }
}

async function open(path: string, base = h.url, options = {}): Promise<WsClient> {
  const c = await WsClient.open(base, path, options);
  clients.push(c);
  return c;
}

const stats = async (s: string, base = h.url) => (await apiOk(base, 'GET', `/v1/subscriptions/${s}`)).body;

describe('subscription sockets', () => {
  test('credits bound what is sent: no more messages than credits', async () => {
    const { t, s } = await setup();
    await publish(t, 20);
    const c = await open(`/v1/subscriptions/${s}/ws`);
    c.credit(5);
    const first = await c.take(5);
    // Anything sent before the barrier's answer has arrived: exactly the 5 credited.
    expect(await c.barrier()).toEqual([]);
    expect(first.map((f) => f.type)).toEqual(Array(5).fill('message'));
    expect((await stats(s)).inFlight).toBe(5);
    c.credit(3);
    const more = await c.take(3);
    expect(await c.barrier()).toEqual([]);
    const seqs = [...first, ...more].map((f) => f.seq);
    expect(new Set(seqs).size).toBe(8);
    expect((await stats(s)).inFlight).toBe(8);
    // The frame is pull's message object.
    expect(first[0]).toMatchObject({ type: 'message', seq: 1, data: 'm0', encoding: 'utf8', attributes: {}, tags: [], deliveryAttempt: 1 });
    expect(typeof first[0].ackId).toBe('string');
    expect(typeof first[0].id).toBe('string');
  });

  test('ack removes: the backlog goes to 0 (and queues answer under /v1/queues too)', async () => {
    await apiOk(h.url, 'PUT', '/v1/queues/ws-queue', {});
    await apiOk(h.url, 'POST', '/v1/queues/ws-queue/messages', { messages: Array.from({ length: 10 }, (_, i) => ({ data: `q${i}` })) });
    const c = await open('/v1/queues/ws-queue/ws');
    c.credit(10);
    const got = await c.take(10);
    // Two ack frames in one write: the server batches them.
    c.ws.send(JSON.stringify({ type: 'ack', ackIds: got.slice(0, 5).map((f) => f.ackId) }));
    c.ws.send(JSON.stringify({ type: 'ack', ackIds: got.slice(5).map((f) => f.ackId) }));
    await eventually(async () => {
      const st = await stats('ws-queue');
      return st.backlog === 0 && st.inFlight === 0 && st.acked === 10;
    });
  });

  test('nack redelivers with deliveryAttempt 2 and a new ackId', async () => {
    const { t, s } = await setup();
    await publish(t, 1);
    const c = await open(`/v1/subscriptions/${s}/ws`);
    c.credit(2);
    const [first] = await c.take(1);
    expect(first.deliveryAttempt).toBe(1);
    c.send({ type: 'nack', ackIds: [first.ackId], delaySeconds: 0 });
    const again = await c.next('message');
    expect(again).toMatchObject({ seq: first.seq, deliveryAttempt: 2 });
    expect(again.ackId).not.toBe(first.ackId);
    c.ack([again.ackId]);
    await eventually(async () => (await stats(s)).backlog === 0);
  });

  test('a client that never acks gets the message again after the ack deadline', async () => {
    const { t, s } = await setup({ ackDeadlineSeconds: 1 });
    await publish(t, 1);
    const c = await open(`/v1/subscriptions/${s}/ws`);
    c.credit(2);
    const [first] = await c.take(1);
    const sentAt = Date.now();
    const again = await c.next('message', 10_000);
    expect(again).toMatchObject({ seq: first.seq, deliveryAttempt: 2 });
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(800);
  });

  test('a socket that drops mid-stream gives its unacked messages back at once', async () => {
    const { t, s } = await setup({ ackDeadlineSeconds: 600 });
    await publish(t, 50);
    const a = await open(`/v1/subscriptions/${s}/ws`);
    a.credit(10);
    const got = await a.take(10);
    const acked = got.slice(0, 4);
    a.ack(acked.map((f) => f.ackId));
    await eventually(async () => (await stats(s)).acked === 4);
    a.ws.terminate(); // no close frame: the connection just ends
    const droppedAt = Date.now();
    const b = await open(`/v1/subscriptions/${s}/ws`);
    b.credit(100);
    const rest = await b.take(46, 10_000);
    // Well before the 600 s deadline, and none of the acked ones.
    expect(Date.now() - droppedAt).toBeLessThan(10_000);
    const seqs = rest.map((f) => f.seq).sort((x, y) => x - y);
    const ackedSeqs = new Set(acked.map((f) => f.seq));
    expect(seqs.filter((x) => ackedSeqs.has(x))).toEqual([]);
    expect(new Set(seqs).size).toBe(46);
    // The six that `a` held come back as second attempts.
    const held = new Set(got.slice(4).map((f) => f.seq));
    for (const f of rest) expect(f.deliveryAttempt).toBe(held.has(f.seq) ? 2 : 1);
  });

  test('two sockets on one subscription: every message delivered, each acked exactly once, none to both', async () => {
    const total = 2000;
    const { t, s } = await setup({ ackDeadlineSeconds: 300 });
    const [a, b] = await Promise.all([open(`/v1/subscriptions/${s}/ws`), open(`/v1/subscriptions/${s}/ws`)]);
    const owner = new Map<number, WsClient>();
    const twice: number[] = [];
    let acks = 0;
    // Each consumer acks what it gets as it gets it and tops its credits up: a steady stream.
    for (const c of [a, b]) {
      let credits = 100;
      c.credit(credits);
      c.ws.on('message', (raw) => {
        const f = JSON.parse(raw.toString());
        if (f.type !== 'message') return;
        if (owner.has(f.seq)) twice.push(f.seq);
        owner.set(f.seq, c);
        c.ack([f.ackId]);
        acks++;
        if (--credits < 50) {
          c.credit(50);
          credits += 50;
        }
      });
    }
    await publish(t, total);
    await eventually(async () => {
      const st = await stats(s);
      return st.acked === total && st.backlog === 0 && st.inFlight === 0;
    }, 30_000, 50);
    expect(twice).toEqual([]);
    expect(acks).toBe(total);
    expect(owner.size).toBe(total);
    const aShare = [...owner.values()].filter((c) => c === a).length;
    // Both competed for the stream.
    expect(aShare).toBeGreaterThan(0);
    expect(aShare).toBeLessThan(total);
    expect((await stats(s)).delivered).toBe(total);
  }, 60_000);

  test('a slow reader does not make the server lease (or buffer) without bound', async () => {
    const count = 2000;
    const size = 32 * 1024;
    const { t, s } = await setup({ ackDeadlineSeconds: 300 });
    for (let i = 0; i < count; i += 100) {
      const messages = Array.from({ length: 100 }, (_, j) => ({ data: `${i + j}:`.padEnd(size, 'x') }));
      await apiOk(h.url, 'POST', `/v1/topics/${t}/messages`, { messages });
    }
    const c = await open(`/v1/subscriptions/${s}/ws`);
    // The client stops reading its socket, then grants credit for everything.
    c.ws.pause();
    c.credit(count);
    // inFlight grows while the kernel's buffers and the server's send buffer fill, then stops.
    let last = -1;
    let same = 0;
    const settled = await eventually(async () => {
      const now = (await stats(s)).inFlight;
      same = now === last && now > 0 ? same + 1 : 0;
      last = now;
      return same >= 5 ? now : 0;
    }, 30_000, 200);
    console.log(`[ws slow reader] ${settled} of ${count} leased while the client did not read`);
    // 64 MB of credit, but only the kernel's socket buffers (a few MB) and about 1 MiB at the server.
    expect(settled).toBeLessThan(count / 4);
    // Reading again, the client gets everything, in order of lease.
    c.ws.resume();
    const seen = new Set<number>();
    await eventually(() => {
      for (const f of c.frames.splice(0)) {
        if (f.type !== 'message') continue;
        seen.add(f.seq);
        c.ack([f.ackId]);
      }
      return seen.size === count;
    }, 60_000, 20);
    await eventually(async () => (await stats(s)).backlog === 0, 20_000);
  }, 120_000);

  test('bad frames get error frames and the socket stays open', async () => {
    const { t, s } = await setup();
    const c = await open(`/v1/subscriptions/${s}/ws`);
    const bad: (string | Buffer)[] = [
      'not json',
      '[1,2]',
      '{"type":"subscribe"}',
      '{"n":3}',
      '{"type":"credit","n":0}',
      '{"type":"credit","n":1.5}',
      '{"type":"credit","n":10001}',
      '{"type":"credit","n":1,"extra":true}',
      '{"type":"ack","ackIds":[]}',
      JSON.stringify({ type: 'ack', ackIds: Array.from({ length: 1001 }, (_, i) => `${i}.1`) }),
      JSON.stringify({ type: 'ack', ackIds: ['x'.repeat(257)] }),
      '{"type":"ack","ackIds":[7]}',
      '{"type":"nack","ackIds":["1.1"],"delaySeconds":-1}',
      Buffer.from([1, 2, 3]),
    ];
    for (const f of bad) c.ws.send(f);
    const errors = await c.take(bad.length);
    for (const e of errors) {
      expect(e.type).toBe('error');
      expect(e.code).toBe('InvalidRequest');
      expect(typeof e.message).toBe('string');
    }
    // Credits over the outstanding limit are refused as a whole.
    c.credit(10_000);
    c.credit(1);
    expect(await c.next('error')).toMatchObject({ code: 'InvalidRequest' });
    // Unknown ackIds are not errors (as HTTP's `invalid`): no frame comes back.
    c.ack(['999.999']);
    expect(await c.barrier()).toEqual([]);
    // Still open and working.
    await publish(t, 1);
    expect(await c.next('message')).toMatchObject({ seq: 1 });
    expect(c.ws.readyState).toBe(c.ws.OPEN);
  });

  test('abusive clients are closed: a frame over 1 MiB (1009), 101 bad frames in a row (1008)', async () => {
    const { s } = await setup();
    const big = await open(`/v1/subscriptions/${s}/ws`);
    big.send('x'.repeat(1024 * 1024 + 1));
    expect((await big.closed).code).toBe(1009);
    const noisy = await open(`/v1/subscriptions/${s}/ws`);
    for (let i = 0; i < 101; i++) noisy.send('nope');
    expect((await noisy.closed).code).toBe(1008);
  });

  test('unknown subscription: 404 before upgrading; bad names 400; unknown routes 404', async () => {
    const r = await WsClient.refusal(h.url, '/v1/subscriptions/no-such-sub/ws');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: { code: 'SubscriptionNotFound', message: expect.any(String) } });
    expect((await WsClient.refusal(h.url, '/v1/queues/no-such-queue/ws')).body.error.code).toBe('SubscriptionNotFound');
    const badName = await WsClient.refusal(h.url, '/v1/subscriptions/-bad/ws');
    expect(badName.status).toBe(400);
    expect(badName.body.error.code).toBe('InvalidRequest');
    const noRoute = await WsClient.refusal(h.url, '/v1/things/x/ws');
    expect(noRoute.status).toBe(404);
    expect(noRoute.body.error.code).toBe('NotFound');
  });

  test('a deleted subscription closes its sockets with an error frame', async () => {
    const { s } = await setup();
    const c = await open(`/v1/subscriptions/${s}/ws`);
    await apiOk(h.url, 'DELETE', `/v1/subscriptions/${s}`);
    expect(await c.next('error')).toMatchObject({ code: 'SubscriptionNotFound' });
    expect((await c.closed).code).toBe(1000);
  });
});

describe('heartbeats (pings every 200 ms)', () => {
  test('a client that answers pings stays connected', async () => {
    const { s } = await setup({}, fast.url);
    const c = await open(`/v1/subscriptions/${s}/ws`, fast.url);
    await eventually(() => c.pings >= 5, 10_000);
    expect(c.ws.readyState).toBe(c.ws.OPEN);
  });

  test('a client that does not answer is cut off, and its message goes to another consumer at once', async () => {
    const { t, s } = await setup({ ackDeadlineSeconds: 600 }, fast.url);
    await publish(t, 1, undefined, fast.url);
    const dead = await open(`/v1/subscriptions/${s}/ws`, fast.url, { autoPong: false });
    dead.credit(1);
    const [m] = await dead.take(1);
    const closed = await Promise.race([dead.closed, new Promise<undefined>((r) => setTimeout(r, 5000))]);
    expect(closed, 'the server did not cut the silent client').toBeDefined();
    expect(closed!.code).toBe(1006); // terminated: no close frame
    const other = await open(`/v1/subscriptions/${s}/ws`, fast.url);
    other.credit(1);
    expect(await other.next('message', 5000)).toMatchObject({ seq: m.seq, deliveryAttempt: 2 });
  });
});

describe('topic tails', () => {
  test('from a seq: the retained messages from there, then live ones; no delivery fields', async () => {
    const { t } = await setup();
    await publish(t, 10);
    const c = await open(`/v1/topics/${t}/ws?from=4`);
    const frames = await c.take(7);
    expect(frames.map((f) => f.seq)).toEqual([4, 5, 6, 7, 8, 9, 10]);
    for (const f of frames) {
      expect(f.type).toBe('message');
      expect(f).not.toHaveProperty('ackId');
      expect(f).not.toHaveProperty('deliveryAttempt');
    }
    expect(frames[0]).toMatchObject({ data: 'm3', encoding: 'utf8', attributes: {}, tags: [], routingKey: null, orderingKey: null });
    await publish(t, 2, (i) => `live${i}`);
    expect((await c.take(2)).map((f) => [f.seq, f.data])).toEqual([[11, 'live0'], [12, 'live1']]);
  });

  test('from an ISO time: from the first message published at or after it', async () => {
    const { t } = await setup();
    await publish(t, 3);
    const cut = Date.now() + 5;
    await eventually(() => Date.now() > cut + 1, 1000, 2);
    await publish(t, 3, (i) => `after${i}`);
    const c = await open(`/v1/topics/${t}/ws?from=${encodeURIComponent(new Date(cut).toISOString())}`);
    const frames = await c.take(3);
    expect(frames.map((f) => f.data)).toEqual(['after0', 'after1', 'after2']);
    expect(frames[0].seq).toBe(4);
  });

  test('without from: only what is published after connecting', async () => {
    const { t } = await setup();
    await publish(t, 5);
    const c = await open(`/v1/topics/${t}/ws`);
    await publish(t, 1, () => 'new');
    expect(await c.next('message')).toMatchObject({ seq: 6, data: 'new' });
  });

  test('a reconnecting client resumes after the last seq it saw', async () => {
    const { t } = await setup();
    await publish(t, 10);
    const first = await open(`/v1/topics/${t}/ws?from=1`);
    const seen = (await first.take(10)).slice(0, 6);
    await first.close();
    await publish(t, 5, (i) => `later${i}`);
    const lastSeq = seen[seen.length - 1].seq;
    const second = await open(`/v1/topics/${t}/ws?from=${lastSeq + 1}`);
    const rest = await second.take(9);
    expect([...seen, ...rest].map((f) => f.seq)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
  });

  test('a tail keeps up with a large backlog, in order, without gaps', async () => {
    const { t } = await setup();
    await publish(t, 5000);
    const c = await open(`/v1/topics/${t}/ws?from=1`);
    const frames = await c.take(5000, 30_000);
    for (let i = 0; i < frames.length; i++) expect(frames[i].seq).toBe(i + 1);
  });

  test('bad from: 400 before upgrading; unknown topic: 404', async () => {
    const { t } = await setup();
    for (const from of ['abc', '0', '-1', '', '2024-13-45T00:00:00Z', '1.5']) {
      const r = await WsClient.refusal(h.url, `/v1/topics/${t}/ws?from=${encodeURIComponent(from)}`);
      expect(r.status, `from=${from}`).toBe(400);
      expect(r.body.error.code).toBe('InvalidRequest');
    }
    const r = await WsClient.refusal(h.url, '/v1/topics/no-such-topic/ws?from=1');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: { code: 'TopicNotFound', message: expect.any(String) } });
  });

  test('deleting the topic ends its tails with an error frame', async () => {
    const { t } = await setup();
    const c = await open(`/v1/topics/${t}/ws?from=1`);
    await apiOk(h.url, 'DELETE', `/v1/topics/${t}`);
    expect(await c.next('error')).toMatchObject({ code: 'TopicNotFound' });
    expect((await c.closed).code).toBe(1000);
  });
});

test('an upgrade that is not a WebSocket gets a JSON error too', async () => {
  const { request } = await import('node:http');
  const r = await new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = request(`${h.url}/v1/topics/x/ws`, { headers: { connection: 'upgrade', upgrade: 'h2c' } });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end();
  });
  expect(r.status).toBe(400);
  expect(r.body.error.code).toBe('InvalidRequest');
});
