/**
 * What the data directory takes on disk, read from the filesystem (not from LMDB): the message
 * segments and the filesystem's free space. The disk guard decides with it, the metrics export it.
 */
import { readdirSync, statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';

export interface SegmentUsage {
  files: number;
  /** Sum of file sizes. */
  bytes: number;
  /** Sum of blocks allocated (what the disk really gives them). */
  allocatedBytes: number;
}

export function segmentUsage(dataDir: string): SegmentUsage {
  const dir = join(dataDir, 'segments');
  const usage = { files: 0, bytes: 0, allocatedBytes: 0 };
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return usage; // no segments yet
  }
  for (const name of names) {
    if (!name.endsWith('.seg')) continue;
    try {
      const s = statSync(join(dir, name));
      usage.files++;
      usage.bytes += s.size;
      usage.allocatedBytes += s.blocks * 512;
    } catch {
      /* removed meanwhile */
    }
  }
  return usage;
}

export function filesystemSpace(dataDir: string): { availBytes: number; sizeBytes: number } | undefined {
  try {
    const s = statfsSync(dataDir);
    return { availBytes: s.bavail * s.bsize, sizeBytes: s.blocks * s.bsize };
  } catch {
    return undefined;
  }
}
