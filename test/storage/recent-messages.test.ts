// Goal: a node reads the messages it indexed last from memory, not from LMDB and the segment files
// (a pull soon after the publish is the common case, and a follower applies every pull). What users
// rely on through that: a read returns the message that was published at that (topic, seq), whether it
// comes from memory or from storage; memory holds a bounded number of messages and of data bytes; and
// an installed snapshot, which replaces the whole index, leaves nothing in memory to read instead.
// Method: RecentMessages alone for its bounds and keys; LmdbStorage in a temp dir, driven as the node
// drives it (puts, then the step that indexes them), with a segment-file double that counts reads.
import { expect, test } from 'vitest';
import type { StoredMessage } from '../../src/core/broker/types.js';
import type { ConfState } from '../../src/core/raft/types.js';
import type { BrokerSnapshot } from '../../src/core/broker/machine.js';
import { LmdbStorage, LocatedRecords } from '../../src/storage/lmdb-storage.js';
import { RecentMessages, recentDataBytesMax, recentSlots } from '../../src/storage/recent-messages.js';
import { encodeRecord, SegmentFiles, type Location } from '../../src/storage/segments.js';
import { storeHarness } from './store-harness.js';

const conf: ConfState = { voters: [1], learners: [] };
const { tempDir, open, close } = storeHarness(LmdbStorage, conf, 'herald-recent-');

const message = (seq: number, bytes = 16): StoredMessage => ({
  seq,
  publishTimeMs: 1000 + seq,
  visibleAtMs: 1000 + seq,
  encoding: 'utf8',
  data: Buffer.alloc(bytes, `m${seq}-`),
});

test('the ring keeps the last messages of a topic, tells topics apart, and skips large messages', () => {
  const r = new RecentMessages(8);
  const ms = Array.from({ length: 12 }, (_, i) => message(i + 1));
  for (const m of ms) r.add(7, m);
  // The last 8 of one topic are all there, the same objects; the 4 before were pushed out.
  expect(ms.slice(4).every((m) => r.get(7, m.seq) === m)).toBe(true);
  expect(ms.slice(0, 4).map((m) => r.get(7, m.seq))).toEqual([undefined, undefined, undefined, undefined]);
  // Another topic's message at the same seq is never taken for this one's.
  expect(r.get(8, 12)).toBeUndefined();
  const other = message(12);
  r.add(8, other);
  expect(r.get(8, 12)).toBe(other);
  expect([r.get(7, 12), r.get(8, 11)].filter((m) => m === other)).toEqual([]);
  // Seqs past 2^32 (a topic may publish that many over its life) keep their own slots.
  const far = message(2 ** 32 + 3);
  r.add(7, far);
  expect(r.get(7, 2 ** 32 + 3)).toBe(far);
  expect(r.get(7, 3)).toBeUndefined();
  // A message over the data bound is not kept: slots × the bound caps the data held.
  const big = message(100, recentDataBytesMax + 1);
  r.add(7, big);
  expect(r.get(7, 100)).toBeUndefined();
  r.clear();
  expect(r.get(8, 12)).toBeUndefined();
  expect(() => new RecentMessages(6)).toThrow(RangeError);
});

test("a node's store reads its latest messages from memory, older ones from storage, the same content either way", async () => {
  class CountingSegments extends SegmentFiles {
    reads = 0;
    override read(loc: Location): Buffer {
      this.reads++;
      return super.read(loc);
    }
  }
  let segments: CountingSegments | undefined;
  const s = open(tempDir(), { recentMessages: true, segmentFiles: (d) => (segments = new CountingSegments(d)) });
  const count = recentSlots + 100;
  const published: StoredMessage[] = [];
  for (let seq = 1; seq <= count; seq++) {
    const m = message(seq, 64);
    s.put(1, m);
    published.push(m);
  }
  await s.step({ entries: [], hardState: { term: 1, vote: 1, commit: 0 } }); // indexes the puts

  // The last recentSlots: the objects put, no segment read.
  for (const m of published.slice(-recentSlots)) expect(s.get(1, m.seq)).toBe(m);
  expect(segments!.reads).toBe(0);
  // The first 100: from storage, equal to what was published.
  for (const m of published.slice(0, 100)) {
    const got = s.get(1, m.seq)!;
    expect(got).not.toBe(m);
    expect({ ...got, data: Buffer.from(got.data) }).toEqual({ ...m, data: Buffer.from(m.data) });
  }
  expect(segments!.reads).toBe(100);
  expect(s.get(2, count)).toBeUndefined(); // another topic holds nothing

  // Reopened, memory is empty and storage has everything.
  await close(s);
  const again = open(s.dataDir, { recentMessages: true });
  const last = again.get(1, count)!;
  expect(last).not.toBe(published[count - 1]);
  expect(Buffer.from(last.data).equals(Buffer.from(published[count - 1]!.data))).toBe(true);
});

test('an installed snapshot replaces what memory held: reads then come from what was installed', async () => {
  const s = open(tempDir(), { recentMessages: true });
  for (let seq = 1; seq <= 5; seq++) s.put(7, message(seq));
  await s.step({ entries: [], hardState: { term: 1, vote: 1, commit: 0 } });
  expect(s.get(7, 3)?.data).toEqual(message(3).data);
  // The leader's snapshot holds other bytes at those seqs (it cannot in a real cluster; here it shows
  // which copy a read returns).
  const installed = (seq: number) => message(seq, 40);
  const records = new LocatedRecords();
  s.appendReceived(records, [1, 2, 3, 4, 5].map((seq) => [7, seq, Buffer.concat(encodeRecord(installed(seq)))] as [number, number, Uint8Array]));
  const state = { topics: [] } as unknown as BrokerSnapshot;
  await s.step({ entries: [], hardState: null, install: { meta: { index: 10, term: 1, conf }, received: { state, records } } });
  for (let seq = 1; seq <= 5; seq++) expect(Buffer.from(s.get(7, seq)!.data)).toEqual(installed(seq).data);
});
