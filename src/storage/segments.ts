/**
 * Message bodies in append-only segment files (Kafka and NATS's filestore keep theirs the same way),
 * indexed from LMDB. Bodies written with write(2) stay out of the process's address space, so a large
 * backlog costs disk and page cache, not resident memory, which LMDB's memory map would charge for
 * every page it touches. A segment is removed once no index entry points into it.
 *
 * Segments also hold the Raft log's large entries (publish batches), and messages indexed inside them
 * (lmdb-storage.ts), so that a body is written once.
 *
 * Durability: in sync mode a step that wrote log entries here syncs before its LMDB commit. A sync
 * covers the directory too when a segment file was created since the last one. Message
 * records are not synced per step otherwise: every message was first made durable in the Raft log; a
 * restart replays the log from the last snapshot and writes again any message applied after it.
 * Before a snapshot is written, the segments are synced (`sync`), so every message the snapshot's
 * state refers to is on disk.
 *
 * Every record is framed (`frameBytes` ahead of it): its kind (a message record or a Raft log entry,
 * the entry's index, term and type), its length and a CRC32C of both. A follower acknowledges entries
 * once they are synced here, before the LMDB transaction that says where they are commits
 * (lmdb-storage.ts); a restart finds such entries again by scanning the frames past the last place
 * LMDB recorded (`scan`). Locations given out and taken back are those of the data, past the frame.
 *
 * A write that fails (ENOSPC) is undone: `append` takes back what it wrote before it throws, and a
 * caller whose later step fails takes back a whole append with `mark`/`rollback`, so a retry lands at
 * the same offsets and no bytes nothing points at are left behind.
 */
