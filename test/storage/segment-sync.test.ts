// Goal: a sync of a small write (what a lightly loaded node's step writes) runs on the calling thread,
// sparing the two thread hand-offs of an asynchronous fdatasync; a large one, or one that must also
// sync another file or the directory, still goes to the thread pool. Either way the bytes are on disk
// when the promise resolves (here: readable back, and nothing left to sync).
// Method: a setImmediate queued before the sync has not run when an inline sync resolves (it resolves
// within the same turn), and has run when a thread-pool sync resolves (a later turn).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { SegmentFiles, syncInlineBytesMax } from '../../src/storage/segments.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function segments(): SegmentFiles {
  const dir = mkdtempSync(join(tmpdir(), 'herald-segsync-'));
  const s = new SegmentFiles(join(dir, 'segments'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => s.close());
  return s;
}

/** Whether `sync` resolved before a setImmediate queued just before it ran. */
async function resolvedWithinTurn(s: SegmentFiles): Promise<boolean> {
  let immediateRan = false;
  setImmediate(() => (immediateRan = true));
  await s.sync();
  return !immediateRan;
}

test('a small sync runs inline, a large one or the first (the directory too) in the thread pool; the bytes read back', async () => {
  const s = segments();
  const [first] = s.append([[Buffer.alloc(1000, 1)]]);
  expect(await resolvedWithinTurn(s)).toBe(false); // a new file: its directory entry is synced too

  const [small] = s.append([[Buffer.alloc(4000, 2)]]);
  expect(await resolvedWithinTurn(s)).toBe(true);

  const [large] = s.append([[Buffer.alloc(syncInlineBytesMax + 1, 3)]]);
  expect(await resolvedWithinTurn(s)).toBe(false);

  // Small writes add up: past the bound since the last sync, the pool again.
  for (let i = 0; i < 3; i++) s.append([[Buffer.alloc(syncInlineBytesMax / 2, 4)]]);
  expect(await resolvedWithinTurn(s)).toBe(false);

  expect(s.read(first!).equals(Buffer.alloc(1000, 1))).toBe(true);
  expect(s.read(small!).equals(Buffer.alloc(4000, 2))).toBe(true);
  expect(s.read(large!).equals(Buffer.alloc(syncInlineBytesMax + 1, 3))).toBe(true);
});

test("where no commit waits for its sync (a leader with followers) even a small sync leaves the thread; the bytes read back", async () => {
  const s = segments();
  s.append([[Buffer.alloc(1000, 1)]]);
  await s.sync(); // the directory
  s.syncsInline = false;
  const [small] = s.append([[Buffer.alloc(4000, 2)]]);
  expect(await resolvedWithinTurn(s)).toBe(false);
  s.syncsInline = true;
  s.append([[Buffer.alloc(4000, 3)]]);
  expect(await resolvedWithinTurn(s)).toBe(true);
  expect(s.read(small!).equals(Buffer.alloc(4000, 2))).toBe(true);
});
