// Goal: a published body is written to disk once. A log entry of entryInSegmentBytesMin or more goes
// to the segment files (LMDB keeps where), and the messages it publishes are indexed where their data
// already lies inside it. What users rely on through that: every message and every log entry reads
// back the same, after a restart too (a replayed publish indexes into the entry again rather than
// writing its bodies); a segment file is freed only once neither a log entry nor a message is left
// in it (compaction, removal, a replaced tail); and in sync mode the entries are synced before the
// log says where they are, so an acknowledged entry is on disk.
// Method: LmdbStorage in a temp dir with 64 KiB segments, driven as the node drives it (step, then
// `applying(entry)` around the puts a publish makes, its data views into the entry's bytes).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import type { BrokerSnapshot } from '../../src/core/broker/machine.js';
import { decodeStamped, encodeStamped } from '../../src/storage/command-codec.js';
import type { StoredMessage } from '../../src/core/broker/types.js';
import type { ConfState, Entry } from '../../src/core/raft/types.js';

process.env.HERALD_SEGMENT_BYTES = String(64 * 1024);
const { LmdbStorage, entryInSegmentBytesMin } = await import('../../src/storage/lmdb-storage.js');
const { SegmentFiles, frameBytes } = await import('../../src/storage/segments.js');
const { segmentBytes, storeHarness } = await import('./store-harness.js');
type Storage = InstanceType<typeof LmdbStorage>;

const conf: ConfState = { voters: [1], learners: [] };
const noTopics = { topics: [] } as unknown as BrokerSnapshot;
const { tempDir, open, close } = storeHarness(LmdbStorage, conf, 'herald-entries-');

async function reopen(s: Storage, dir: string): Promise<Storage> {
  await close(s);
  return open(dir);
}

const body = (index: number, i: number, bytes: number) => Buffer.alloc(bytes, `e${index}m${i}-`);

/** A publish entry the way the node encodes one (command-codec.ts: its bodies lie whole in the entry). */
function publishEntry(index: number, term: number, count: number, bytes: number): Entry {
  const messages = Array.from({ length: count }, (_, i) => ({ data: body(index, i, bytes), encoding: 'utf8' as const }));
  return { index, term, data: encodeStamped({ nowMs: index, command: { type: 'publish', topic: 't', messages } }) };
}

/** Applies a publish entry as the node does: decoded from its bytes, puts made while `applying` it. */
function apply(s: Storage, entry: Entry, topicId: number, firstSeq: number): StoredMessage[] {
  const { command } = decodeStamped(entry.data);
  if (command.type !== 'publish') throw new Error(`entry ${entry.index} is not a publish`);
  s.applying(entry);
  const out = command.messages.map((m, i) => {
    const seq = firstSeq + i;
    const message: StoredMessage = { seq, publishTimeMs: 1000 + seq, visibleAtMs: 1000 + seq, encoding: 'utf8', data: m.data };
    if (seq % 2 === 0) message.attributes = { n: String(seq) };
    s.put(topicId, message);
    return message;
  });
  s.applying(undefined);
  return out;
}


function segmentCount(dir: string): number {
  return readdirSync(join(dir, 'segments')).length;
}

function expectMessages(s: Storage, topicId: number, expected: StoredMessage[]): void {
  for (const m of expected) {
    const got = s.get(topicId, m.seq);
    expect(got && { ...got, data: Buffer.from(got.data) }).toEqual({ ...m, data: Buffer.from(m.data) });
  }
}

test('a publish is written once: the entry in a segment, its messages indexed inside it; all reads back, after a restart too', async () => {
  const dir = tempDir();
  let s = open(dir);
  const e1 = publishEntry(1, 1, 4, 4000);
  expect(e1.data.length).toBeGreaterThanOrEqual(entryInSegmentBytesMin);
  const small = publishEntry(2, 1, 1, 100); // under the threshold: stays in LMDB, its body gets a record
  expect(small.data.length).toBeLessThan(entryInSegmentBytesMin);
  await s.step({ entries: [e1, small], hardState: { term: 1, vote: 1, commit: 2 } });
  expect(segmentBytes(dir)).toBe(frameBytes + e1.data.length); // the entry in its frame, nothing else
  const published = [...apply(s, e1, 7, 1), ...apply(s, small, 7, 5)];
  await s.step({ entries: [], hardState: null });
  // The four large bodies were not written again; the small one got a record (header + data).
  const recordBytes = segmentBytes(dir) - frameBytes - e1.data.length;
  expect(recordBytes).toBeGreaterThan(100);
  expect(recordBytes).toBeLessThan(200);
  expectMessages(s, 7, published);
  expect(s.entries(1, 3, Infinity).map((e) => Buffer.from(e.data))).toEqual([Buffer.from(e1.data), Buffer.from(small.data)]);

  s = await reopen(s, dir);
  expectMessages(s, 7, published);
  const [r1, r2] = s.entries(1, 3, Infinity);
  expect(Buffer.from(r1!.data)).toEqual(Buffer.from(e1.data));
  expect(Buffer.from(r2!.data)).toEqual(Buffer.from(small.data));
  expect(s.term(1)).toBe(1);

  // A restart's replay applies the entry read back from its segment: the puts index into it again
  // (one replaces the other), and nothing is written.
  const before = segmentBytes(dir);
  apply(s, r1!, 7, 1);
  await s.step({ entries: [], hardState: null });
  expect(segmentBytes(dir)).toBe(before);
  expectMessages(s, 7, published);
});