import { closeSync, constants as fsConstants, fdatasync, fdatasyncSync, fstatSync, fsync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, write, writeSync, writevSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { Packr } from 'msgpackr';
import { assert } from '../core/assert.js';
import type { StoredMessage } from '../core/broker/types.js';

const packr = new Packr({ useRecords: false });

/**
 * A segment is closed for appends once it reaches this size. `HERALD_SEGMENT_BYTES` (64 KiB or more)
 * changes it, for tests that need segments to fill and be freed quickly.
 */
export const segmentBytesMax = Math.max(64 * 1024, Number(process.env.HERALD_SEGMENT_BYTES) || 64 * 1024 * 1024);
/** Read file descriptors kept open (least recently used closed first). */
const readFdsMax = 64;
/** Reads fetch at least this much: consumers read neighbouring records next, so one read serves many. */
const readBlockBytes = 256 * 1024;

export interface Location {
  segment: number;
  offset: number;
  length: number;
}

/** Where appends stood at some moment (see `SegmentFiles.mark`). */
export interface SegmentMark {
  readonly active: number;
  readonly size: number;
  readonly unsynced: readonly number[];
  /** Appends made before it. */
  readonly appends: number;
}

// Record layout: [f64 publishTimeMs][f64 visibleAtMs][u8 flags: bit 0 base64 (else utf8), bit 1 jsonSafe][u32 metaLength]
// [meta: msgpack {a?, g?, r?, o?} or nothing][data]. The seq is the index key, not stored here.
const headerBytes = 21;

/**
 * Frame layout, ahead of every record: [u8 kind][u8 entry type][u16 0][u32 data length][f64 index]
 * [f64 term][u32 CRC32C of the 24 bytes before it and the data]. A zero byte where a frame would start
 * is padding (a direct write's, up to the next block boundary) or a hole left before a direct write.
 */
export const frameBytes = 28;
export const FrameKind = { message: 1, entry: 2 } as const;

/** What a log entry's frame says of it (a Raft Entry is one; no type: 0, a normal entry). */
export interface EntryFrame {
  index: number;
  term: number;
  type?: number;
}

/** A frame found by `scan`: where its data is, and what it frames. */
export interface ScannedFrame {
  kind: number;
  entry: EntryFrame;
  location: Location;
}

function frame(parts: Buffer[], entry: EntryFrame | undefined): Buffer[] {
  const head = Buffer.allocUnsafe(frameBytes);
  head[0] = entry ? FrameKind.entry : FrameKind.message;
  head[1] = entry?.type ?? 0;
  head.writeUInt16BE(0, 2);
  head.writeUInt32BE(recordBytes(parts), 4);
  head.writeDoubleBE(entry ? entry.index : 0, 8);
  head.writeDoubleBE(entry ? entry.term : 0, 16);
  let crc = crc32c(head.subarray(0, 24));
  for (const p of parts) crc = crc32c(p, crc);
  head.writeUInt32BE(crc >>> 0, 24);
  return [head, ...parts];
}

/** The records framed (the first `entries.length` as those log entries). */
function framed(records: Buffer[][], entries: readonly EntryFrame[] | undefined): Buffer[][] {
  return records.map((parts, i) => frame(parts, entries?.[i]));
}

/** Whole frames' locations (fresh objects) made their data's, in place. */
function toDataLocations(locations: Location[]): Location[] {
  for (const loc of locations) {
    loc.offset += frameBytes;
    loc.length -= frameBytes;
  }
  return locations;
}

/** A record's meta (attributes, tags, keys), or undefined when it has none. */
function encodeMeta(m: StoredMessage): Buffer | undefined {
  const meta: Record<string, unknown> = {};
  let hasMeta = false;
  if (m.attributes !== undefined) ((meta.a = m.attributes), (hasMeta = true));
  if (m.tags !== undefined) ((meta.g = m.tags), (hasMeta = true));
  if (m.routingKey !== undefined) ((meta.r = m.routingKey), (hasMeta = true));
  if (m.orderingKey !== undefined) ((meta.o = m.orderingKey), (hasMeta = true));
  return hasMeta ? packr.pack(meta) : undefined;
}

function writeHeader(out: Buffer, at: number, m: StoredMessage, metaLength: number): void {
  out.writeDoubleBE(m.publishTimeMs, at);
  out.writeDoubleBE(m.visibleAtMs, at + 8);
  out[at + 16] = (m.encoding === 'base64' ? 1 : 0) | (m.jsonSafe ? 2 : 0);
  out.writeUInt32BE(metaLength, at + 17);
}

export function encodeRecord(m: StoredMessage): Buffer[] {
  const metaBytes = encodeMeta(m);
  const header = Buffer.allocUnsafe(headerBytes);
  writeHeader(header, 0, m, metaBytes?.length ?? 0);
  const data = Buffer.isBuffer(m.data) ? m.data : Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  return metaBytes ? [header, metaBytes, data] : [header, data];
}

/**
 * A record without its data (header and meta), in one buffer after `reserve` bytes left for the
 * caller (the index keeps it behind the data's location when the data is elsewhere).
 */
export function encodeRecordHead(m: StoredMessage, reserve = 0): Buffer {
  const metaBytes = encodeMeta(m);
  const out = Buffer.allocUnsafe(reserve + headerBytes + (metaBytes?.length ?? 0));
  writeHeader(out, reserve, m, metaBytes?.length ?? 0);
  if (metaBytes) out.set(metaBytes, reserve + headerBytes);
  return out;
}

export function decodeRecord(seq: number, record: Buffer): StoredMessage {
  assert(record.length >= headerBytes, `message ${seq} record is truncated`);
  // A meta length past the record leaves a head shorter than it says: decodeRecordParts refuses it.
  const metaLength = record.readUInt32BE(17);
  return decodeRecordParts(seq, record.subarray(0, headerBytes + metaLength), record.subarray(headerBytes + metaLength));
}

/** A record from its head (`encodeRecordHead`: header and meta) and its data, stored apart. */
export function decodeRecordParts(seq: number, record: Buffer, data: Buffer): StoredMessage {
  assert(record.length >= headerBytes, `message ${seq} record is truncated`);
  const metaLength = record.readUInt32BE(17);
  assert(headerBytes + metaLength === record.length, `message ${seq} record has a bad meta length`);
  const m: StoredMessage = {
    seq,
    publishTimeMs: record.readDoubleBE(0),
    visibleAtMs: record.readDoubleBE(8),
    encoding: record[16]! & 1 ? 'base64' : 'utf8',
    data,
  };
  if (record[16]! & 2) m.jsonSafe = true;
  if (metaLength > 0) {
    const meta = packr.unpack(record.subarray(headerBytes, headerBytes + metaLength)) as {
      a?: Record<string, string>;
      g?: string[];
      r?: string;
      o?: string;
    };
    if (meta.a !== undefined) m.attributes = meta.a;
    if (meta.g !== undefined) m.tags = meta.g;
    if (meta.r !== undefined) m.routingKey = meta.r;
    if (meta.o !== undefined) m.orderingKey = meta.o;
  }
  return m;
}

/**
 * A sync of at most this many bytes written since the last one runs on the calling thread
 * (fdatasyncSync). Such a sync takes 0.15–0.3 ms here, less than the two thread hand-offs of an
 * asynchronous one (to libuv's pool and back), which wait for a CPU on a busy machine: at 1,000 msg/s
 * on 3 nodes, p50 was lower in 6 of 7 alternating sets (e.g. 3.13 → 2.06 ms; bench/RESULTS.md).
 * Larger syncs (a step under load writes 300–500 KB) stay off the thread: inline they took one
 * node's produce rate down 6–9%.
 */
export const syncInlineBytesMax = 64 * 1024;

/**
 * Direct writes (O_DIRECT) start and end on this boundary: a block of the disk's, and of the page
 * cache. An append in that mode is padded up to it; the next append starts past the padding.
 */
export const directBlockBytes = 4096;
/**
 * Appends smaller than this go through the page cache even in direct mode. A direct write waits for
 * the disk on the calling thread, where a buffered one is a copy: on a lightly loaded follower (a step
 * of a few KiB) direct writes put 0.24 ms on the p50 of publish-to-consume (8 of 12 alternating pairs,
 * bench/RESULTS.md), while the page cache they would spare is a few MB a second.
 */
export const directAppendBytesMin = 64 * 1024;
/** The aligned buffer direct writes are copied into, and written from, a chunk at a time. */
const directStagingBytes = 1024 * 1024;

const alignUp = (n: number) => Math.ceil(n / directBlockBytes) * directBlockBytes;

/**
 * Memory aligned for O_DIRECT. Node's Buffers have no alignment to rely on; a WebAssembly memory is
 * mapped whole pages at a time, so its start is page-aligned. (Checked anyway: see
 * `SegmentFiles.directWritesWork`.)
 */
function alignedBuffer(bytes: number): Buffer {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536), maximum: Math.ceil(bytes / 65536) });
  return Buffer.from(memory.buffer, 0, bytes);
}

