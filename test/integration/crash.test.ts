// Goal: a kill -9 loses nothing acknowledged. Method: a real node process under a concurrent publish
// load (and a consumer acking part of it) is killed with SIGKILL mid-load, then restarted on the same
// data dir, twice. Afterwards every publish that was answered 2xx is in the topic, and no message whose
// ack was answered 2xx is delivered again. Snapshots are taken every 500 entries, so restarts replay
// the log over a snapshot, not only from the start.
import { afterAll, expect, test } from 'vitest';
import { api, eventually, removeDataDir, startHerald, tempDataDir, type HeraldProcess } from '../helpers/herald-process.js';

const dataDir = tempDataDir('herald-crash-');
let h: HeraldProcess | undefined;
afterAll(async () => {
  await h?.kill();
  removeDataDir(dataDir);
});

const start = () => startHerald({ dataDir, args: ['--snapshot-entries', '500'] });

/** Publishes batches from `publishers` loops until stopped; records what was answered 2xx. */
function publishLoad(url: string, confirmed: Set<string>, prefix: string, publishers = 8) {
  let stop = false;
  let counter = 0;
  const loops = Array.from({ length: publishers }, async () => {
    while (!stop) {
      const batch = Array.from({ length: 10 }, () => `${prefix}-${counter++}`);
      try {
        const r = await api(url, 'POST', '/v1/topics/events/messages', { messages: batch.map((data) => ({ data })) });
        if (r.status === 200) for (const d of batch) confirmed.add(d);
      } catch {
        return; // the node died under us: this batch may or may not be stored
      }
    }
  });
  return { stop: () => (stop = true), done: Promise.all(loops) };
}

/** Pulls and acks until stopped; records what was acked with a 2xx. */
function ackLoad(url: string, acked: Set<string>) {
  let stop = false;
  const done = (async () => {
    while (!stop) {
      try {
        const r = await api(url, 'POST', '/v1/subscriptions/reader/pull', { max: 50, waitSeconds: 1 });
        const msgs = (r.body?.messages ?? []) as { data: string; ackId: string }[];
        if (msgs.length === 0) continue;
        const a = await api(url, 'POST', '/v1/subscriptions/reader/ack', { ackIds: msgs.map((m) => m.ackId) });
        if (a.status === 200 && a.body.invalid.length === 0) for (const m of msgs) acked.add(m.data);
      } catch {
        return;
      }
    }
  })();
  return { stop: () => (stop = true), done };
}

test('every acknowledged publish survives kill -9, and no acked message comes back', async () => {
  const confirmed = new Set<string>();
  const acked = new Set<string>();
  h = await start();
  expect((await api(h.url, 'PUT', '/v1/topics/events')).status).toBe(201);
  expect((await api(h.url, 'PUT', '/v1/subscriptions/reader', { topic: 'events', ackDeadlineSeconds: 600 })).status).toBe(201);

  for (let round = 0; round < 2; round++) {
    const pub = publishLoad(h.url, confirmed, `r${round}`);
    const cons = ackLoad(h.url, acked);
    // Let the load run until a good amount is confirmed, then crash the node in the middle of it.
    const before = confirmed.size;
    await eventually(() => confirmed.size >= before + 6000, 60_000);
    await h.kill();
    pub.stop();
    cons.stop();
    await Promise.all([pub.done, cons.done]);
    h = await start();
  }

  // Everything confirmed is in the topic, once.
  const topic = (await api(h.url, 'GET', '/v1/topics/events')).body;
  expect(topic.messages).toBeGreaterThanOrEqual(confirmed.size);
  const seen = new Map<string, number>();
  const audit = 'audit';
  expect((await api(h.url, 'PUT', `/v1/subscriptions/${audit}`, { topic: 'events', startAt: 'earliest' })).status).toBe(201);
  for (;;) {
    const r = await api(h.url, 'POST', `/v1/subscriptions/${audit}/pull`, { max: 1000 });
    const msgs = r.body.messages as { data: string; ackId: string }[];
    if (msgs.length === 0) break;
    for (const m of msgs) seen.set(m.data, (seen.get(m.data) ?? 0) + 1);
    await api(h.url, 'POST', `/v1/subscriptions/${audit}/ack`, { ackIds: msgs.map((m) => m.ackId) });
  }
  const missing = [...confirmed].filter((d) => !seen.has(d));
  expect(missing.slice(0, 5), `${missing.length} confirmed messages missing`).toEqual([]);
  expect([...seen.values()].every((c) => c === 1)).toBe(true);

  // The consumer's acked messages do not come back: drain what it still has to get (its unacked
  // leases keep their 600 s deadline, so only never-delivered messages come).
  expect(acked.size).toBeGreaterThan(0);
  const reader = (await api(h.url, 'GET', '/v1/subscriptions/reader')).body;
  expect(reader.acked).toBeGreaterThanOrEqual(acked.size);
  for (;;) {
    const r = await api(h.url, 'POST', '/v1/subscriptions/reader/pull', { max: 1000 });
    const msgs = r.body.messages as { data: string; ackId: string }[];
    if (msgs.length === 0) break;
    const back = msgs.filter((m) => acked.has(m.data)).map((m) => m.data);
    expect(back, 'acked messages delivered again').toEqual([]);
    await api(h.url, 'POST', '/v1/subscriptions/reader/ack', { ackIds: msgs.map((m) => m.ackId) });
  }
}, 180_000);

test('relaxed durability also survives kill -9 (the page cache outlives the process)', async () => {
  const dir = tempDataDir('herald-relaxed-');
  let n = await startHerald({ dataDir: dir, args: ['--durability', 'relaxed'] });
  try {
    expect((await api(n.url, 'PUT', '/v1/topics/events')).status).toBe(201);
    const confirmed = new Set<string>();
    const load = publishLoad(n.url, confirmed, 'relaxed', 4);
    await eventually(() => confirmed.size >= 2000, 30_000);
    await n.kill();
    load.stop();
    await load.done;
    n = await startHerald({ dataDir: dir, args: ['--durability', 'relaxed'] });
    const topic = (await api(n.url, 'GET', '/v1/topics/events')).body;
    expect(topic.messages).toBeGreaterThanOrEqual(confirmed.size);
  } finally {
    await n.kill();
    removeDataDir(dir);
  }
}, 60_000);
