/**
 * Herald's storage: one LMDB environment (the raft log and hard state, broker snapshots, and the index
 * of messages) plus segment files holding message bodies (segments.ts).
 *
 * A body is written once. A log entry of entryInSegmentBytesMin or more (a publish batch) goes to the
 * segment files, and the log in LMDB keeps where it is; the messages it publishes are indexed where
 * their data lies inside it (the index keeps the record's head: times, flags, attributes). Segment
 * reference counts include the log entries in them, released when the log is compacted or a tail
 * replaced. In sync mode a step's entries are synced (fdatasync) before the transaction that says
 * where they are commits, so an acknowledged entry is on disk. Bodies not in such an entry (a small
 * publish, a snapshot received from the leader) are written as whole records.
 *
 * A follower's step that only appends entries to the log resolves once they are synced into the
 * segment files, and its transaction lands behind it (`commitsBehind`): the follower acknowledges
 * after one fdatasync instead of that and LMDB's commit (two more). Every segment record is framed
 * with a checksum, and an entry's frame says its index and term, so a restart whose last steps never
 * landed finds their entries past the place the last landed step recorded (`segment-tail`) and puts
 * them in the log before anything reads it (`recoverEntriesBehind`).
 *
 * One LMDB write transaction per
 * driver step carries new log entries, the message index writes of the commands applied since the
 * last step and, now and then, a broker snapshot; it is fsynced before its promise resolves
 * (`overlappingSync: false`), so a resolved step is on disk. In relaxed mode nothing is fsynced and
 * the transaction commits on the calling thread (`commitsInline`).
 *
 * Message writes are applied to the in-memory state first and reach storage in the next step; until
 * then reads are served from `pendingPuts`. Deletes (retention, dropped topics) are held back until a
 * step that also writes a snapshot covering them: a restart replays the log from the snapshot over the
 * message store, and replaying must find every message the snapshot's state still refers to. Puts need
 * no such care: replaying a command writes the same message at the same seq again.
 * Once a snapshot covers them, removed messages' index entries are cleared a bounded number per step
 * (mostly in idle steps: see clearKeysPerStepMax), so that no step grows long; a restart
 * finds what a stop left uncleared.
 *
 * A step that fails changes nothing: its segment appends are cut back, the LMDB transaction (a child
 * transaction, so a throw inside it aborts it) is not committed, and every field it touched in memory
 * is put back. A failure for lack of room throws StorageFullError, and the driver tries the same
 * write again once there is room (runtime/herald-node.ts).
 */
import { constants } from 'node:os';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { assert } from '../core/assert.js';
import type { BrokerSnapshot } from '../core/broker/machine.js';
import type { MessageStore, StoredMessage } from '../core/broker/types.js';
import type { LogReader } from '../core/raft/log.js';
import { EntryType, type ConfState, type Entry, type GroupId, type HardState, type SnapshotMeta } from '../core/raft/types.js';
import { decodeCommand, encodeCommand } from './command-codec.js';
import { decodeRecord, decodeRecordParts, encodeRecord, encodeRecordHead, FrameKind, SegmentFiles, type EntryFrame, type Location } from './segments.js';
import { filesystemSpace } from './usage.js';
import { noteFsync } from '../metrics/registry.js';

/**
 * Removed messages (retention, dropped topics) are cleared from the index a bounded number of keys per
 * step, so that no step grows long: deleting a topic of 200,000 messages at once made every step for a
 * second take ~30 ms (about 1.4 µs per key, and the commit's pages), and publish latency with it.
 * Most of the clearing is left to idle steps (nothing waits on them: the node runs them when it has
 * had nothing to write for a while, one after another until something comes), clearKeysPerStepMax
 * each. Any other step clears twice the messages it indexes, within the bounds below, so that clearing
 * keeps ahead of retention under load. (Clearing 500 a step in every step put 5–10 ms on the p99 of a
 * light load for the seconds a dropped topic of 450,000 messages took.)
 */
export const clearKeysPerBusyStepMin = 32;
export const clearKeysPerStepMax = 500;
/**
 * Log entries at least this long (publish batches) are written to the segment files, not into LMDB,
 * and the messages they publish are indexed where their data already is: a body is written once.
 * `HERALD_ENTRY_IN_SEGMENT_BYTES` changes it, for tests that need LMDB to fill up with log entries.
 */
export const entryInSegmentBytesMin = Number(process.env.HERALD_ENTRY_IN_SEGMENT_BYTES) || 1024;
/** The type byte of a log entry whose data is in a segment file (its value then holds where). */
const entryInSegmentFlag = 0x80;

/**
 * The layout of what is on disk. 2: every segment record is framed (segments.ts), and a follower's
 * acknowledged entries may be only there after a crash. Data of another layout is refused.
 */
const storageFormat = 2;

/** A step whose transaction lands behind it: the transaction, and what follows its landing. */
interface BehindStep {
  transaction: () => void;
  afterLanding: () => void;
  /** Its last entry's index. */
  last: number;
}

/** Where the last step that landed left the segment files: frames past it are found by a scan at startup. */
interface SegmentTail {
  segment: number;
  offset: number;
}

/** The placeholder `data` of a message read without it (see followerMode). */
const noData = Buffer.alloc(0);

/** Where a message's data sits in the log entry that published it. */
interface EntrySource {
  entryIndex: number;
  offset: number;
}
/** LMDB reports a short write, which is what a full disk does to it mid-commit, as EIO. An EIO is taken
 * for lack of room when the disk has less than this free right after it (an LMDB write is at most a
 * few MiB unless one value is larger); a real I/O error on a disk with room still fails the node. */
const shortWriteFreeBytesMax = 16 * 1024 * 1024;

/**
 * A step's transaction lands behind it (see `commitsBehind`) only while the disk has this much free:
 * one that then failed for lack of room could not be undone and tried again like any other step's,
 * since its entries are acknowledged; the node would have to stop (a restart recovers them). A step's
 * transaction writes a few MiB at most.
 */
export const commitBehindFreeBytesMin = 64 * 1024 * 1024;
/**
 * At most this many steps' transactions land behind them at once; the next step waits for the oldest.
 * A follower's LMDB commit (page writes and two syncs) takes longer than its segment sync: those that
 * queue up meanwhile are committed together.
 */
export const commitsBehindMax = 8;

/** Why a step found no room: the disk, a quota, or LMDB's map (lmdb-js grows the map, so rare). */
export type StorageFullReason = 'no_space' | 'quota' | 'map_full';

/**
 * A step failed for lack of room. Storage is as it was before the step (nothing of it reached the
 * disk, and what it changed in memory is back), so the same StepWrite may be tried again later.
 */