test('a segment goes only once no log entry and no message is left in it: compaction, then removal', async () => {
  const dir = tempDir();
  const s = open(dir);
  const entries = Array.from({ length: 12 }, (_, i) => publishEntry(i + 1, 1, 2, 10_000)); // ~20 KiB each: 3 a segment
  await s.step({ entries, hardState: { term: 1, vote: 1, commit: 12 } });
  let seq = 1;
  const published: StoredMessage[] = [];
  for (const e of entries) {
    published.push(...apply(s, e, 7, seq));
    seq += 2;
  }
  await s.step({ entries: [], hardState: null });
  const files = segmentCount(dir);
  expect(files).toBeGreaterThanOrEqual(4);

  // The log compacted away: the messages still hold every segment.
  await s.step({ entries: [], hardState: null, snapshot: { meta: { index: 12, term: 1, conf }, state: noTopics, compactTo: 12 } });
  await s.removalsDone();
  expect(segmentCount(dir)).toBe(files);
  expect(s.firstIndex()).toBe(13);
  expectMessages(s, 7, published);

  // The messages removed too: only the active segment is left.
  s.deleteRange(7, 1, seq);
  await s.step({ entries: [], hardState: null, snapshot: { meta: { index: 12, term: 1, conf }, state: noTopics, compactTo: 12 } });
  while (s.hasPendingWrites() || s.hasClearing()) await s.step({ entries: [], hardState: null, idle: true });
  await s.removalsDone();
  expect(segmentCount(dir)).toBe(1);
});

test("a replaced tail (a new leader's entries) lets go of the segments it was in", async () => {
  const dir = tempDir();
  const s = open(dir);
  await s.step({ entries: Array.from({ length: 6 }, (_, i) => publishEntry(i + 1, 1, 2, 10_000)), hardState: { term: 1, vote: 1, commit: 1 } });
  // Entries 2–6 of term 1 are replaced by one entry 2 of term 2.
  const replacement = publishEntry(2, 2, 2, 10_000);
  await s.step({ entries: [replacement], hardState: { term: 2, vote: 2, commit: 1 } });
  expect(s.lastIndex()).toBe(2);
  expect(s.term(2)).toBe(2);
  expect(Buffer.from(s.entries(2, 3, Infinity)[0]!.data)).toEqual(Buffer.from(replacement.data));
  // Nothing but the log held them: once it is compacted, only the active segment is left.
  await s.step({ entries: [], hardState: null, snapshot: { meta: { index: 2, term: 2, conf }, state: noTopics, compactTo: 2 } });
  await s.removalsDone();
  expect(segmentCount(dir)).toBe(1);
});

test('in sync mode the entries are synced before the commit that says where they are; relaxed syncs nothing', async () => {
  for (const durability of ['sync', 'relaxed'] as const) {
    const events: string[] = [];
    class RecordingSegments extends SegmentFiles {
      override async sync(): Promise<void> {
        events.push('sync');
        await super.sync();
        events.push('synced');
      }
    }
    const s = open(tempDir(), { durability, segmentFiles: (d) => new RecordingSegments(d), inStepTransaction: () => events.push('commit') });
    await s.step({ entries: [publishEntry(1, 1, 2, 4000)], hardState: { term: 1, vote: 1, commit: 1 } });
    await s.step({ entries: [{ index: 2, term: 1, data: Buffer.from('tiny') }], hardState: null });
    expect({ durability, events }).toEqual({ durability, events: durability === 'sync' ? ['sync', 'synced', 'commit', 'commit'] : ['commit', 'commit'] });
  }
});

test("a follower's store reads a message's data from its segment only when the data is asked for", async () => {
  class CountingSegments extends SegmentFiles {
    reads = 0;
    override read(loc: Parameters<InstanceType<typeof SegmentFiles>['read']>[0]): Buffer {
      this.reads++;
      return super.read(loc);
    }
  }
  let segments: CountingSegments | undefined;
  const s = open(tempDir(), { segmentFiles: (d) => (segments = new CountingSegments(d)) });
  const entry = publishEntry(1, 1, 3, 4000);
  const published = apply(s, entry, 1, 1);
  await s.step({ entries: [entry], hardState: { term: 1, vote: 1, commit: 1 } });
  await s.step({ entries: [], hardState: null }); // the puts reach the index

  s.followerMode = true;
  const before = segments!.reads;
  const read = [1, 2, 3].map((seq) => s.get(1, seq)!);
  expect(segments!.reads).toBe(before);
  // Everything but the data is there without a read: filters, delays and ordering need only that.
  expect(read.map((m) => [m.seq, m.publishTimeMs, m.attributes])).toEqual(published.map((m) => [m.seq, m.publishTimeMs, m.attributes]));
  // The data when asked for (a dead-letter copy): read once, the same bytes.
  expect(Buffer.from(read[1]!.data).equals(Buffer.from(published[1]!.data))).toBe(true);
  expect(Buffer.from(read[1]!.data).equals(Buffer.from(published[1]!.data))).toBe(true);
  expect(segments!.reads).toBe(before + 1);
  expect({ ...read[2]! }.data).toBeDefined(); // a spread copy carries it too

  s.followerMode = false;
  const leaderRead = s.get(1, 3)!;
  expect(segments!.reads).toBeGreaterThan(before + 1);
  expect(Buffer.from(leaderRead.data).equals(Buffer.from(published[2]!.data))).toBe(true);
});
