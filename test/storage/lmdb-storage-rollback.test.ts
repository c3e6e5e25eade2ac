// Goal: a storage step that fails (a segment write or the LMDB commit, for lack of room or otherwise)
// leaves storage exactly as it was, and the same StepWrite given again writes exactly what one
// successful step would have: every message readable, index and live counts alike, segment files of
// the same lengths, and a reopened store the same. Method: each case runs the same sequence on two
// stores, one where a step fails once (a SegmentFiles whose writev runs out of room half-way, a throw
// inside the LMDB transaction, or a real full tmpfs under LMDB: that case needs root, and fails
// without it) and one where nothing fails, and compares them after the retry and again after
// reopening both. Segments are 64 KiB, so a step's bodies span several segment files.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import type { BrokerSnapshot } from '../../src/core/broker/machine.js';
import type { StoredMessage } from '../../src/core/broker/types.js';
import type { ConfState, Entry } from '../../src/core/raft/types.js';
import type { StepWrite } from '../../src/storage/lmdb-storage.js';

// Read when segments.ts is first imported, hence the dynamic imports below.
process.env.HERALD_SEGMENT_BYTES = String(64 * 1024);
const { LmdbStorage, LocatedRecords, StorageFullError, entryInSegmentBytesMin } = await import('../../src/storage/lmdb-storage.js');
const { SegmentFiles, encodeRecord } = await import('../../src/storage/segments.js');
const { storeHarness } = await import('./store-harness.js');
type Storage = InstanceType<typeof LmdbStorage>;

const conf: ConfState = { voters: [1], learners: [] };
const state = { topics: [] } as unknown as BrokerSnapshot;
const { cleanups, tempDir, open, close } = storeHarness(LmdbStorage, conf, 'herald-rollback-');

function message(seq: number, bytes = 4096): StoredMessage {
  const m: StoredMessage = { seq, publishTimeMs: 1_000 + seq, visibleAtMs: 2_000 + seq, encoding: 'utf8', data: Buffer.alloc(bytes, `m${seq}-`) };
  if (seq % 3 === 0) m.attributes = { n: String(seq) };
  return m;
}

function entries(from: number, to: number, term = 1, bytes = 64): Entry[] {
  return Array.from({ length: to - from + 1 }, (_, i) => ({ index: from + i, term, data: Buffer.alloc(bytes, `e${from + i}`) }));
}

function putAll(stores: Storage[], topicId: number, from: number, to: number): void {
  for (const s of stores) for (let seq = from; seq <= to; seq++) s.put(topicId, message(seq));
}

/** Segment file names and lengths. */
function segmentFiles(dir: string): [string, number][] {
  return readdirSync(join(dir, 'segments'))
    .sort()
    .map((f) => [f, statSync(join(dir, 'segments', f)).size]);
}

/** What the store holds in memory besides messages (private fields, read for the comparison). */
function inner(s: Storage) {
  const x = s as unknown as { liveCounts: Map<number, number>; indexLastKey: [number, number]; clearing: unknown[] };
  return {
    liveCounts: [...x.liveCounts].sort((a, b) => a[0] - b[0]),
    indexLastKey: x.indexLastKey,
    clearing: [...x.clearing],
    firstIndex: s.firstIndex(),
    lastIndex: s.lastIndex(),
    snapshot: s.snapshot().index,
    pendingWrites: s.hasPendingWrites(),
    deferredDeletes: s.hasDeferredDeletes(),
  };
}

/** Every message of `topics` (id → highest seq) as each store reads it (undefined where it has none). */
function messages(s: Storage, topics: Record<number, number>) {
  const out: Record<string, StoredMessage | undefined> = {};
  for (const [topicId, last] of Object.entries(topics)) {
    for (let seq = 1; seq <= last; seq++) {
      const m = s.get(Number(topicId), seq);
      out[`${topicId}/${seq}`] = m && { ...m, data: Buffer.from(m.data) };
    }
  }
  return out;
}

function terms(s: Storage): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  for (let i = s.firstIndex(); i <= s.lastIndex(); i++) out.push(s.term(i));
  return out;
}