export class StorageFullError extends Error {
  readonly code = 'StorageFull';
  constructor(
    readonly reason: StorageFullReason,
    cause: unknown,
  ) {
    super(`${reason}: ${errorMessage(cause)}`, { cause });
    this.name = 'StorageFullError';
  }
}

export interface StepWrite {
  /** Entries to persist; they replace any stored entries at the same or higher indexes. */
  entries: Entry[];
  hardState: HardState | null;
  /** A broker snapshot taken at `meta.index`; log entries at or below `compactTo` may then go. */
  snapshot?: { meta: SnapshotMeta; state: BrokerSnapshot; compactTo: number };
  /** A leader's snapshot to install: replaces the log and every message (written before `entries`). */
  install?: { meta: SnapshotMeta; received: ReceivedSnapshot };
  /** Nothing waits on this step (the node is idle): it clears clearKeysPerStepMax removed keys. */
  idle?: boolean;
}

/**
 * Message bodies a follower received in a leader's snapshot stream, already appended to its segment
 * files but not yet indexed (parallel arrays, to stay compact for millions of messages).
 */
export class LocatedRecords {
  readonly topicIds: number[] = [];
  readonly seqs: number[] = [];
  readonly segments: number[] = [];
  readonly offsets: number[] = [];
  readonly lengths: number[] = [];
  get size(): number {
    return this.seqs.length;
  }
}

/** A snapshot received from the leader, ready to install. */
export interface ReceivedSnapshot {
  state: BrokerSnapshot;
  records: LocatedRecords;
}

export interface LoadedState {
  hardState: HardState | null;
  snapshot: { meta: SnapshotMeta; state: BrokerSnapshot } | null;
}

/** Seqs [from, to) of a topic whose index entries are to go. */
type ClearRange = { readonly topicId: number; readonly from: number; readonly to: number };

const noSnapshot = (conf: ConfState): SnapshotMeta => ({ index: 0, term: 0, conf });

export interface LmdbStorageOptions {
  mapSizeBytes?: number;
  durability?: 'sync' | 'relaxed';
  /** Test seams: the segment files to use, and a call made last inside each step's transaction (a
   * throw there fails the step as a failed commit would). */
  segmentFiles?: (dir: string) => SegmentFiles;
  inStepTransaction?: () => void;
}

const locationBytes = 12;

function encodeLocation(loc: Location): Buffer {
  const b = Buffer.allocUnsafe(locationBytes);
  writeLocation(b, 0, loc);
  return b;
}

function writeLocation(b: Buffer, at: number, loc: Location): void {
  b.writeUInt32BE(loc.segment, at);
  b.writeUInt32BE(loc.offset, at + 4);
  b.writeUInt32BE(loc.length, at + 8);
}

/**
 * The location at the start of a message index entry. The entry is the location of a whole record
 * (12 bytes), or the location of the message's data followed by the record's head (the data is in
 * the log entry that published it, written once).
 */
function decodeLocation(b: Buffer, at = 0): Location {
  assert(b.length >= at + locationBytes, 'message index entry is shorter than a location');
  return { segment: b.readUInt32BE(at), offset: b.readUInt32BE(at + 4), length: b.readUInt32BE(at + 8) };
}

export class LmdbStorage implements MessageStore, LogReader {
  private readonly root: RootDatabase;
  private readonly log: Database<Buffer, [number, number]>;
  private readonly meta: Database<unknown, [number, string]>;
  /** [topicId, seq] → where the body is: 12 bytes. */
  private readonly index: Database<Buffer, [number, number]>;
  /** segment id → index entries pointing into it. */
  private readonly segmentLive: Database<number, number>;
  private readonly segments: SegmentFiles;
  /** See followerMode. */
  private dataOnDemand = false;
  /** See followerMode and `commitsBehind`. */
  private acknowledgeBeforeCommit = false;
  /**
   * Steps that resolved before their LMDB transactions landed (see `commitsBehind`): those waiting
   * for the group in flight to land, and that group (one LMDB transaction for all of its steps).
   */
  private behindQueue: BehindStep[] = [];
  private behindGroup: { steps: number; landed: Promise<void> } | undefined;
  /** Why such a transaction failed: every later step throws it (the node must stop). */
  private landingFailure: Error | undefined;
  /** Those steps' entries, read from here until LMDB holds them (the log's last entries, in order). */
  private unlanded: Entry[] = [];
  /** The hard state on disk (as the log's readers see it). */
  private hardStateWritten: HardState | null = null;
  private readonly liveCounts = new Map<number, number>();
  /** The greatest index key written: a larger key goes in with MDB_APPEND, which fills pages instead
   * of splitting them in half (and cannot replace an entry, so needs no check for one). */
  private indexLastKey: [number, number] = [0, 0];
  private pendingPuts = new Map<number, Map<number, StoredMessage>>();
  private putQueue: [number, StoredMessage, EntrySource | undefined][] = [];
  /** The log entry being applied (see `applying`): messages whose data lies in it are indexed there. */
  private applyingEntry: Entry | undefined;
  /** Where the log entries written to segment files since this process started are (pruned with the log). */
  private entryLocations = new Map<number, Location>();
  /** sync mode: a step's log entries in segment files are synced with it, as durable as the rest of the log. */
  private readonly syncEntriesPerStep: boolean;
  /** Removals waiting for a snapshot step; that step hands them to `clearing`. */
  private deferredDeletes: ClearRange[] = [];
  /** Index ranges of removed messages still being cleared, a bounded number of keys per step. Items
   * are replaced, never changed, so a copy of the array is a snapshot of it. */
  private clearing: ClearRange[] = [];
  /** The last step, if it failed: what it took, so that the same write tried again takes the same. */
  private failedStep: { write: StepWrite; puts: number; deletes: number } | undefined;
  private readonly inStepTransaction: (() => void) | undefined;
  /** The persisted log's bounds and latest snapshot, kept in memory for the Raft core's reads. */
  private logFirstIndex = 1;
  private logLastIndex = 0;
  private snapshotMeta: SnapshotMeta;
  /** Terms of the stored entries: terms[i] is the term of entry termsOffset + i. Reading a term from
   * LMDB would copy the whole entry (and fault its pages into memory) to get 8 bytes. */
  private terms: number[] = [];
  private termsOffset = 1;