export class SegmentFiles {
  private activeId: number;
  private activeFd: number;
  private activeSize: number;
  private readonly readFds = new Map<number, number>();
  /** Removed segment files still being unlinked (see remove). */
  private readonly unlinking = new Set<Promise<void>>();
  /** Segments written since the last sync. */
  private unsynced = new Set<number>();
  /** Bytes appended since the last sync (see syncInlineBytesMax). */
  private unsyncedBytes = 0;
  /** A segment file was created since the last sync: its directory entry must reach the disk too. */
  private directoryUnsynced = false;
  /** The last block read; records are immutable once written (or rolled back), so its bytes stay valid. */
  private block: { segment: number; offset: number; bytes: Buffer } | null = null;
  /** Appends made so far (those that succeeded). */
  private appends = 0;
  /** The aligned buffer direct writes go through (see `directWrites`): null until first asked for,
   * false if the filesystem refused. */
  private staging: Buffer | null | false = null;
  private wantDirect = false;
  /** The active segment opened for direct writes (no O_APPEND: they are positioned), when open. */
  private directFd: number | undefined;
  /**
   * Whether a small sync may run on the calling thread (syncInlineBytesMax): only where a commit waits
   * for it. A leader with followers to commit for it does not wait for its own sync, and holding its
   * thread for one delays everything else it does: draining a backlog on 3 nodes (two pullers of 500)
   * was faster with its syncs off the thread in 5 of 6 runs (+7% on average; bench/RESULTS.md).
   */
  syncsInline = true;
  /** Asynchronous direct writes in flight (appendAsync): 0 or 1. */
  private writing = 0;

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    const ids = this.list();
    this.activeId = ids.length > 0 ? ids[ids.length - 1]! : 1;
    this.activeFd = openSync(this.path(this.activeId), 'a+');
    this.activeSize = fstatSync(this.activeFd).size;
    this.directoryUnsynced = ids.length === 0;
  }

  /** Segment ids on disk, ascending. */
  list(): number[] {
    return readdirSync(this.dir)
      .filter((f) => /^\d{10}\.seg$/.test(f))
      .map((f) => Number(f.slice(0, 10)))
      .sort((a, b) => a - b);
  }

  get active(): number {
    return this.activeId;
  }

  /**
   * Whether appends of directAppendBytesMin or more bypass the page cache (O_DIRECT), where the
   * filesystem allows it. A follower's appends are read by nobody soon: written through the page
   * cache they would take a fresh page for every 4 KiB and push out what the node does read. Written
   * direct, they are copied once into one reused buffer and go to the disk from there (as TigerBeetle
   * and Redpanda write). The leader keeps the page cache: its consumers read what was just published.
   */
  set directWrites(on: boolean) {
    this.wantDirect = on;
    if (on && this.staging === null) {
      const staging = alignedBuffer(directStagingBytes);
      this.staging = this.directWritesWork(staging) ? staging : false;
    }
  }

  get directWrites(): boolean {
    return this.wantDirect && !!this.staging;
  }

  private path(id: number): string {
    return join(this.dir, `${String(id).padStart(10, '0')}.seg`);
  }

  /**
   * Appends records (each a list of buffers), each in its frame, in one write; returns where each
   * one's data landed. The first `entries.length` records are those log entries, the rest message
   * records. All or nothing: if a write fails, what this call wrote is taken back before the error is
   * thrown.
   */
  append(records: Buffer[][], entries?: readonly EntryFrame[]): Location[] {
    return toDataLocations(this.appendFramed(framed(records, entries)));
  }

  private appendFramed(records: Buffer[][], bytes = bytesOf(records)): Location[] {
    const mark = this.mark();
    try {
      const out = this.appendAll(records, bytes);
      this.appends++;
      return out;
    } catch (error) {
      this.rollback(mark);
      throw error;
    }
  }

  private appendAll(records: Buffer[][], bytes: number): Location[] {
    // The staging buffer is taken while an asynchronous direct write is in flight.
    if (this.directWrites && this.writing === 0 && bytes >= directAppendBytesMin) return this.appendDirect(records);
    const out: Location[] = [];
    let batch: Buffer[] = [];
    let batchBytes = 0;
    const flush = () => {
      if (batch.length === 0) return;
      let written = 0;
      // While an asynchronous direct write is in flight the file ends before the place it took, so an
      // append at the end of the file would land inside it: write at our own place instead.
      const at = this.activeSize - batchBytes;
      const fd = this.writing > 0 ? openSync(this.path(this.activeId), 'r+') : this.activeFd;
      try {
        while (written < batchBytes) {
          // writev may write less than asked; continue from where it stopped.
          const buffers = written === 0 ? batch : sliceBuffers(batch, written);
          const n = fd === this.activeFd ? this.write(fd, buffers) : this.write(fd, buffers, at + written);
          written += n;
        }
      } finally {
        if (fd !== this.activeFd) closeSync(fd);
      }
      this.unsynced.add(this.activeId);
      this.unsyncedBytes += batchBytes;
      batch = [];
      batchBytes = 0;
    };
    for (const parts of records) {
      const length = recordBytes(parts);
      if (this.activeSize > 0 && this.activeSize + length > segmentBytesMax) {
        flush();
        this.rotate();
      }
      out.push({ segment: this.activeId, offset: this.activeSize, length });
      for (const p of parts) batch.push(p);
      batchBytes += length;
      this.activeSize += length;
      if (batch.length >= 512) flush(); // IOV_MAX is 1024
    }
    flush();
    return out;
  }

  /**
   * `appendAll` past the page cache: the records are copied into the aligned staging buffer, which is
   * written whenever it fills and at the end, padded with zeros to a block boundary. The append starts
   * on a boundary too (after a buffered append the gap is left a hole), so no block is written twice.
   */
  private appendDirect(records: Buffer[][]): Location[] {
    const staging = this.staging as Buffer;
    const out: Location[] = [];
    this.activeSize = alignUp(this.activeSize);
    let stagingAt = this.activeSize; // where the staging buffer's first byte goes
    let filled = 0;
    const flush = (final: boolean) => {
      const length = final ? this.padStaging(filled) : filled;
      if (length === 0) return;
      if (this.directFd === undefined) this.directFd = this.openDirect(this.path(this.activeId), false);
      let written = 0;
      while (written < length) {
        written += checkedDirectWrite(this.writeAt(this.directFd, staging.subarray(written, length), stagingAt + written), length - written, this.activeId);
      }
      this.unsynced.add(this.activeId);
      this.unsyncedBytes += length;
      stagingAt += length;
      filled = 0;
    };
    for (const parts of records) {
      const length = recordBytes(parts);
      if (this.activeSize > 0 && this.activeSize + length > segmentBytesMax) {
        flush(true);
        this.rotate();
        stagingAt = 0;
      }
      out.push({ segment: this.activeId, offset: this.activeSize, length });
      for (const p of parts) {
        let from = 0;
        while (from < p.length) {
          const n = Math.min(p.length - from, staging.length - filled);
          p.copy(staging, filled, from, from + n);
          filled += n;
          from += n;
          if (filled === staging.length) flush(false);
        }
      }
      this.activeSize += length;
    }
    flush(true);
    this.activeSize = alignUp(this.activeSize);
    return out;
  }

  /** Zeros the staging buffer from `filled` to the next block boundary; the length to write. */
  private padStaging(filled: number): number {
    const length = alignUp(filled);
    (this.staging as Buffer).fill(0, filled, length);
    return length;
  }

  /** Whether this directory's filesystem takes direct writes from `staging`. */
  private directWritesWork(staging: Buffer): boolean {
    const probe = join(this.dir, 'direct-write.probe');
    let fd: number | undefined;
    try {
      fd = this.openDirect(probe, true);
      staging.fill(0, 0, directBlockBytes);
      return this.writeAt(fd, staging.subarray(0, directBlockBytes), 0) === directBlockBytes;
    } catch {
      return false;
    } finally {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(probe);
      } catch {
        /* never created */
      }
    }
  }

  /** Opens a file for direct writes. (Tests override it to refuse, as some filesystems do with EINVAL.) */
  protected openDirect(path: string, create: boolean): number {
    return openSync(path, fsConstants.O_WRONLY | fsConstants.O_DIRECT | (create ? fsConstants.O_CREAT | fsConstants.O_TRUNC : 0));
  }

  /** One pwrite(2) of a direct write: bytes written. (Tests override it to fail like a full disk.) */
  protected writeAt(fd: number, buffer: Buffer, position: number): number {
    return writeSync(fd, buffer, 0, buffer.length, position);
  }

  /** One writev(2): bytes written, maybe fewer than given. (Tests override it to fail like a full disk.) */
  protected write(fd: number, buffers: Buffer[], position?: number): number {
    return position === undefined ? writevSync(fd, buffers) : writevSync(fd, buffers, position);
  }

  /**
   * `append` for a step: a direct append that fits the staging buffer and the active segment is
   * written on libuv's thread pool, so that the calling thread is not held while the disk takes it
   * (held, a follower fell behind a leader writing into a warm page cache, and drained a backlog 10%
   * slower; bench/RESULTS.md). Its place is taken before the write starts: an `append` meanwhile (a
   * snapshot stream's records) writes after it. A failed write is taken back, as `append` does, unless
   * another append came after it.
   */
  async appendAsync(unframed: Buffer[][], entries?: readonly EntryFrame[]): Promise<Location[]> {
    return toDataLocations(await this.appendFramedAsync(framed(unframed, entries)));
  }

  private async appendFramedAsync(records: Buffer[][]): Promise<Location[]> {
    const bytes = bytesOf(records);
    const staging = this.staging;
    const start = alignUp(this.activeSize);
    if (!this.directWrites || this.writing > 0 || !staging || bytes < directAppendBytesMin || bytes > staging.length || (this.activeSize > 0 && start + bytes > segmentBytesMax)) {
      return this.appendFramed(records, bytes);
    }
    const mark = this.mark();
    const segment = this.activeId;
    const out: Location[] = [];
    let filled = 0;
    for (const parts of records) {
      out.push({ segment, offset: start + filled, length: recordBytes(parts) });
      for (const p of parts) filled += p.copy(staging, filled);
    }
    const length = this.padStaging(filled);
    this.activeSize = start + length;
    this.writing++;
    let fd: number | undefined;
    try {
      // Its own descriptor: an append meanwhile may rotate, which closes the segment's.
      fd = this.openDirect(this.path(segment), false);
      let written = 0;
      while (written < length) {
        written += checkedDirectWrite(await this.writeAtAsync(fd, staging.subarray(written, length), start + written), length - written, segment);
      }
    } catch (error) {
      this.writing--;
      if (this.appends === mark.appends) this.rollback(mark);
      throw error;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    this.writing--;
    this.unsynced.add(segment);
    this.unsyncedBytes += length;
    this.appends++;
    return out;
  }

  /** `writeAt` on libuv's thread pool. (Tests override it to fail like a full disk.) */
  protected writeAtAsync(fd: number, buffer: Buffer, position: number): Promise<number> {
    return new Promise((resolve, reject) => write(fd, buffer, 0, buffer.length, position, (e, n) => (e ? reject(e) : resolve(n))));
  }

  private rotate(): void {
    // Open the next one first: if that fails, the active segment is still open and still active.
    const fd = openSync(this.path(this.activeId + 1), 'a+');
    this.directoryUnsynced = true;
    this.unsynced.add(this.activeId);
    // Reads of the old active segment go through the read cache from now on; close it here.
    closeSync(this.activeFd);
    this.closeDirect();
    this.activeId++;
    this.activeFd = fd;
    this.activeSize = 0;
  }

  private closeDirect(): void {
    if (this.directFd === undefined) return;
    closeSync(this.directFd);
    this.directFd = undefined;
  }

  /**
   * The frames from `from` on, in order, through every later segment, up to the first that is torn,
   * fails its checksum or is not a frame at all (what a crash left unsynced ends there). Zeros where a
   * frame would start are padding or a hole: skipped to the next block boundary.
   */
  *scan(from: { segment: number; offset: number }): Generator<ScannedFrame> {
    for (const id of this.list()) {
      if (id < from.segment) continue;
      const start = id === from.segment ? from.offset : 0;
      const bytes = this.readTail(id, start);
      let at = 0;
      for (;;) {
        if (at >= bytes.length) break; // this segment ends here: on to the next
        if (bytes[at] === 0) {
          const offset = start + at;
          at = (offset % directBlockBytes === 0 ? offset + directBlockBytes : alignUp(offset)) - start;
          continue;
        }
        if (at + frameBytes > bytes.length) return;
        const kind = bytes[at]!;
        const length = bytes.readUInt32BE(at + 4);
        if ((kind !== FrameKind.message && kind !== FrameKind.entry) || at + frameBytes + length > bytes.length) return;
        const crc = crc32c(bytes.subarray(at + frameBytes, at + frameBytes + length), crc32c(bytes.subarray(at, at + 24)));
        if (crc >>> 0 !== bytes.readUInt32BE(at + 24)) return;
        const entry = { type: bytes[at + 1]!, index: bytes.readDoubleBE(at + 8), term: bytes.readDoubleBE(at + 16) };
        yield { kind, entry, location: { segment: id, offset: start + at + frameBytes, length } };
        at += frameBytes + length;
      }
    }
  }

  /** A segment's bytes from `offset` to its end, as they are on disk now. */
  private readTail(id: number, offset: number): Buffer {
    const fd = openSync(this.path(id), 'r');
    try {
      const size = fstatSync(fd).size;
      const out = Buffer.alloc(Math.max(0, size - offset));
      let got = 0;
      while (got < out.length) {
        const n = readSync(fd, out, got, out.length - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return out.subarray(0, got);
    } finally {
      closeSync(fd);
    }
  }

  /** Where appends stand now, for `rollback`. */
  mark(): SegmentMark {
    return { active: this.activeId, size: this.activeSize, unsynced: [...this.unsynced], appends: this.appends };
  }

  /** Appends made since `mark`: a caller rolls back only over its own. */
  appendsSince(mark: SegmentMark): number {
    return this.appends - mark.appends;
  }

  /**
   * Takes back every append since `mark` (whose index entries never made it to disk): segments opened
   * since are removed and the segment active then is cut back to its size then, so the next append
   * writes at the same place again.
   */
  rollback(mark: SegmentMark): void {
    // The cached block may hold bytes past the mark, which the next append overwrites.
    this.block = null;
    if (this.activeId !== mark.active) {
      const fd = openSync(this.path(mark.active), 'a+');
      closeSync(this.activeFd);
      this.closeDirect();
      for (let id = mark.active + 1; id <= this.activeId; id++) {
        const readFd = this.readFds.get(id);
        if (readFd !== undefined) {
          closeSync(readFd);
          this.readFds.delete(id);
        }
        this.unsynced.delete(id);
        try {
          unlinkSync(this.path(id));
        } catch {
          /* never created */
        }
      }
      this.activeId = mark.active;
      this.activeFd = fd;
    }
    ftruncateSync(this.activeFd, mark.size);
    this.activeSize = mark.size;
    // A sync that failed since took these off the list; they still need one.
    for (const id of mark.unsynced) this.unsynced.add(id);
  }

  /** A record's bytes. The returned buffer may be a view into a shared block: copy what you keep long. */
  read(loc: Location): Buffer {
    const b = this.block;
    if (b && b.segment === loc.segment && loc.offset >= b.offset && loc.offset + loc.length <= b.offset + b.bytes.length) {
      return b.bytes.subarray(loc.offset - b.offset, loc.offset - b.offset + loc.length);
    }
    const fd = loc.segment === this.activeId ? this.activeFd : this.readFd(loc.segment);
    const want = Math.max(loc.length, readBlockBytes);
    const buf = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < loc.length) {
      const n = readSync(fd, buf, got, want - got, loc.offset + got);
      assert(n > 0, `segment ${loc.segment} ends before ${loc.offset + loc.length}`);
      got += n;
    }
    const bytes = buf.subarray(0, got);
    this.block = { segment: loc.segment, offset: loc.offset, bytes };
    return bytes.subarray(0, loc.length);
  }

  private readFd(id: number): number {
    let fd = this.readFds.get(id);
    if (fd !== undefined) {
      this.readFds.delete(id);
      this.readFds.set(id, fd);
      return fd;
    }
    fd = openSync(this.path(id), 'r');
    this.readFds.set(id, fd);
    if (this.readFds.size > readFdsMax) {
      const [oldId, oldFd] = this.readFds.entries().next().value as [number, number];
      this.readFds.delete(oldId);
      closeSync(oldFd);
    }
    return fd;
  }

  /** Makes every write so far durable. */
  async sync(): Promise<void> {
    const ids = [...this.unsynced];
    this.unsynced = new Set();
    const directory = this.directoryUnsynced;
    this.directoryUnsynced = false;
    const bytes = this.unsyncedBytes;
    this.unsyncedBytes = 0;
    if (this.syncsInline && !directory && ids.length === 1 && ids[0] === this.activeId && bytes <= syncInlineBytesMax) {
      fdatasyncSync(this.activeFd);
      return;
    }
    await Promise.all([
      ...(directory ? [syncDirectory(this.dir)] : []),
      ...ids.map(
        (id) =>
          new Promise<void>((resolve, reject) => {
            if (id === this.activeId) return fdatasync(this.activeFd, (e) => (e ? reject(e) : resolve()));
            let fd: number;
            try {
              fd = openSync(this.path(id), 'r');
            } catch {
              return resolve(); // removed meanwhile: nothing to sync
            }
            fdatasync(fd, (e) => {
              closeSync(fd);
              return e ? reject(e) : resolve();
            });
          }),
      ),
    ]);
  }

  /** Removes a segment no index entry points into. Never the active one. */
  remove(id: number): void {
    if (id === this.activeId) return;
    if (this.block?.segment === id) this.block = null;
    const fd = this.readFds.get(id);
    if (fd !== undefined) {
      closeSync(fd);
      this.readFds.delete(id);
    }
    this.unsynced.delete(id);
    // In the background: unlinking a full 64 MiB segment takes the filesystem ~10 ms, which would
    // stall every request on this node. Nothing points into the file any more; should the process stop
    // first, the next start removes it (segments nothing points into are garbage).
    const done: Promise<void> = unlink(this.path(id))
      .catch(() => {}) // already gone
      .finally(() => this.unlinking.delete(done));
    this.unlinking.add(done);
  }

  /** Resolves once the segment files removed so far are gone from the directory. */
  async removalsDone(): Promise<void> {
    await Promise.all([...this.unlinking]);
  }

  close(): void {
    closeSync(this.activeFd);
    this.closeDirect();
    for (const fd of this.readFds.values()) closeSync(fd);
    this.readFds.clear();
  }
}

/** What one direct write wrote, checked: it stops short only on a block boundary, or cannot go on. */
function checkedDirectWrite(written: number, asked: number, segment: number): number {
  assert(written > 0 && written % directBlockBytes === 0, `a direct write to segment ${segment} wrote ${written} of ${asked} bytes`);
  return written;
}

function recordBytes(parts: Buffer[]): number {
  let bytes = 0;
  for (const p of parts) bytes += p.length;
  return bytes;
}

function bytesOf(records: Buffer[][]): number {
  let bytes = 0;
  for (const parts of records) bytes += recordBytes(parts);
  return bytes;
}

function sliceBuffers(buffers: Buffer[], skip: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/** fsync of a directory: the names of the files created in it are on disk (POSIX asks for it). */
function syncDirectory(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let fd: number;
    try {
      fd = openSync(dir, 'r');
    } catch (error) {
      return reject(error);
    }
    fsync(fd, (e) => {
      closeSync(fd);
      return e ? reject(e) : resolve();
    });
  });
}
