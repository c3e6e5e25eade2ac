// Goal: a follower's segment appends (the large ones) go past the page cache (O_DIRECT) and lose
// nothing: every record reads back where `append` said it is, across the staging buffer's size,
// segment rotations, appends switching between direct and buffered (small ones, or the mode off), a
// reopen, and a write that runs out of room (undone, and the
// same append again lands where it would have). A filesystem that refuses O_DIRECT gets buffered
// appends.
// Method: real files on the disk the repository is on (the OS's temp directory may be a tmpfs, which
// takes O_DIRECT only since Linux 6.6), segments of 256 KiB so that appends rotate.
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test, vi } from 'vitest';

// Read when segments.ts is first imported, hence the dynamic imports below.
process.env.HERALD_SEGMENT_BYTES = String(256 * 1024);
const { SegmentFiles, directAppendBytesMin, directBlockBytes, frameBytes } = await import('../../src/storage/segments.js');
type Location = ReturnType<InstanceType<typeof SegmentFiles>['append']>[number];

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** A directory on the repository's disk (not a tmpfs). */
function diskDir(): string {
  const dir = mkdtempSync(join(process.cwd(), '.test-direct-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function open<T extends InstanceType<typeof SegmentFiles>>(dir: string, make: (dir: string) => T = (d) => new SegmentFiles(d) as T): T {
  const s = make(join(dir, 'segments'));
  cleanups.push(() => s.close());
  return s;
}

/** A record of `bytes` bytes in two parts (a small head and the rest), its bytes telling it apart. */
function record(n: number, bytes: number): Buffer[] {
  const head = Buffer.from(`#${n}#`);
  return [head, Buffer.alloc(bytes - head.length, `r${n}-`)];
}

function sizes(dir: string): number[] {
  const segDir = join(dir, 'segments');
  return readdirSync(segDir)
    .sort()
    .map((f) => statSync(join(segDir, f)).size);
}

test('direct appends read back across the staging buffer, rotations, buffered appends in between and a reopen', async () => {
  const dir = diskDir();
  const s = open(dir);
  s.directWrites = true;
  expect(s.directWrites).toBe(true);

  const written: [Location, Buffer][] = [];
  const append = (records: Buffer[][]) => {
    const locations = s.append(records);
    records.forEach((r, i) => written.push([locations[i]!, Buffer.concat(r)]));
    return locations;
  };
  // Many small records (16 KiB publish entries and odd sizes), then one larger than the 1 MiB staging
  // buffer and the segment size, then buffered appends, then direct again.
  const first = append(Array.from({ length: 40 }, (_, i) => record(i, i % 2 ? 16 * 1024 + 37 : 1000 + i)));
  // Locations are the data's, past each record's frame.
  expect((first[0]!.offset - frameBytes) % directBlockBytes).toBe(0);
  // An append under directAppendBytesMin goes through the page cache, where the last one ended.
  const end = first.at(-1)!.offset + first.at(-1)!.length;
  const [small] = append([record(50, 3000)]);
  expect(small!.offset).toBe(Math.ceil(end / directBlockBytes) * directBlockBytes + frameBytes);
  expect(append([record(51, 3000)])[0]!.offset).toBe(small!.offset + 3000 + frameBytes);
  append([record(100, 2.5 * 1024 * 1024 + 3)]);
  s.directWrites = false;
  const buffered = append([record(200, 777), record(201, 5000)]);
  s.directWrites = true;
  const again = append([record(300, 3000), record(301, directAppendBytesMin)]);
  // A direct append starts on a block boundary, past the buffered bytes before it.
  expect((again[0]!.offset - frameBytes) % directBlockBytes).toBe(0);
  expect(again[0]!.segment === buffered[1]!.segment ? again[0]!.offset >= buffered[1]!.offset + 5000 : true).toBe(true);
  await s.sync();

  expect(written.length).toBe(47);
  expect(new Set(written.map(([l]) => l.segment)).size).toBeGreaterThan(2); // it rotated
  for (const [loc, bytes] of written) expect(s.read(loc).equals(bytes)).toBe(true);
  // Every file a direct append ended is padded to a whole block.
  expect(sizes(dir).at(-1)! % directBlockBytes).toBe(0);

  s.close();
  cleanups.pop();
  const reopened = open(dir);
  for (const [loc, bytes] of written) expect(reopened.read(loc).equals(bytes)).toBe(true);
  reopened.directWrites = true;
  const [next] = reopened.append([record(400, directAppendBytesMin)]);
  const last = written.at(-1)![0];
  expect(next!.segment > last.segment || next!.offset >= last.offset + last.length).toBe(true);
  expect((next!.offset - frameBytes) % directBlockBytes).toBe(0);
  expect(reopened.read(next!).equals(Buffer.concat(record(400, directAppendBytesMin)))).toBe(true);
});

/** Segment files whose direct writes run out of room once, after `okWrites` more writes work. */
class FillingSegments extends SegmentFiles {
  plan: { okWrites: number } | undefined;
  protected override writeAt(fd: number, buffer: Buffer, position: number): number {
    if (this.plan && this.plan.okWrites-- <= 0) {
      this.plan = undefined;
      // Half of it lands, as a full disk leaves it.
      super.writeAt(fd, buffer.subarray(0, directBlockBytes), position);
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
    return super.writeAt(fd, buffer, position);
  }
}

test('a direct append that runs out of room (after a rotation) is undone, and the same append again lands where it would have', () => {
  const failingDir = diskDir();
  const cleanDir = diskDir();
  const failing = open(failingDir, (d) => new FillingSegments(d));
  const clean = open(cleanDir);
  for (const s of [failing, clean]) s.directWrites = true;
  const before = Array.from({ length: 5 }, (_, i) => record(i, 30_000));
  for (const s of [failing, clean]) s.append(before);
  const sizesBefore = sizes(failingDir);

  // 20 records of 30,000 bytes: the active segment fills, the write before the rotation works and
  // the one after fails.
  const step = Array.from({ length: 20 }, (_, i) => record(10 + i, 30_000));
  failing.plan = { okWrites: 1 };
  expect(() => failing.append(step)).toThrow(/ENOSPC/);
  expect(sizes(failingDir)).toEqual(sizesBefore);

  const retried = failing.append(step);
  expect(retried).toEqual(clean.append(step));
  expect(sizes(failingDir)).toEqual(sizes(cleanDir));
  retried.forEach((loc, i) => expect(failing.read(loc).equals(Buffer.concat(step[i]!))).toBe(true));
});

test('a filesystem that refuses O_DIRECT gets buffered appends', () => {
  // Such a filesystem fails the open with EINVAL (tmpfs did before Linux 6.6; FUSE and others still do).
  class NoDirectSegments extends SegmentFiles {
    protected override openDirect(): number {
      throw Object.assign(new Error('EINVAL: invalid argument, open'), { code: 'EINVAL', errno: -22, syscall: 'open' });
    }
  }
  const dir = diskDir();
  const s = open(dir, (d) => new NoDirectSegments(d));
  s.directWrites = true;
  expect(s.directWrites).toBe(false);
  const [a, b] = s.append([record(1, 5000), record(2, 3000)]);
  expect([a, b]).toEqual([
    { segment: 1, offset: frameBytes, length: 5000 },
    { segment: 1, offset: 5000 + 2 * frameBytes, length: 3000 },
  ]);
  expect(s.read(b!).equals(Buffer.concat(record(2, 3000)))).toBe(true);
  expect(readdirSync(join(dir, 'segments'))).toEqual(['0000000001.seg']); // the probe is gone
});

test("a step's direct append is written on the thread pool; an append meanwhile lands after it, and both read back", async () => {
  const dir = diskDir();
  let release: (() => void) | undefined;
  class HeldSegments extends SegmentFiles {
    held = true;
    protected override async writeAtAsync(fd: number, buffer: Buffer, position: number): Promise<number> {
      if (this.held) {
        this.held = false;
        await new Promise<void>((resolve) => (release = resolve)); // held until the test lets it go
      }
      return super.writeAtAsync(fd, buffer, position);
    }
  }
  const s = open(dir, (d) => new HeldSegments(d));
  s.directWrites = true;
  const stepRecords = Array.from({ length: 8 }, (_, i) => record(i, 16 * 1024 + 11));
  const pending = s.appendAsync(stepRecords);
  await vi.waitFor(() => expect(release).toBeDefined());
  // A snapshot stream's records arrive while the step's write is in flight (small: buffered).
  const during = s.append([record(100, 2000), record(101, 3000)]);
  release!();
  const stepLocations = await pending;
  expect(stepLocations[0]!.offset).toBe(frameBytes);
  expect(during[0]!.offset).toBeGreaterThanOrEqual(stepLocations.at(-1)!.offset + stepLocations.at(-1)!.length);
  await s.sync();
  stepLocations.forEach((loc, i) => expect(s.read(loc).equals(Buffer.concat(stepRecords[i]!))).toBe(true));
  expect(s.read(during[1]!).equals(Buffer.concat(record(101, 3000)))).toBe(true);
  // Appends go on after both.
  const [after] = await s.appendAsync([record(200, directAppendBytesMin)]);
  expect(after!.offset).toBeGreaterThanOrEqual(during[1]!.offset + 3000);
  expect(s.read(after!).equals(Buffer.concat(record(200, directAppendBytesMin)))).toBe(true);
});

test("a step's direct append that fails on the thread pool is taken back", async () => {
  class FailingSegments extends SegmentFiles {
    fail = false;
    protected override async writeAtAsync(fd: number, buffer: Buffer, position: number): Promise<number> {
      if (!this.fail) return super.writeAtAsync(fd, buffer, position);
      this.fail = false;
      await super.writeAtAsync(fd, buffer.subarray(0, directBlockBytes), position);
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
  }
  const dir = diskDir();
  const s = open(dir, (d) => new FailingSegments(d));
  s.directWrites = true;
  const first = await s.appendAsync([record(1, 100_000)]);
  const sizeBefore = sizes(dir);
  s.fail = true;
  await expect(s.appendAsync([record(2, 100_000)])).rejects.toThrow(/ENOSPC/);
  expect(sizes(dir)).toEqual(sizeBefore);
  const [again] = await s.appendAsync([record(2, 100_000)]);
  expect(again!.offset).toBe(Math.ceil((first[0]!.offset + 100_000) / directBlockBytes) * directBlockBytes + frameBytes);
  expect(s.read(again!).equals(Buffer.concat(record(2, 100_000)))).toBe(true);
});