  constructor(
    /** The data directory: herald.mdb and segments/ are in it. */
    readonly dataDir: string,
    private readonly group: GroupId = 0,
    options: LmdbStorageOptions = {},
  ) {
    this.root = open({
      path: join(dataDir, 'herald.mdb'),
      maxDbs: 8,
      overlappingSync: false,
      // Herald batches its own writes (one transaction per step). lmdb-js's batching of an event
      // turn's writes adds a commit promise of its own that nobody awaits: a failed commit (a full
      // disk) would reject it unhandled and end the process.
      eventTurnBatching: false,
      // relaxed: commits reach the OS but are not fsynced; a process crash loses nothing, a power
      // loss or kernel crash may lose the last moments of writes on this node.
      noSync: options.durability === 'relaxed',
      // MDB_NORDAHEAD (madvise random): a page fault maps that page, not its neighbours, so the map's
      // resident size follows what is really read. (The option is missing from lmdb-js's types.)
      ...({ noReadAhead: true } as object),
      ...(options.mapSizeBytes ? { mapSize: options.mapSizeBytes } : {}),
    });
    this.log = this.root.openDB({ name: 'raft-log', encoding: 'binary' });
    this.meta = this.root.openDB({ name: 'meta', encoding: 'msgpack' });
    this.index = this.root.openDB({ name: 'message-index', encoding: 'binary' });
    this.segmentLive = this.root.openDB({ name: 'segment-live', encoding: 'msgpack' });
    this.segments = (options.segmentFiles ?? ((dir) => new SegmentFiles(dir)))(join(dataDir, 'segments'));
    this.inStepTransaction = options.inStepTransaction;
    this.syncEntriesPerStep = options.durability !== 'relaxed';
    this.checkFormat();
    for (const { key, value } of this.segmentLive.getRange()) this.liveCounts.set(key, value);
    for (const key of this.index.getKeys({ reverse: true, limit: 1 })) this.indexLastKey = key;
    this.recoverEntriesBehind();
    // Segments nothing points into (their last entry went just before a crash) are garbage.
    for (const id of this.segments.list()) if (!this.liveCounts.get(id)) this.segments.remove(id);
    this.snapshotMeta = noSnapshot({ voters: [], learners: [] });
  }

  /** Refuses data of another layout; marks a new data directory with this one. */
  private checkFormat(): void {
    const format = this.meta.get([0, 'format']);
    if (format === storageFormat) return;
    if (format !== undefined) throw new Error(`${this.dataDir} holds storage format ${String(format)}; this Herald reads format ${storageFormat}`);
    const used = [this.log, this.meta, this.index].some((db) => db.getKeysCount({ limit: 1 }) > 0);
    if (used) throw new Error(`${this.dataDir} was written by an older Herald (segment records without frames, storage format 1); start this one on an empty data directory`);
    this.meta.putSync([0, 'format'], storageFormat);
  }

  /**
   * Log entries a follower acknowledged once they were synced into the segment files, whose LMDB
   * transaction had not landed when the process stopped (see `commitsBehind`): they are the entry
   * frames past the place the last landed step recorded, each the one after the log's last (index +
   * 1, a term no lower and no higher than the hard state's). They go into the log here, before
   * anything reads it. Whatever follows them (a torn frame, a step that never acknowledged) is left
   * behind: the place recorded now is the segments' end, and later appends go past it.
   */
  private recoverEntriesBehind(): void {
    const tail = this.meta.get([this.group, 'segment-tail']) as SegmentTail | undefined;
    if (!tail) return;
    const hardState = this.meta.get([this.group, 'hard-state']) as HardState | undefined;
    const snap = this.meta.get([this.group, 'snapshot']) as { meta: SnapshotMeta } | undefined;
    let lastIndex = snap?.meta.index ?? 0;
    let lastTerm = snap?.meta.term ?? 0;
    for (const { key, value } of this.log.getRange({ start: [this.group, Number.MAX_SAFE_INTEGER], end: [this.group, 0], reverse: true, limit: 1 })) {
      if (key[1] > lastIndex) [lastIndex, lastTerm] = [key[1], value.readDoubleBE(0)];
    }
    const found: [EntryFrame, Location][] = [];
    for (const f of this.segments.scan(tail)) {
      if (f.kind !== FrameKind.entry) continue;
      const e = f.entry;
      if (e.index !== lastIndex + 1 || e.term < lastTerm || e.term > (hardState?.term ?? 0)) break;
      found.push([e, f.location]);
      [lastIndex, lastTerm] = [e.index, e.term];
    }
    const end = this.segments.mark();
    this.root.transactionSync(() => {
      for (const [e, at] of found) {
        this.log.putSync([this.group, e.index], encodeEntryAt(e, at));
        this.liveCounts.set(at.segment, (this.liveCounts.get(at.segment) ?? 0) + 1);
      }
      for (const id of new Set(found.map(([, at]) => at.segment))) this.segmentLive.putSync(id, this.liveCounts.get(id)!);
      this.meta.putSync([this.group, 'segment-tail'], { segment: end.active, offset: end.size } satisfies SegmentTail);
    });
    if (found.length > 0) console.warn(`herald: recovered log entries ${found[0]![0].index}–${lastIndex} from the segment files (acknowledged before their LMDB commit landed)`);
  }

  // ---- MessageStore (used by the broker state machine, synchronously) ----

  put(topicId: number, message: StoredMessage): void {
    let topic = this.pendingPuts.get(topicId);
    if (!topic) this.pendingPuts.set(topicId, (topic = new Map()));
    topic.set(message.seq, message);
    const e = this.applyingEntry;
    const d = message.data;
    const source =
      e && d.buffer === e.data.buffer && d.byteOffset >= e.data.byteOffset && d.byteOffset + d.byteLength <= e.data.byteOffset + e.data.byteLength
        ? { entryIndex: e.index, offset: d.byteOffset - e.data.byteOffset }
        : undefined;
    this.putQueue.push([topicId, message, source]);
  }

  /**
   * The driver applies `entry` (undefined: done): a message put meanwhile whose data is a view into
   * the entry's data is indexed where the entry is stored, not written again.
   */
  applying(entry: Entry | undefined): void {
    this.applyingEntry = entry;
  }

  get(topicId: number, seq: number): StoredMessage | undefined {
    const pending = this.pendingPuts.get(topicId)?.get(seq);
    if (pending) return pending;
    const value = this.index.getBinaryFast([topicId, seq]);
    if (!value) return undefined;
    return this.recordAt(seq, value);
  }

