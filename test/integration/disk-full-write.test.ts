// Goal: a write that fails for lack of room (the disk guard did not stop it first) does not stop the
// node. While it cannot write, the node serves (health, reads) and refuses publishes with 503; a
// publish caught in the failed write is answered once there is room; nothing acknowledged is lost;
// publishing resumes by itself; a restart finds everything; and a stop while a write waits for room
// is prompt. Method: real nodes whose data directory is on a small tmpfs (so this test needs root:
// it fails, never skips, without it), with --disk-reserve-bytes 0 so the guard never refuses first.
// A node publishes 200 KiB batches until a write fails (its warning shows), we check what it serves,
// grow the tmpfs (`mount -o remount`) and wait (polling, with deadlines) for the stuck publish and
// for new publishes to succeed, then restart it and read everything back. Twice: with LMDB's files
// elsewhere (symlinked), so that the segment files' writev finds no room, and with the segment files
// elsewhere, so that LMDB's commit does (log entries kept in LMDB there, HERALD_ENTRY_IN_SEGMENT_BYTES:
// publish batches go to the segment files otherwise). Then, with room short again, a node is stopped
// while its write waits.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { api, apiOk, eventually, startHerald, type HeraldProcess } from '../helpers/herald-process.js';

const mib = 1024 * 1024;
const stallWarning = 'herald: a storage write failed for lack of room';
const recoveryWarning = 'herald: storage writes work again';

let root = '';
let mnt = '';
let mounted = false;
const running: HeraldProcess[] = [];

/** `entriesInLmdb`: log entries stay in LMDB (not in the segment files), so that LMDB's commit fills the disk. */
async function start(dataDir: string, entriesInLmdb = false): Promise<HeraldProcess> {
  const env: Record<string, string> = { HERALD_SEGMENT_BYTES: String(mib) };
  if (entriesInLmdb) env.HERALD_ENTRY_IN_SEGMENT_BYTES = String(1 << 30);
  const p = await startHerald({ dataDir, env, args: ['--disk-reserve-bytes', '0'] });
  running.push(p);
  return p;
}

function mount(...args: string[]): void {
  execFileSync('mount', args, { stdio: 'pipe' });
}

/** Gives the tmpfs `bytes` more than it holds now. */
function roomFor(bytes: number): void {
  const s = statfsSync(mnt);
  const used = (s.blocks - s.bfree) * s.bsize;
  mount('-o', `remount,size=${Math.ceil((used + bytes) / mib)}m`, mnt);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'herald-disk-full-write-'));
  mnt = join(root, 'tmpfs');
  mkdirSync(mnt);
  try {
    mount('-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mnt);
  } catch (error) {
    throw new Error(`this test mounts a tmpfs as the nodes' data directory and needs root (mount failed: ${(error as Error).message.trim()})`);
  }
  mounted = true;
});
afterAll(async () => {
  for (const p of running) await p.kill();
  if (mounted) execFileSync('umount', [mnt]);
  rmSync(root, { recursive: true, force: true });
});

/**
 * The publish in flight when a write failed. The failed write may be its log entry (then it waits,
 * and is answered 200 once there is room) or the bodies of the publish before it, which was answered
 * when its entry was on disk (then this one may have been refused with 503 already).
 */
interface Stuck {
  batch: string[];
  answer: () => { status: number; body: any } | undefined;
}

/**
 * Publishes 25 × 8 KiB batches, one at a time, adding each acknowledged one to `acked`, until a
 * write fails (the node's warning shows) while a publish is in flight.
 */
async function publishUntilStalled(p: HeraldProcess, acked: Set<string>, round: string): Promise<Stuck> {
  const warningsBefore = p.output().split(stallWarning).length;
  for (let i = 0; i < 1000; i++) {
    const batch = Array.from({ length: 25 }, (_, j) => `${round}-${i}-${j}-`.padEnd(8192, 'x'));
    let answer: { status: number; body: any } | undefined;
    void api(p.url, 'POST', '/v1/topics/t/messages', { messages: batch.map((data) => ({ data })) }).then(
      (r) => (answer = r),
      (e: unknown) => (answer = { status: 0, body: String(e) }),
    );
    await eventually(() => answer !== undefined || p.output().split(stallWarning).length > warningsBefore, 20_000, 10);
    if (answer === undefined) return { batch, answer: () => answer };
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    for (const d of batch) acked.add(d);
  }
  throw new Error('the disk never filled');
}

/** The data of every message a new subscription from the earliest reads, acking as it goes. */
async function readAll(p: HeraldProcess, sub: string, expected: number): Promise<string[]> {
  await apiOk(p.url, 'PUT', `/v1/subscriptions/${sub}`, { topic: 't', startAt: 'earliest' });
  const seen: string[] = [];
  await eventually(async () => {
    const r = await apiOk(p.url, 'POST', `/v1/subscriptions/${sub}/pull`, { max: 1000 });
    for (const m of r.body.messages) seen.push(m.data);
    if (r.body.messages.length > 0) await apiOk(p.url, 'POST', `/v1/subscriptions/${sub}/ack`, { ackIds: r.body.messages.map((m: any) => m.ackId) });
    return seen.length >= expected;
  }, 15_000);
  return seen;
}

function noSpaceFailures(metrics: string): number {
  const m = /^herald_storage_write_failures_total\{reason="no_space"\} (\d+)/m.exec(metrics);
  return m ? Number(m[1]) : 0;
}

