// Goal: a small LMDB map is not a limit Herald hits: lmdb-js grows the map when a commit needs more,
// so the only "map full" left is the disk itself (test/integration/disk-full-write.test.ts fills a
// real tmpfs). Method: a store opened with a 1 MiB map takes 25 MiB of log entries and reads them back,
// also after reopening.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import type { ConfState } from '../../src/core/raft/types.js';
import { LmdbStorage } from '../../src/storage/lmdb-storage.js';

const conf: ConfState = { voters: [1], learners: [] };
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

test('a 1 MiB map takes 25 MiB of log entries (the map grows)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'herald-map-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  let s = new LmdbStorage(dir, 0, { mapSizeBytes: 1024 * 1024 });
  s.load(conf);
  const entryBytes = 64 * 1024;
  for (let batch = 0; batch < 20; batch++) {
    const entries = Array.from({ length: 20 }, (_, i) => ({ index: batch * 20 + i + 1, term: 1, data: Buffer.alloc(entryBytes, batch * 20 + i + 1) }));
    await s.step({ entries, hardState: { term: 1, vote: 1, commit: batch * 20 + 20 } });
  }
  expect(s.lastIndex()).toBe(400);
  await s.close();
  s = new LmdbStorage(dir, 0, { mapSizeBytes: 1024 * 1024 });
  cleanups.push(() => s.close());
  expect(s.load(conf).hardState?.commit).toBe(400);
  const read = s.entries(1, 401, Number.MAX_SAFE_INTEGER);
  expect(read).toHaveLength(400);
  expect(read[399]!.data).toEqual(Buffer.alloc(entryBytes, 400));
});