async function expectSame(a: { s: Storage; dir: string }, b: { s: Storage; dir: string }, topics: Record<number, number>): Promise<void> {
  await Promise.all([a.s.removalsDone(), b.s.removalsDone()]); // segment files go in the background
  expect(segmentFiles(a.dir)).toEqual(segmentFiles(b.dir));
  expect(inner(a.s)).toEqual(inner(b.s));
  expect(terms(a.s)).toEqual(terms(b.s));
  expect(messages(a.s, topics)).toEqual(messages(b.s, topics));
}

/** Reopens both stores from disk and compares again. */
async function expectSameAfterReopen(a: { s: Storage; dir: string }, b: { s: Storage; dir: string }, topics: Record<number, number>) {
  await close(a.s);
  await close(b.s);
  const a2 = { s: open(a.dir), dir: a.dir };
  const b2 = { s: open(b.dir), dir: b.dir };
  await expectSame(a2, b2, topics);
  return { a: a2, b: b2 };
}

/** Segment files whose writev runs out of room half-way, once, after `okWrites` more writes work. */
class FillingSegments extends SegmentFiles {
  plan: { okWrites: number } | undefined;
  protected override write(fd: number, buffers: Buffer[]): number {
    if (this.plan && this.plan.okWrites-- <= 0) {
      this.plan = undefined;
      const first = buffers[0]!;
      super.write(fd, [first.subarray(0, Math.ceil(first.length / 2))]);
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
    return super.write(fd, buffers);
  }
}

test('a segment write that runs out of room half-way (after a rotation) is undone; the same step again writes what one step would', async () => {
  let segments: FillingSegments | undefined;
  const failing = { dir: tempDir(), s: undefined as unknown as Storage };
  failing.s = open(failing.dir, { segmentFiles: (dir) => (segments = new FillingSegments(dir)) });
  const clean = { dir: tempDir(), s: undefined as unknown as Storage };
  clean.s = open(clean.dir);
  const both = [failing.s, clean.s];

  putAll(both, 1, 1, 5);
  for (const s of both) await s.step({ entries: entries(1, 2), hardState: { term: 1, vote: 1, commit: 2 } });
  const filesBefore = segmentFiles(failing.dir);

  // 35 bodies of 4 KiB: segment 1 fills, the write before the rotation works, the next one fails.
  putAll(both, 1, 6, 40);
  const innerBefore = inner(failing.s);
  const write: StepWrite = { entries: entries(3, 5), hardState: { term: 1, vote: 1, commit: 5 } };
  segments!.plan = { okWrites: 1 };
  const error = await failing.s.step(write).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(StorageFullError);
  expect((error as InstanceType<typeof StorageFullError>).reason).toBe('no_space');
  // Nothing of it stays: the new segment is gone, the old one cut back; the log did not move.
  expect(segmentFiles(failing.dir)).toEqual(filesBefore);
  expect(inner(failing.s)).toEqual(innerBefore);
  expect(failing.s.term(3)).toBeUndefined();
  // Bodies not yet written are still read from memory.
  expect(messages(failing.s, { 1: 40 })).toEqual(messages(clean.s, { 1: 40 }));

  await clean.s.step(write);
  // A put applied while the failed step waited goes in the next step, not in the retry.
  putAll(both, 1, 41, 41);
  await failing.s.step(write);
  await expectSame(failing, clean, { 1: 41 });
  expect(failing.s.hasPendingWrites()).toBe(true);

  for (const s of both) await s.step({ entries: entries(6, 6), hardState: null });
  await expectSame(failing, clean, { 1: 41 });
  await expectSameAfterReopen(failing, clean, { 1: 41 });
});

// Sync mode commits on lmdb-js's write thread, relaxed mode on the calling thread (transactionSync):
// a failure must undo the step either way.
test.each(['sync', 'relaxed'] as const)('a transaction that fails after the bodies are appended (a snapshot step with removals) is undone; the retry takes the same removals, none applied since (%s)', async (durability) => {
  let failNext = false;
  const inStepTransaction = () => {
    if (!failNext) return;
    failNext = false;
    throw Object.assign(new Error('MDB_MAP_FULL: Environment mapsize limit reached'), { code: -30792 });
  };
  const failing = { dir: tempDir(), s: undefined as unknown as Storage };
  failing.s = open(failing.dir, { inStepTransaction, durability });
  const clean = { dir: tempDir(), s: undefined as unknown as Storage };
  clean.s = open(clean.dir, { durability });
  const both = [failing.s, clean.s];
  expect(failing.s.commitsInline).toBe(durability === 'relaxed');

  putAll(both, 1, 1, 30);
  putAll(both, 2, 1, 5);
  for (const s of both) await s.step({ entries: entries(1, 3), hardState: { term: 1, vote: 1, commit: 3 } });
  const filesBefore = segmentFiles(failing.dir);
  const innerBefore = inner(failing.s);

  for (const s of both) {
    s.deleteRange(1, 1, 11);
    s.dropTopic(2);
  }
  putAll(both, 1, 31, 40);
  const write: StepWrite = {
    entries: entries(4, 5),
    hardState: { term: 1, vote: 1, commit: 5 },
    snapshot: { meta: { index: 3, term: 1, conf }, state, compactTo: 2 },
  };
  failNext = true;
  const error = await failing.s.step(write).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(StorageFullError);
  expect((error as InstanceType<typeof StorageFullError>).reason).toBe('map_full');
  expect(segmentFiles(failing.dir)).toEqual(filesBefore);
  expect(inner(failing.s)).toEqual({ ...innerBefore, pendingWrites: true, deferredDeletes: true });
  expect(failing.s.snapshot().index).toBe(0);
  // Nothing was removed: the removals still wait for a snapshot.
  expect(failing.s.get(1, 1)).toBeDefined();
  expect(failing.s.get(2, 5)).toBeDefined();

  await clean.s.step(write);
  // A removal applied after the snapshot was taken must wait for the next snapshot, retry or not.
  for (const s of both) s.deleteRange(1, 11, 21);
  await failing.s.step(write);
  await expectSame(failing, clean, { 1: 40, 2: 5 });
  expect(failing.s.get(1, 10)).toBeUndefined();
  expect(failing.s.get(2, 1)).toBeUndefined();
  expect(failing.s.get(1, 11)).toBeDefined();
  expect(failing.s.hasDeferredDeletes()).toBe(true);
  expect(failing.s.firstIndex()).toBe(3);

  await expectSameAfterReopen(failing, clean, { 1: 40, 2: 5 });
});

test('a snapshot install that fails is undone (pending bodies and removals come back) and is not taken for lack of room; the retry installs', async () => {
  let failNext = false;
  const inStepTransaction = () => {
    if (!failNext) return;
    failNext = false;
    throw new Error('boom');
  };
  const failing = { dir: tempDir(), s: undefined as unknown as Storage };
  failing.s = open(failing.dir, { inStepTransaction });
  const clean = { dir: tempDir(), s: undefined as unknown as Storage };
  clean.s = open(clean.dir);
  const both = [failing.s, clean.s];

  putAll(both, 1, 1, 10);
  for (const s of both) await s.step({ entries: entries(1, 2), hardState: { term: 1, vote: 1, commit: 2 } });
  putAll(both, 1, 11, 12); // applied, not yet written
  for (const s of both) s.deleteRange(1, 1, 3);
  // The leader's snapshot stream: topic 7's bodies, appended to the segments as they arrive.
  const installs = both.map((s) => {
    const records = new LocatedRecords();
    s.appendReceived(
      records,
      Array.from({ length: 20 }, (_, i) => [7, i + 1, Buffer.concat(encodeRecord(message(i + 1)))] as [number, number, Uint8Array]),
    );
    return { meta: { index: 50, term: 2, conf }, received: { state, records } };
  });
  const writeOf = (i: number): StepWrite => ({ entries: entries(51, 52, 2), hardState: { term: 2, vote: 0, commit: 52 }, install: installs[i]! });
  const write = writeOf(0);
  const innerBefore = inner(failing.s);
  const filesBefore = segmentFiles(failing.dir);

  failNext = true;
  const error = await failing.s.step(write).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(Error);
  expect(error).not.toBeInstanceOf(StorageFullError);
  expect((error as Error).message).toBe('boom');
  expect(inner(failing.s)).toEqual(innerBefore);
  expect(segmentFiles(failing.dir)).toEqual(filesBefore);
  expect(failing.s.get(1, 12)?.seq).toBe(12); // pending again
  expect(failing.s.get(1, 5)?.seq).toBe(5);
  expect(failing.s.get(7, 1)).toBeUndefined();

  await clean.s.step(writeOf(1));
  await failing.s.step(write);
  await expectSame(failing, clean, { 1: 12, 7: 20 });
  expect(failing.s.get(1, 5)).toBeUndefined();
  expect(failing.s.get(1, 12)).toBeUndefined();
  expect(failing.s.get(7, 20)?.seq).toBe(20);
  expect(failing.s.hasDeferredDeletes()).toBe(false);
  expect(failing.s.lastIndex()).toBe(52);

  await expectSameAfterReopen(failing, clean, { 1: 12, 7: 20 });
});

test('a snapshot chunk whose append runs out of room half-way leaves the segments as they were, and the next append lands where it says', async () => {
  let segments: FillingSegments | undefined;
  const dir = tempDir();
  const s = open(dir, { segmentFiles: (d) => (segments = new FillingSegments(d)) });
  const chunk = (from: number) => Array.from({ length: 20 }, (_, i) => [7, from + i, Buffer.concat(encodeRecord(message(from + i)))] as [number, number, Uint8Array]);
  const records = new LocatedRecords();
  s.appendReceived(records, chunk(1));
  const filesBefore = segmentFiles(dir);
  segments!.plan = { okWrites: 1 };
  expect(() => s.appendReceived(records, chunk(21))).toThrow(/ENOSPC/);
  expect(records.size).toBe(20);
  expect(segmentFiles(dir)).toEqual(filesBefore);
  s.appendReceived(records, chunk(21));
  await s.step({ entries: [], hardState: null, install: { meta: { index: 10, term: 1, conf }, received: { state, records } } });
  for (let seq = 1; seq <= 40; seq++) expect(Buffer.from(s.get(7, seq)!.data)).toEqual(message(seq).data);
});

test.each(['sync', 'relaxed'] as const)('an LMDB commit that finds the disk full (a real tmpfs) is undone, is StorageFullError, and succeeds once there is room (%s)', async (durability) => {
  const dir = tempDir();
  const mnt = join(dir, 'data');
  mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (error) {
    throw new Error(`this test mounts a 2 MiB tmpfs and needs root (mount failed: ${(error as Error).message.trim()})`);
  }
  cleanups.push(() => void execFileSync('umount', [mnt]));
  // LMDB on the small tmpfs; the segments elsewhere, so that it is the commit that finds no room.
  const segmentsDir = join(dir, 'segments');
  mkdirSync(segmentsDir);
  symlinkSync(segmentsDir, join(mnt, 'segments'));
  const failing = { dir: mnt, s: open(mnt, { durability }) };
  const clean = { dir: tempDir(), s: undefined as unknown as Storage };
  clean.s = open(clean.dir, { durability });
  const both = [failing.s, clean.s];

  putAll(both, 1, 1, 10);
  for (const s of both) await s.step({ entries: entries(1, 2), hardState: { term: 1, vote: 1, commit: 2 } });
  const filesBefore = segmentFiles(failing.dir);
  const innerBefore = inner(failing.s);

  // 5 MB of log entries do not fit in 2 MiB. (Small ones: LMDB keeps those; a large one goes to a
  // segment file.)
  putAll(both, 1, 11, 30);
  const small = entryInSegmentBytesMin - 24;
  const write: StepWrite = { entries: entries(3, 5002, 1, small), hardState: { term: 1, vote: 1, commit: 5002 } };
  const error = await failing.s.step(write).catch((e: unknown) => e);
  expect(error, String(error)).toBeInstanceOf(StorageFullError);
  expect((error as InstanceType<typeof StorageFullError>).reason).toBe('no_space');
  expect(segmentFiles(failing.dir)).toEqual(filesBefore);
  expect(inner(failing.s)).toEqual({ ...innerBefore, pendingWrites: true });
  expect(failing.s.term(3)).toBeUndefined();
  expect(messages(failing.s, { 1: 30 })).toEqual(messages(clean.s, { 1: 30 }));

  // Still full: the retry fails the same way and changes nothing.
  expect(await failing.s.step(write).catch((e: unknown) => e)).toBeInstanceOf(StorageFullError);
  expect(segmentFiles(failing.dir)).toEqual(filesBefore);

  execFileSync('mount', ['-o', 'remount,size=32m', mnt]);
  await failing.s.step(write);
  await clean.s.step(write);
  await expectSame(failing, clean, { 1: 30 });
  expect(failing.s.entries(3, 5003, Infinity).map((e) => e.data.length)).toEqual(Array(5000).fill(small));
  await expectSameAfterReopen(failing, clean, { 1: 30 });
});