  /** A message from its index entry: a whole record in a segment, or a head with its data elsewhere. */
  private recordAt(seq: number, indexValue: Buffer): StoredMessage {
    const loc = decodeLocation(indexValue);
    if (indexValue.length === locationBytes) return decodeRecord(seq, this.segments.read(loc));
    // The head is a view valid until the next LMDB call: it is decoded here and not kept (a segment
    // read makes no LMDB call).
    const head = indexValue.subarray(locationBytes);
    if (!this.dataOnDemand) return decodeRecordParts(seq, head, this.segments.read(loc));
    const m = decodeRecordParts(seq, head, noData);
    const segments = this.segments;
    let data: Uint8Array | undefined;
    Object.defineProperty(m, 'data', {
      enumerable: true,
      get: () => (data ??= segments.read(loc)),
      set: (v: Uint8Array) => void (data = v),
    });
    return m;
  }

  deleteRange(topicId: number, fromSeq: number, toSeqExclusive: number): void {
    this.deferredDeletes.push({ topicId, from: fromSeq, to: toSeqExclusive });
  }

  dropTopic(topicId: number): void {
    this.deferredDeletes.push({ topicId, from: 0, to: Number.MAX_SAFE_INTEGER });
  }

  // ---- the driver's side ----

  /** Reads what a restart needs; `initialConf` is the membership when no snapshot says otherwise. */
  load(initialConf: ConfState): LoadedState {
    const hardState = (this.meta.get([this.group, 'hard-state']) as HardState | undefined) ?? null;
    this.hardStateWritten = hardState;
    const snap = this.loadSnapshotState();
    this.snapshotMeta = snap?.meta ?? noSnapshot(initialConf);
    if (snap) this.clearing = this.leftoverRemovals(snap.meta.index, snap.state);
    this.logFirstIndex = this.snapshotMeta.index + 1;
    this.logLastIndex = this.snapshotMeta.index;
    for (const key of this.log.getKeys({ start: [this.group, 0], end: [this.group, Number.MAX_SAFE_INTEGER], limit: 1 })) {
      this.logFirstIndex = Math.min(this.logFirstIndex, key[1]);
    }
    for (const key of this.log.getKeys({ start: [this.group, Number.MAX_SAFE_INTEGER], end: [this.group, 0], reverse: true, limit: 1 })) {
      this.logLastIndex = Math.max(this.logLastIndex, key[1]);
    }
    this.termsOffset = this.logFirstIndex;
    this.terms = [];
    for (const { key, value } of this.log.getRange({ start: [this.group, this.logFirstIndex], end: [this.group, this.logLastIndex + 1] })) {
      assert(key[1] === this.termsOffset + this.terms.length, `the log has a hole before ${key[1]}`);
      this.terms.push(value.readDoubleBE(0));
    }
    return { hardState, snapshot: snap };
  }

  /**
   * Index entries a stop cut short the clearing of (the ranges being cleared live in memory only):
   * seqs below the first a topic of the snapshot keeps, and whole topics the snapshot no longer has
   * but had once (a topic's id is the log index that created it: one above the snapshot's index may
   * be created again by the log's replay, and is left alone). One seek per topic in the index.
   */
  private leftoverRemovals(snapshotIndex: number, state: BrokerSnapshot): ClearRange[] {
    const topics = new Map(state.topics.map((t) => [t.id, t]));
    const out: ClearRange[] = [];
    for (let id = 0; ; ) {
      let first: [number, number] | undefined;
      for (const key of this.index.getKeys({ start: [id, 0], limit: 1 })) first = key;
      if (!first) break;
      const t = topics.get(first[0]);
      if (!t && first[0] <= snapshotIndex) out.push({ topicId: first[0], from: 0, to: Number.MAX_SAFE_INTEGER });
      else if (t && first[1] < t.firstSeq) out.push({ topicId: t.id, from: first[1], to: t.firstSeq });
      id = first[0] + 1;
    }
    return out;
  }

  /** Whether nothing was ever written: a new data directory. */
  isEmpty(): boolean {
    return this.logLastIndex === 0 && this.snapshotMeta.index === 0;
  }

  /** Writes a new group's first entry and hard state, before the Raft core starts. */
  bootstrapSync(entry: Entry, hardState: HardState): void {
    assert(this.isEmpty() && entry.index === 1, 'bootstrap on a log that is not empty');
    this.root.transactionSync(() => {
      this.log.putSync([this.group, entry.index], encodeEntry(entry));
      this.meta.putSync([this.group, 'hard-state'], hardState);
    });
    this.hardStateWritten = hardState;
    this.logFirstIndex = 1;
    this.logLastIndex = 1;
    this.terms = [entry.term];
    this.termsOffset = 1;
  }

  /** The stored log's entries of one type from `lo` on, in order (for the membership at startup). */
  *entriesOfType(type: EntryType, lo: number): Generator<Entry> {
    for (const { key, value } of this.log.getRange({ start: [this.group, lo], end: [this.group, Number.MAX_SAFE_INTEGER] })) {
      if ((value[8]! & ~entryInSegmentFlag) === type) yield this.entryFrom(key[1], value);
    }
  }

  /** The latest persisted broker snapshot with its metadata. */
  loadSnapshotState(): { meta: SnapshotMeta; state: BrokerSnapshot } | null {
    const snap = this.meta.get([this.group, 'snapshot']) as { meta: SnapshotMeta; state: Buffer } | undefined;
    return snap ? { meta: snap.meta, state: decodeCommand<BrokerSnapshot>(snap.state) } : null;
  }

  // ---- LogReader (the Raft core's view of the persisted log) ----

  firstIndex(): number {
    return this.logFirstIndex;
  }

  lastIndex(): number {
    return this.logLastIndex;
  }

  term(index: number): number | undefined {
    if (index === this.snapshotMeta.index) return this.snapshotMeta.term;
    if (index < this.logFirstIndex || index > this.logLastIndex) return undefined;
    const t = this.terms[index - this.termsOffset];
    assert(t !== undefined, `no term for log entry ${index}`);
    return t;
  }

