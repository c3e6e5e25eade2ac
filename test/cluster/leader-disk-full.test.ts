// Goal: when the leader's disk fills and a write fails there, the group goes on with what does not
// need room on the leader: it stays leader (it keeps sending heartbeats and appends), entries that
// the two followers hold are committed and applied, so pulls and acks through it are answered, and
// publishes are refused with 503 (through a follower too). Once there is room, its stuck write
// succeeds, publishing resumes, and the three replicas agree. Method: three real nodes, each on its
// own tmpfs (the test needs root: it fails, never skips, without it), --disk-reserve-bytes 0; the
// leader's tmpfs is shrunk to a few MiB more than it holds and filled by publishing.
import { execFileSync } from 'node:child_process';
import { rmSync, statfsSync } from 'node:fs';
import { afterAll, expect, test } from 'vitest';
import { api, apiOk, eventually, TestCluster } from '../helpers/herald-process.js';
import { call } from './util.js';

const mib = 1024 * 1024;
let cluster: TestCluster | undefined;
const mounted: string[] = [];

afterAll(async () => {
  for (const id of [...(cluster?.nodes.keys() ?? [])]) await cluster!.kill(id);
  for (const dir of mounted) execFileSync('umount', [dir]);
  for (const s of cluster?.specs ?? []) rmSync(s.dataDir, { recursive: true, force: true });
});

function remount(dir: string, extraBytes: number): void {
  const s = statfsSync(dir);
  const used = (s.blocks - s.bfree) * s.bsize;
  execFileSync('mount', ['-o', `remount,size=${Math.ceil((used + extraBytes) / mib)}m`, dir], { stdio: 'pipe' });
}

test('a leader whose write finds no room: still leads, pulls and acks are committed by the followers, publishes 503; room again: all resumes and replicas agree', async () => {
  cluster = await TestCluster.create(3);
  for (const s of cluster.specs) {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', s.dataDir], { stdio: 'pipe' });
    } catch (error) {
      throw new Error(`this test mounts a tmpfs per node and needs root (mount failed: ${(error as Error).message.trim()})`);
    }
    mounted.push(s.dataDir);
  }
  cluster.extraArgs = ['--disk-reserve-bytes', '0'];
  cluster.env = { HERALD_SEGMENT_BYTES: String(mib) };
  await cluster.startAll();
  const leader = await cluster.leader();
  const url = cluster.url(leader);
  const follower = cluster.url(cluster.specs.find((s) => s.id !== leader)!.id);
  await apiOk(url, 'PUT', '/v1/topics/t', {});
  await apiOk(url, 'PUT', '/v1/subscriptions/s', { topic: 't', startAt: 'earliest' });

  const leaderDir = cluster.specs.find((s) => s.id === leader)!.dataDir;
  const leaderOutput = () => cluster!.nodes.get(leader)!.output();
  remount(leaderDir, 4 * mib);
  let acked = 0;
  for (let i = 0; i < 200 && !leaderOutput().includes('herald: a storage write failed for lack of room'); i++) {
    // A publish caught in the failed write may not come back until there is room: don't wait for it.
    const r = await call(url, 'POST', '/v1/topics/t/messages', { messages: Array.from({ length: 25 }, (_, j) => ({ data: `${i}-${j}`.padEnd(8192, 'x') })) }, 1000);
    if (r.status === 200) acked += 25;
  }
  expect(leaderOutput()).toContain('herald: a storage write failed for lack of room');
  expect(acked).toBeGreaterThan(0);

  // Stalled: the same leader; pulls and acks through it are committed by the two followers.
  expect(await cluster.leader()).toBe(leader);
  const pulled = await call(url, 'POST', '/v1/subscriptions/s/pull', { max: 100 }, 10_000);
  expect(pulled.status).toBe(200);
  expect(pulled.body.messages).toHaveLength(100);
  const ack = await call(url, 'POST', '/v1/subscriptions/s/ack', { ackIds: pulled.body.messages.map((m: any) => m.ackId) }, 10_000);
  expect(ack.body.acked).toBe(100);
  for (const base of [url, follower]) {
    const refused = await call(base, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'refused' }] });
    expect(refused.status).toBe(503);
    expect(refused.body.error.message).toMatch(/storage is full: a write to disk failed for lack of room/);
  }
  expect(leaderOutput()).not.toContain('herald: storage writes work again');
  expect(await cluster.leader()).toBe(leader);

  // Room again.
  remount(leaderDir, 256 * mib);
  await eventually(async () => (await api(url, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'after' }] })).status === 200, 15_000);
  expect(leaderOutput()).toContain('herald: storage writes work again');
  const digests = async () =>
    Promise.all(cluster!.specs.map(async (s) => (await call(cluster!.url(s.id), 'GET', '/v1/cluster?digest=1')).body?.stateDigest as string | undefined));
  await eventually(async () => new Set(await digests()).size === 1, 15_000, 100);
  const topic = (await apiOk(url, 'GET', '/v1/topics/t')).body;
  expect(topic.messages).toBeGreaterThanOrEqual(acked + 1);
  expect((await apiOk(url, 'GET', '/v1/subscriptions/s')).body.backlog).toBe(topic.messages - 100);
}, 60_000);
