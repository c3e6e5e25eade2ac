/**
 * Stores for one storage test file: temp data directories and LmdbStorage instances, every store
 * closed after each test before the cleanups run (an unmount, the removals). The LmdbStorage class is
 * passed in, because test files import it only after setting HERALD_SEGMENT_BYTES (segments.ts reads
 * it when first imported).
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { ConfState } from '../../src/core/raft/types.js';
import type { LmdbStorage, LmdbStorageOptions } from '../../src/storage/lmdb-storage.js';

export function storeHarness(Storage: typeof LmdbStorage, conf: ConfState, dirPrefix: string) {
  const cleanups: (() => unknown)[] = [];
  const opened = new Set<LmdbStorage>();
  afterEach(async () => {
    for (const s of opened) await s.close();
    opened.clear();
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    /** Run after each test, last added first. */
    cleanups,
    tempDir(): string {
      const dir = mkdtempSync(join(tmpdir(), dirPrefix));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    },
    /** Opens and loads a store; it is closed after the test. */
    open(dir: string, options: LmdbStorageOptions = {}): LmdbStorage {
      const s = new Storage(dir, 0, options);
      s.load(conf);
      opened.add(s);
      return s;
    },
    async close(s: LmdbStorage): Promise<void> {
      opened.delete(s);
      await s.close();
    },
  };
}

/** Bytes in a data directory's segment files. */
export function segmentBytes(dir: string): number {
  return readdirSync(join(dir, 'segments')).reduce((n, f) => n + statSync(join(dir, 'segments', f)).size, 0);
}