  entries(lo: number, hi: number, bytesMax: number): Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    const take = (e: Entry): boolean => {
      if (out.length > 0 && bytes + e.data.length > bytesMax) return false;
      out.push(e);
      bytes += e.data.length;
      return true;
    };
    // The last entries may still be on their way into LMDB (`unlanded`): read those from memory.
    const unlandedFirst = this.unlanded.length > 0 ? this.unlanded[0]!.index : Number.MAX_SAFE_INTEGER;
    let full = false;
    for (const { key, value } of this.log.getRange({ start: [this.group, lo], end: [this.group, Math.min(hi, unlandedFirst)] })) {
      if ((full = !take(this.entryFrom(key[1], value)))) break;
    }
    const unlandedEnd = Math.min(hi, unlandedFirst + this.unlanded.length);
    for (let i = Math.max(lo, unlandedFirst); !full && i < unlandedEnd; i++) full = !take(this.unlanded[i - unlandedFirst]!);
    assert(out.length > 0 || lo >= hi, `log entries from ${lo} are missing`);
    return out;
  }

  snapshot(): SnapshotMeta {
    return this.snapshotMeta;
  }

  /**
   * Every retained message of the topics in `state` as stored record bytes, in order, for streaming a
   * snapshot to a follower. Throws if one is gone (retention ran past the snapshot meanwhile): the
   * stream is then abandoned and a newer snapshot sent later.
   */
  *snapshotRecords(state: BrokerSnapshot): Generator<[topicId: number, seq: number, record: Buffer]> {
    for (const t of state.topics) {
      for (let seq = t.firstSeq; seq <= t.lastSeq; seq++) {
        const pending = this.pendingPuts.get(t.id)?.get(seq);
        if (pending) {
          yield [t.id, seq, Buffer.concat(encodeRecord(pending))];
          continue;
        }
        const value = this.index.getBinaryFast([t.id, seq]);
        assert(value !== undefined, `topic ${t.name} no longer holds seq ${seq}`);
        const loc = decodeLocation(value);
        // A whole record, or the head kept in the index followed by the data in the log entry.
        if (value.length === locationBytes) yield [t.id, seq, Buffer.from(this.segments.read(loc))];
        else yield [t.id, seq, Buffer.concat([value.subarray(locationBytes), this.segments.read(loc)])];
      }
    }
  }

  /**
   * A follower's storage: segment appends bypass the page cache (SegmentFiles.directWrites), and the
   * messages `get` returns read their data from the segment files only if it is asked for. A
   * follower's state machine reads messages to apply pulls (filters, ordering keys, delays: all in
   * the index), but their data goes only into replies, which no client waits for on a follower; it
   * would be read back from the disk, the page cache not holding what was written past it.
   */
  set followerMode(on: boolean) {
    this.segments.directWrites = on;
    this.dataOnDemand = on;
    this.acknowledgeBeforeCommit = on;
  }

  /**
   * Whether `write` may resolve once its entries are synced into the segment files, its LMDB
   * transaction landing behind it (a follower then acknowledges a step's entries after one fdatasync,
   * not after that and LMDB's commit with its two syncs). Only a follower's step of sync mode that
   * appends to the log (or adds no entry), with every entry then written to a segment file, small ones
   * too (so a restart finds them: recoverEntriesBehind), and that changes nothing else a restart could
   * not do again: no snapshot to install or take, no term or vote (a commit index and the message
   * index are redone by the log's replay); and while the disk has room (commitBehindFreeBytesMin).
   * Up to commitsBehindMax steps may be behind; their transactions land in groups, in order.
   */
  private commitsBehind(write: StepWrite): boolean {
    const entries = write.entries;
    if (!this.acknowledgeBeforeCommit || !this.syncEntriesPerStep || write.install || write.snapshot || write.idle) return false;
    if (entries.length > 0 && entries[0]!.index !== this.logLastIndex + 1) return false;
    const h = write.hardState;
    const was = this.hardStateWritten;
    if (h && (was === null || h.term !== was.term || h.vote !== was.vote)) return false;
    return (filesystemSpace(this.dataDir)?.availBytes ?? 0) >= commitBehindFreeBytesMin;
  }

  /**
   * Waits until at most `behindMax` steps' transactions are still to land behind them; throws (the
   * node must stop) if one failed.
   */
  private async landed(behindMax = 0): Promise<void> {
    while (this.behindGroup && this.behindGroup.steps + this.behindQueue.length > behindMax && !this.landingFailure) await this.behindGroup.landed;
    if (this.landingFailure) throw this.landingFailure;
  }

  /** Whether a small segment sync may hold the calling thread (SegmentFiles.syncsInline). */
  set syncsInline(on: boolean) {
    this.segments.syncsInline = on;
  }

  /** Appends records of a snapshot stream to the segment files (indexed only when it is installed). */
  appendReceived(into: LocatedRecords, records: [number, number, Uint8Array][]): void {
    const locations = this.segments.append(records.map(([, , bytes]) => [Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]));
    for (let i = 0; i < records.length; i++) {
      into.topicIds.push(records[i]![0]);
      into.seqs.push(records[i]![1]);
      into.segments.push(locations[i]!.segment);
      into.offsets.push(locations[i]!.offset);
      into.lengths.push(locations[i]!.length);
    }
  }

  /**
   * relaxed: a step's transaction commits on the calling thread (`transactionSync`). With nothing to
   * fsync, its commit is page writes into the OS's cache, shorter than the three event-loop turns an
   * asynchronous transaction takes on lmdb-js's write thread (start it, run its callback here, hear
   * back that it committed), each waiting behind whatever I/O the loop has queued. Such a step awaits
   * no I/O, so the driver yields to the event loop between them.
   */
  get commitsInline(): boolean {
    return !this.syncEntriesPerStep;
  }

  /** Whether removals (retention, dropped topics) wait for a snapshot step to reach the disk. */
  hasDeferredDeletes(): boolean {
    return this.deferredDeletes.length > 0;
  }

  /** Whether a step has anything to write besides what the caller brings (removed keys to clear aside: hasClearing). */
  hasPendingWrites(): boolean {
    return this.putQueue.length > 0;
  }

  /** Whether removed messages' index keys are still being cleared (idle steps do most of it). */
  hasClearing(): boolean {
    return this.clearing.length > 0;
  }

  /**
   * One durable write transaction. Resolves when it is on disk. If it throws, nothing of it is on disk
   * and storage is as before (see the top of this file); a failure for lack of room throws
   * StorageFullError, and the same `write` may then be given again: it takes what the failed one took.
   */
  async step(write: StepWrite): Promise<void> {
    const install = write.install;
    if (this.landingFailure) throw this.landingFailure;
    const behind = this.commitsBehind(write);
    // Any other step reads and writes the log as LMDB has it: the steps behind must have landed.
    if (!behind) await this.landed();
    // A retry takes no more than the failed step took: a snapshot must not carry removals applied
    // after it was taken (see the top of this file); puts queued since go in the next step.
    const retry = this.failedStep?.write === write ? this.failedStep : undefined;
    this.failedStep = undefined;
    const before = {
      putQueue: this.putQueue,
      pendingPuts: this.pendingPuts,
      deferredDeletes: this.deferredDeletes,
      segments: this.segments.mark(),
    };
    /** What only transactions change, as it was before this step's (a step behind may land meanwhile). */
    let beforeTransaction: { clearing: ClearRange[]; indexLastKey: [number, number] } | undefined;
    let puts: [number, StoredMessage, EntrySource | undefined][] = [];
    let deletes: ClearRange[] = [];
    if (install) {
      // What was applied before is replaced wholesale by the snapshot.
      this.putQueue = [];
      this.pendingPuts = new Map();
      this.deferredDeletes = [];
      this.clearing = [];
    } else {
      [puts, this.putQueue] = takeFirst(this.putQueue, retry?.puts);
      if (write.snapshot) [deletes, this.deferredDeletes] = takeFirst(this.deferredDeletes, retry?.deletes);
    }
    const lastWritten = write.entries.length > 0 ? write.entries[write.entries.length - 1]!.index : undefined;
    // As it is now: a step behind's transaction runs after this step has moved it on.
    const logLastBefore = this.logLastIndex;
    const truncating = lastWritten !== undefined && lastWritten < logLastBefore;
    const changed = new Set<number>();
    /** Live counts as they were before this step, for the segments it changed. */
    const liveBefore = new Map<number, number | undefined>();
    const setLive = (segment: number, n: number) => {
      if (!liveBefore.has(segment)) liveBefore.set(segment, this.liveCounts.get(segment));
      this.liveCounts.set(segment, n);
      changed.add(segment);
    };
    const addLive = (segment: number, delta: number) => setLive(segment, (this.liveCounts.get(segment) ?? 0) + delta);
    const unindex = (key: [number, number]) => {
      const old = this.index.getBinaryFast(key);
      if (!old) return;
      addLive(decodeLocation(old).segment, -1);
      this.index.removeSync(key);
    };

    let appended = false;
    const stepEntryLocations = new Map<number, Location>();
    try {
      // Into the segment files first, in one append (a failed step takes it all back): the large log
      // entries, and the message bodies that are not in one of those already. The log and index
      // entries that point at them go in the transaction.
      // A step behind writes all of its entries there, small ones too: a restart finds them only there.
      const segmentedEntries = behind ? write.entries : write.entries.filter((e) => e.data.length >= entryInSegmentBytesMin);
      const segmentedInStep = new Set(segmentedEntries.map((e) => e.index));
      const records: Buffer[][] = segmentedEntries.map((e) => [asBuffer(e.data)]);
      // Where each message's data lies, for those whose publishing entry is in a segment file (looked
      // up once per entry; entries of this step are placed just below).
      const entryOf = new Map<number, Location | undefined>();
      const inEntry = puts.map(([, , src]) => {
        if (src === undefined || segmentedInStep.has(src.entryIndex)) return src !== undefined;
        if (!entryOf.has(src.entryIndex)) entryOf.set(src.entryIndex, this.entryLocation(src.entryIndex));
        return entryOf.get(src.entryIndex) !== undefined;
      });
      for (let i = 0; i < puts.length; i++) if (!inEntry[i]) records.push(encodeRecord(puts[i]![1]));
      const locations = await this.segments.appendAsync(records, segmentedEntries);
      appended = true;
      const end = this.segments.mark();
      const tail: SegmentTail | undefined = records.length > 0 ? { segment: end.active, offset: end.size } : undefined;
      for (let i = 0; i < segmentedEntries.length; i++) stepEntryLocations.set(segmentedEntries[i]!.index, locations[i]!);
      // Log entries in segment files are synced before the log says where they are (sync mode), so an
      // acknowledged entry is on disk; a snapshot must only refer to message bodies that are on disk.
      if (write.snapshot || install || (segmentedEntries.length > 0 && this.syncEntriesPerStep)) await this.segments.sync();
      // Steps behind land while this one writes its segments; this one's transaction comes after theirs
      // (lmdb-js commits those that queue up meanwhile together).
      if (behind) await this.landed(commitsBehindMax - 1);
      beforeTransaction = { clearing: [...this.clearing], indexLastKey: this.indexLastKey };

      const commitStartedMs = performance.now();
      const transaction = () => {
        if (install) {
          // The leader's snapshot replaces everything this node had.
          this.index.clearSync();
          for (const id of this.liveCounts.keys()) setLive(id, 0);
          for (const key of this.log.getKeys({ start: [this.group, 0], end: [this.group, Number.MAX_SAFE_INTEGER] })) this.log.removeSync(key);
          this.meta.putSync([this.group, 'snapshot'], { meta: install.meta, state: encodeCommand(install.received.state) });
          const r = install.received.records;
          for (let i = 0; i < r.size; i++) {
            const loc = { segment: r.segments[i]!, offset: r.offsets[i]!, length: r.lengths[i]! };
            this.index.putSync([r.topicIds[i]!, r.seqs[i]!], encodeLocation(loc));
            addLive(loc.segment, 1);
          }
          this.indexLastKey = [0, 0];
          for (const key of this.index.getKeys({ reverse: true, limit: 1 })) this.indexLastKey = key;
        }
        for (const e of write.entries) {
          // An entry replaced (by a new leader's) lets go of the segment it was in.
          if (!install && e.index <= logLastBefore) this.releaseEntry(e.index, addLive);
          const at = stepEntryLocations.get(e.index);
          if (at) addLive(at.segment, 1);
          this.log.putSync([this.group, e.index], at ? encodeEntryAt(e, at) : encodeEntry(e));
        }
        if (truncating) {
          // A new leader replaced our tail: entries past the new last one are gone.
          for (const key of this.log.getKeys({ start: [this.group, lastWritten + 1], end: [this.group, Number.MAX_SAFE_INTEGER] })) {
            this.releaseEntry(key[1], addLive);
            this.log.removeSync(key);
          }
        }
        if (write.hardState) this.meta.putSync([this.group, 'hard-state'], write.hardState);
        if (tail) this.meta.putSync([this.group, 'segment-tail'], tail);
        let nextRecord = segmentedEntries.length; // the records' locations follow the entries'
        for (let i = 0; i < puts.length; i++) {
          const [topicId, m, src] = puts[i]!;
          const key: [number, number] = [topicId, m.seq];
          let value: Buffer;
          let segment: number;
          if (inEntry[i]) {
            // Its data is where the log entry that published it is: index that place, with the head.
            const at = stepEntryLocations.get(src!.entryIndex) ?? entryOf.get(src!.entryIndex)!;
            assert(src!.offset + m.data.byteLength <= at.length, `message ${m.seq} lies past the end of log entry ${src!.entryIndex}`);
            value = encodeRecordHead(m, locationBytes);
            writeLocation(value, 0, { segment: at.segment, offset: at.offset + src!.offset, length: m.data.byteLength });
            segment = at.segment;
          } else {
            const loc = locations[nextRecord++]!;
            value = encodeLocation(loc);
            segment = loc.segment;
          }
          const last = this.indexLastKey;
          if (key[0] > last[0] || (key[0] === last[0] && key[1] > last[1])) {
            this.index.putSync(key, value, { append: true });
            this.indexLastKey = key;
          } else {
            unindex(key); // a replayed put replaces the copy written before the restart
            this.index.putSync(key, value);
          }
          addLive(segment, 1);
        }
        if (write.snapshot) {
          const { meta, state, compactTo } = write.snapshot;
          this.meta.putSync([this.group, 'snapshot'], { meta, state: encodeCommand(state) });
          this.clearing.push(...deletes);
          for (const key of this.log.getKeys({ start: [this.group, 0], end: [this.group, compactTo + 1] })) {
            this.releaseEntry(key[1], addLive);
            this.log.removeSync(key);
          }
        }
        this.clearSome(unindex, write.idle ? clearKeysPerStepMax : Math.min(clearKeysPerStepMax, Math.max(clearKeysPerBusyStepMin, 2 * puts.length)));
        for (const id of changed) {
          const n = this.liveCounts.get(id)!;
          assert(n >= 0, `segment ${id} live count went negative`);
          if (n === 0) this.segmentLive.removeSync(id);
          else this.segmentLive.putSync(id, n);
        }
        this.inStepTransaction?.();
      };
      // A throw inside either aborts the transaction: nothing of it is committed.
      if (this.commitsInline) this.root.transactionSync(transaction);
      else if (behind) this.landBehind(transaction, puts, changed, write.entries);
      else await this.root.childTransaction(transaction);
      if (!behind) noteFsync(commitStartedMs); // a group behind notes its own
    } catch (error) {
      if (this.landingFailure) throw this.landingFailure;
      // Read before the segments are cut back, which frees room again.
      const space = filesystemSpace(this.dataDir);
      try {
        // Puts and removals queued during the step stay behind the ones it took, as before.
        this.putQueue = [...(install ? before.putQueue : puts), ...this.putQueue];
        this.deferredDeletes = [...(install ? before.deferredDeletes : deletes), ...this.deferredDeletes];
        if (install) this.pendingPuts = mergePending(before.pendingPuts, this.pendingPuts);
        if (beforeTransaction) {
          this.clearing = beforeTransaction.clearing;
          this.indexLastKey = beforeTransaction.indexLastKey;
        }
        for (const [id, n] of liveBefore) {
          if (n === undefined) this.liveCounts.delete(id);
          else this.liveCounts.set(id, n);
        }
        // Unless a snapshot stream from the leader appended after us meanwhile (appendReceived): then our
        // bytes stay, pointed at by nothing, and the retry appends after them.
        if (this.segments.appendsSince(before.segments) === (appended ? 1 : 0)) this.segments.rollback(before.segments);
      } catch (undoError) {
        throw new Error(`a storage step failed (${errorMessage(error)}) and could not be undone: ${errorMessage(undoError)}`, { cause: error });
      }
      this.failedStep = { write, puts: puts.length, deletes: deletes.length };
      const cause = await commitFailure(error);
      const reason = outOfSpaceReason(cause, space?.availBytes);
      throw reason ? new StorageFullError(reason, cause) : cause;
    }

    // The transaction is on disk: from here on, the in-memory view of the log follows it.
    if (install) {
      this.snapshotMeta = install.meta;
      this.logFirstIndex = install.meta.index + 1;
      this.logLastIndex = install.meta.index;
      this.terms = [];
      this.termsOffset = this.logFirstIndex;
    }
    // Where the log entries in segment files are, as the log now says.
    if (install) this.entryLocations.clear();
    if (truncating) for (const i of [...this.entryLocations.keys()]) if (i > lastWritten!) this.entryLocations.delete(i);
    for (const e of write.entries) this.entryLocations.delete(e.index);
    for (const [i, loc] of stepEntryLocations) this.entryLocations.set(i, loc);
    if (write.snapshot) for (const i of [...this.entryLocations.keys()]) if (i <= write.snapshot.compactTo) this.entryLocations.delete(i);
    if (write.entries.length > 0) {
      const first = write.entries[0]!.index;
      if (this.terms.length === 0) this.termsOffset = first;
      assert(first >= this.termsOffset && first <= this.termsOffset + this.terms.length, `entries from ${first} leave a hole in the log`);
      this.terms.length = first - this.termsOffset;
      for (const e of write.entries) this.terms.push(e.term);
      this.logLastIndex = lastWritten!;
    }
    if (write.snapshot) {
      this.snapshotMeta = write.snapshot.meta;
      this.logFirstIndex = Math.max(this.logFirstIndex, write.snapshot.compactTo + 1);
      this.logLastIndex = Math.max(this.logLastIndex, write.snapshot.meta.index);
      const drop = Math.min(this.terms.length, this.logFirstIndex - this.termsOffset);
      if (drop > 0) {
        this.terms.splice(0, drop);
        this.termsOffset += drop;
      }
      if (this.terms.length === 0) this.termsOffset = this.logFirstIndex;
    }
    if (write.hardState) this.hardStateWritten = write.hardState;
    if (!behind) this.afterLanding(install ? [] : puts, changed);
  }

  /**
   * A step's transaction landing behind it (`commitsBehind`): its entries are read from memory until
   * it has, and what waits for it being durable (`afterLanding`) waits. If it fails, the node must
   * stop: it has acknowledged entries that only the segment files hold, which a restart recovers.
   */
  private landBehind(transaction: () => void, puts: [number, StoredMessage, EntrySource | undefined][], changed: Set<number>, entries: Entry[]): void {
    this.unlanded = this.unlanded.length === 0 ? entries : [...this.unlanded, ...entries];
    this.behindQueue.push({ transaction, afterLanding: () => this.afterLanding(puts, changed), last: entries.length > 0 ? entries[entries.length - 1]!.index : 0 });
    if (!this.behindGroup) this.commitBehindGroup();
  }

  /**
   * Commits every step queued behind in one LMDB transaction (all of them or none), then the next
   * group if more queued up meanwhile. Groups land one after another, in order, and none after one
   * that failed: LMDB's log never gets a hole.
   */
  private commitBehindGroup(): void {
    const steps = this.behindQueue.splice(0);
    const startedMs = performance.now();
    const commit = this.root.childTransaction(() => {
      for (const step of steps) step.transaction();
    });
    const landed = commit.then(
      () => {
        noteFsync(startedMs);
        let last = 0;
        for (const step of steps) last = Math.max(last, step.last);
        let n = 0;
        while (n < this.unlanded.length && this.unlanded[n]!.index <= last) n++;
        this.unlanded = n === this.unlanded.length ? [] : this.unlanded.slice(n);
        for (const step of steps) step.afterLanding();
        this.behindGroup = undefined;
        if (this.behindQueue.length > 0) this.commitBehindGroup();
      },
      async (error: unknown) => {
        const cause = await commitFailure(error);
        this.landingFailure = new Error(`a storage commit behind acknowledged log entries failed: ${errorMessage(cause)}`, { cause });
        this.behindGroup = undefined;
      },
    );
    this.behindGroup = { steps: steps.length, landed };
  }

  /** Once a step's transaction is on disk: segments nothing points into go, and its puts are read from storage. */
  private afterLanding(puts: [number, StoredMessage, EntrySource | undefined][], changed: Set<number>): void {
    // Segments nothing points into any more can go, now that the index says so durably.
    for (const id of changed) {
      if (this.liveCounts.get(id) === 0 && id !== this.segments.active) {
        this.liveCounts.delete(id);
        this.segments.remove(id);
      }
    }
    // Now durable: reads may go to storage. Keep a pending entry only if a later write replaced it.
    for (const [topicId, m] of puts) {
      const topic = this.pendingPuts.get(topicId);
      if (topic?.get(m.seq) === m) {
        topic.delete(m.seq);
        if (topic.size === 0) this.pendingPuts.delete(topicId);
      }
    }
  }

  /** A stored log entry, its data read from a segment file if it is in one. */
  private entryFrom(index: number, value: Buffer): Entry {
    assert(value.length >= 9, `log entry ${index} is truncated`);
    const type = value[8]!;
    const term = value.readDoubleBE(0);
    if (type & entryInSegmentFlag) return { index, term, type: (type & ~entryInSegmentFlag) as EntryType, data: this.segments.read(decodeLocation(value, 9)) };
    return { index, term, type: type as EntryType, data: value.subarray(9) };
  }

  /** Where a stored log entry is in the segment files; undefined if it is not in one (or not stored). */
  private entryLocation(index: number): Location | undefined {
    const known = this.entryLocations.get(index);
    if (known) return known;
    const value = this.log.getBinaryFast([this.group, index]);
    return value && value[8]! & entryInSegmentFlag ? decodeLocation(value, 9) : undefined;
  }

  /** A log entry about to be removed or replaced lets go of the segment it is in. */
  private releaseEntry(index: number, addLive: (segment: number, delta: number) => void): void {
    const value = this.log.getBinaryFast([this.group, index]);
    if (value && value[8]! & entryInSegmentFlag) addLive(value.readUInt32BE(9), -1);
  }

  /** Removes up to `budget` index entries of the ranges being cleared, oldest range first. */
  private clearSome(unindex: (key: [number, number]) => void, budget: number): void {
    while (this.clearing.length > 0 && budget > 0) {
      const range = this.clearing[0]!;
      // Only the keys there are: a range over seqs never stored (or cleared already) costs one seek.
      // One key more than the budget tells whether the range is done.
      const keys = [...this.index.getKeys({ start: [range.topicId, range.from], end: [range.topicId, range.to], limit: budget + 1 })];
      const more = keys.length > budget;
      if (more) keys.length = budget;
      for (const key of keys) unindex(key);
      budget -= keys.length;
      if (more) this.clearing[0] = { ...range, from: keys[keys.length - 1]![1] + 1 };
      else this.clearing.shift();
    }
  }

  /** Resolves once the segment files this store removed are gone from the disk (they go in the background). */
  removalsDone(): Promise<void> {
    return this.segments.removalsDone();
  }

  async close(): Promise<void> {
    await this.landed().catch(() => {}); // a failure is the node's to report, not close's
    await this.segments.removalsDone();
    await this.root.close();
    this.segments.close();
  }
}