/** Fills the disk under a fresh node, checks it through the stall, gives room back, restarts it. */
async function stallAndRecover(dataDir: string, failedWrite: RegExp, entriesInLmdb = false): Promise<void> {
  let h = await start(dataDir, entriesInLmdb);
  await apiOk(h.url, 'PUT', '/v1/topics/t', {});
  const acked = new Set<string>();
  const stuck = await publishUntilStalled(h, acked, 'a');
  expect(acked.size).toBeGreaterThan(0);
  expect(h.output()).toMatch(failedWrite);

  // Stalled: the process serves, refuses publishes, and keeps trying the write (warning once).
  expect(h.child.exitCode).toBeNull();
  expect((await api(h.url, 'GET', '/healthz')).status).toBe(200);
  expect((await api(h.url, 'GET', '/readyz')).status).toBe(200);
  const refused = await api(h.url, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'refused' }] });
  expect(refused.status).toBe(503);
  expect(refused.body.error.code).toBe('Unavailable');
  expect(refused.body.error.message).toMatch(/storage is full: a write to disk failed for lack of room/);
  expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
  expect((await api(h.url, 'GET', '/v1/topics/t')).body.messages).toBe(acked.size);
  await eventually(async () => noSpaceFailures(await (await fetch(`${h.url}/metrics`)).text()) >= 3, 10_000, 100);
  expect(h.output().split(stallWarning).length - 1).toBe(1);
  expect([undefined, 503]).toContain(stuck.answer()?.status);

  // Room again: the publish in flight is answered (if it waited), and publishing resumes by itself.
  const waited = stuck.answer() === undefined;
  roomFor(256 * mib);
  await eventually(() => stuck.answer() !== undefined, 10_000);
  expect(stuck.answer()!.status).toBe(waited ? 200 : 503);
  if (waited) for (const d of stuck.batch) acked.add(d);
  await eventually(async () => (await api(h.url, 'POST', '/v1/topics/t/messages', { messages: [{ data: 'after' }] })).status === 200, 10_000);
  acked.add('after');
  expect(h.output()).toContain(recoveryWarning);
  expect((await api(h.url, 'GET', '/v1/topics/t')).body.messages).toBe(acked.size);
  expect(new Set(await readAll(h, 'first', acked.size))).toEqual(acked);

  // A restart finds every message (bodies read back from the segment files).
  await h.stop();
  h = await start(dataDir, entriesInLmdb);
  expect((await api(h.url, 'GET', '/v1/topics/t')).body.messages).toBe(acked.size);
  expect(new Set(await readAll(h, 'second', acked.size))).toEqual(acked);
  expect((await api(h.url, 'GET', '/v1/subscriptions/first')).body.backlog).toBe(0);
  await h.stop();
}

/** A data directory on the tmpfs with `names` in it symlinked to a directory off it. */
function dataDirWithElsewhere(name: string, names: string[]): string {
  const dataDir = join(mnt, name);
  const elsewhere = join(root, `${name}-elsewhere`);
  mkdirSync(dataDir);
  mkdirSync(elsewhere);
  for (const n of names) symlinkSync(join(elsewhere, n), join(dataDir, n));
  return dataDir;
}

test('segment files find the disk full: publishes 503 meanwhile, nothing acknowledged lost, publishing resumes once there is room, and after a restart', async () => {
  const dataDir = dataDirWithElsewhere('segments-full', ['herald.mdb', 'herald.mdb-lock']);
  await stallAndRecover(dataDir, /lack of room \(no_space: ENOSPC: no space left on device, write/);
}, 60_000);

test('LMDB finds the disk full at commit: the same', async () => {
  const dataDir = dataDirWithElsewhere('lmdb-full', ['segments']);
  mkdirSync(join(root, 'lmdb-full-elsewhere', 'segments'));
  roomFor(12 * mib);
  // LMDB reports a short write as EIO (taken for no room when the disk is nearly full), one that
  // wrote nothing as ENOSPC.
  await stallAndRecover(dataDir, /lack of room \(no_space: (Input\/output error|No space left on device)/, true);
}, 60_000);

test('a stop while a write waits for room is prompt; what was acknowledged is there after it', async () => {
  // LMDB's commit fails here, so the publish in flight is (almost always) the one caught waiting.
  const dataDir = join(mnt, 'lmdb-full');
  let h = await start(dataDir, true);
  const stored = (await api(h.url, 'GET', '/v1/topics/t')).body.messages as number;
  expect(stored).toBeGreaterThan(0);
  roomFor(6 * mib);
  const acked = new Set<string>();
  const stuck = await publishUntilStalled(h, acked, 'b');
  // A retry or two later, the publish in flight is either refused or waiting for the write.
  await eventually(async () => noSpaceFailures(await (await fetch(`${h.url}/metrics`)).text()) >= 2, 10_000, 50);

  const stoppedAt = Date.now();
  await h.stop();
  expect(Date.now() - stoppedAt).toBeLessThan(5_000);
  expect(h.child.exitCode).toBe(0);
  // Refused, or given up at the stop: never acknowledged.
  await eventually(() => stuck.answer() !== undefined, 5_000);
  expect(stuck.answer()!.status, JSON.stringify(stuck.answer()!.body)).toBe(503);

  roomFor(256 * mib);
  h = await start(dataDir, true);
  // What was acknowledged before the stop is there; the publish in flight never reached the disk.
  expect((await api(h.url, 'GET', '/v1/topics/t')).body.messages).toBe(stored + acked.size);
  const read = new Set(await readAll(h, 'after-stop', stored + acked.size));
  for (const d of acked) expect(read.has(d), d).toBe(true);
  for (const d of stuck.batch) expect(read.has(d), d).toBe(false);
}, 60_000);
