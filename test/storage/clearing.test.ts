// Goal: removing many messages (retention past a large backlog, a dropped topic) never makes one
// storage step long — the index entries go a bounded number per step, in steps that follow one another
// until none are left — and a stop that cuts the clearing short leaves nothing behind for good: the
// next start finds what was left (seqs below a topic's first, topics the snapshot no longer has) and
// clears it, without touching a topic created after the snapshot (the log's replay writes it again).
// Method: a real LmdbStorage in a temp dir, driven step by step as the node's driver does.
import { expect, test } from 'vitest';
import type { BrokerSnapshot } from '../../src/core/broker/machine.js';
import type { StoredMessage } from '../../src/core/broker/types.js';
import type { ConfState, Entry } from '../../src/core/raft/types.js';
import { clearKeysPerBusyStepMin, clearKeysPerStepMax, LmdbStorage } from '../../src/storage/lmdb-storage.js';
import { storeHarness } from './store-harness.js';

const conf: ConfState = { voters: [1], learners: [] };
const { tempDir, open, close } = storeHarness(LmdbStorage, conf, 'herald-clearing-');

const message = (seq: number): StoredMessage => ({ seq, publishTimeMs: seq, visibleAtMs: seq, encoding: 'utf8', data: Buffer.from(`m${seq}`) });
let nextIndex = 1;
const entry = (): Entry => ({ index: nextIndex++, term: 1, data: Buffer.from('x') });

/** A snapshot whose state holds `topics` (id → first and last seq), taken at the last entry written. */
function snapshotOf(topics: Record<number, [number, number]>) {
  const state = {
    version: 1,
    topics: Object.entries(topics).map(([id, [firstSeq, lastSeq]]) => ({ id: Number(id), name: `t${id}`, config: {}, firstSeq, lastSeq, bytes: 0, lastPublishTimeMs: 0, dedup: [] })),
    subscriptions: [],
  } as unknown as BrokerSnapshot;
  const index = nextIndex - 1;
  return { meta: { index, term: 1, conf }, state, compactTo: index };
}

function stored(s: LmdbStorage, topicId: number, seqs: number): number {
  let n = 0;
  for (let seq = 1; seq <= seqs; seq++) if (s.get(topicId, seq)) n++;
  return n;
}

test('a large removal is cleared a bounded number of index entries a step, and the steps go on until it is done', async () => {
  nextIndex = 1;
  const s = open(tempDir());
  for (let seq = 1; seq <= 9_000; seq++) s.put(5, message(seq));
  for (let seq = 1; seq <= 3_000; seq++) s.put(7, message(seq));
  await s.step({ entries: [entry()], hardState: null });
  expect(s.hasPendingWrites() || s.hasClearing()).toBe(false);

  // Retention takes 1–8,500 of topic 5; topic 7 is dropped. Both wait for a snapshot.
  s.deleteRange(5, 1, 8_501);
  s.dropTopic(7);
  expect(stored(s, 5, 9_000)).toBe(9_000);
  await s.step({ entries: [entry()], hardState: null, snapshot: snapshotOf({ 5: [8_501, 9_000] }) });
  const remaining = [stored(s, 5, 9_000) + stored(s, 7, 3_000)];
  while (s.hasClearing()) {
    await s.step({ entries: [], hardState: null, idle: true });
    remaining.push(stored(s, 5, 9_000) + stored(s, 7, 3_000));
    expect(remaining.length).toBeLessThan(200);
  }
  // 9,000 + 3,000 entries, 8,500 + 3,000 to clear: the snapshot's step writes a log entry and clears a
  // busy step's share, each idle step after it the most a step clears, down to the 500 retention keeps.
  const expected: number[] = [];
  for (let left = 12_000 - clearKeysPerBusyStepMin; left > 500; left -= clearKeysPerStepMax) expected.push(left);
  expected.push(500);
  expect(remaining).toEqual(expected);
  expect(stored(s, 5, 9_000)).toBe(500);
  expect(s.get(5, 8_500)).toBeUndefined();
  expect(s.get(5, 8_501)?.data.toString()).toBe('m8501');
});

test('a busy step clears twice the messages it indexes, within bounds; an idle one, the most', async () => {
  nextIndex = 1;
  const s = open(tempDir());
  for (let seq = 1; seq <= 5_000; seq++) s.put(5, message(seq));
  await s.step({ entries: [entry()], hardState: null });
  s.dropTopic(5);
  await s.step({ entries: [], hardState: null, snapshot: snapshotOf({}), idle: true });
  let left = 5_000 - clearKeysPerStepMax;
  expect(stored(s, 5, 5_000)).toBe(left);
  // A step that indexes nothing and is not idle (an entry, say): the minimum.
  await s.step({ entries: [entry()], hardState: null });
  expect(stored(s, 5, 5_000)).toBe((left -= clearKeysPerBusyStepMin));
  // A step that indexes 100 messages of another topic: 200.
  for (let seq = 1; seq <= 100; seq++) s.put(6, message(seq));
  await s.step({ entries: [entry()], hardState: null });
  expect(stored(s, 5, 5_000)).toBe((left -= 200));
  // One that indexes 1,000: no more than the most.
  for (let seq = 101; seq <= 1_100; seq++) s.put(6, message(seq));
  await s.step({ entries: [entry()], hardState: null });
  expect(stored(s, 5, 5_000)).toBe((left -= clearKeysPerStepMax));
  // An idle step.
  await s.step({ entries: [], hardState: null, idle: true });
  expect(stored(s, 5, 5_000)).toBe((left -= clearKeysPerStepMax));
});

test('a stop in the middle of clearing: the next start clears what was left, and only that', async () => {
  nextIndex = 1;
  const dir = tempDir();
  let s = open(dir);
  for (let seq = 1; seq <= 5_000; seq++) s.put(1, message(seq));
  for (let seq = 1; seq <= 5_000; seq++) s.put(2, message(seq));
  await s.step({ entries: [entry()], hardState: null });
  s.deleteRange(1, 1, 4_001);
  s.dropTopic(2);
  await s.step({ entries: [entry()], hardState: null, snapshot: snapshotOf({ 1: [4_001, 5_000] }) });
  // Topic ids are the log index that created them: 1 and 2 here, under the snapshot's index (2). A
  // topic created after the snapshot (its id above that) is one the log's replay would write again.
  const laterTopic = nextIndex + 10;
  for (let seq = 1; seq <= 100; seq++) s.put(laterTopic, message(seq));
  await s.step({ entries: [entry()], hardState: null });
  expect(stored(s, 1, 5_000) + stored(s, 2, 5_000)).toBeGreaterThan(1_000);
  await close(s); // stopped with clearing left to do

  s = open(dir);
  expect(s.hasClearing()).toBe(true);
  for (let i = 0; i < 200 && s.hasClearing(); i++) await s.step({ entries: [], hardState: null, idle: true });
  expect(s.hasClearing()).toBe(false);
  expect(stored(s, 1, 5_000)).toBe(1_000);
  expect(stored(s, 2, 5_000)).toBe(0);
  expect(stored(s, laterTopic, 100)).toBe(100);
});