/** The first `n` items (all when n is undefined) and the rest; no copy when it takes all. */
function takeFirst<T>(items: T[], n: number | undefined): [T[], T[]] {
  if (n === undefined || n >= items.length) return [items, []];
  return [items.slice(0, n), items.slice(n)];
}

/** Pending puts from before a failed install, under those made since (which are newer). */
function mergePending(older: Map<number, Map<number, StoredMessage>>, newer: Map<number, Map<number, StoredMessage>>): Map<number, Map<number, StoredMessage>> {
  for (const [topicId, messages] of newer) {
    const topic = older.get(topicId);
    if (!topic) older.set(topicId, messages);
    else for (const [seq, m] of messages) topic.set(seq, m);
  }
  return older;
}

/** lmdb-js rejects a failed commit with a generic error; the real one is in its `commitError` promise. */
async function commitFailure(error: unknown): Promise<unknown> {
  const real = (error as { commitError?: Promise<unknown> } | null)?.commitError;
  if (!real || typeof real.then !== 'function') return error;
  return real.then(
    () => error,
    (e: unknown) => e,
  );
}

/**
 * Whether an error means there was no room: Node's ENOSPC and EDQUOT (string codes), lmdb-js's errno
 * numbers and MDB_MAP_FULL, and LMDB's EIO for a short write when the disk is (nearly) full.
 */
export function outOfSpaceReason(error: unknown, availBytes: number | undefined): StorageFullReason | undefined {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : '';
  const errno = constants.errno;
  if (code === 'ENOSPC' || code === errno.ENOSPC || /no space left on device/i.test(text)) return 'no_space';
  if (code === 'EDQUOT' || code === errno.EDQUOT || /quota exceeded/i.test(text)) return 'quota';
  if (code === -30792 || /MDB_MAP_FULL/.test(text)) return 'map_full';
  if ((code === 'EIO' || code === errno.EIO) && availBytes !== undefined && availBytes < shortWriteFreeBytesMax) return 'no_space';
  return undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// Log entry layout: [term: float64][type: u8][data], or, for an entry in a segment file,
// [term: float64][type | 0x80: u8][segment: u32][offset: u32][length: u32].
function encodeEntryAt(e: EntryFrame, at: Location): Buffer {
  const out = Buffer.allocUnsafe(9 + locationBytes);
  out.writeDoubleBE(e.term, 0);
  out[8] = (e.type ?? EntryType.normal) | entryInSegmentFlag;
  writeLocation(out, 9, at);
  return out;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function encodeEntry(e: Entry): Buffer {
  const out = Buffer.allocUnsafe(9 + e.data.length);
  out.writeDoubleBE(e.term, 0);
  out[8] = e.type ?? EntryType.normal;
  out.set(e.data, 9);
  return out;
}
