/**
 * The Raft log as the core sees it: a stable part read through `LogReader` (what the driver has
 * persisted) and an unstable tail (appended here, not yet persisted), plus the commit and applied
 * marks. etcd's raftLog and unstable, folded into one small class.
 */
import { assert } from '../assert.js';
import type { Entry, SnapshotMeta } from './types.js';

/** The driver's persisted log, read synchronously. */
export interface LogReader {
  /** The first index stored (the snapshot's index + 1). */
  firstIndex(): number;
  /** The last index stored (the snapshot's index when the log is empty). */
  lastIndex(): number;
  /** The term at `index`, for firstIndex − 1 (the snapshot's) up to lastIndex; otherwise undefined. */
  term(index: number): number | undefined;
  /** Entries in [lo, hi), at most `bytesMax` of data but at least one. */
  entries(lo: number, hi: number, bytesMax: number): Entry[];
  /** The latest snapshot (index 0 when none). */
  snapshot(): SnapshotMeta;
}

export class RaftLog {
  private unstable: Entry[] = [];
  /** The index of unstable[0]. */
  private offset: number;
  /** Persisted entries not yet applied, kept in memory: applying them (and replicating them while
   * fresh) needs no read back from storage. Covers [tailOffset, offset). */
  private stableTail: Entry[] = [];
  private tailOffset: number;
  /** A snapshot received from the leader, not yet persisted. */
  pendingSnapshot: { meta: SnapshotMeta; data: unknown } | undefined;
  committed: number;
  /** The last index handed out to be applied. */
  applied: number;

  constructor(
    private readonly storage: LogReader,
    committed: number,
    applied: number,
  ) {
    this.offset = storage.lastIndex() + 1;
    this.tailOffset = this.offset;
    this.committed = committed;
    this.applied = Math.max(applied, storage.firstIndex() - 1);
    assert(this.committed <= storage.lastIndex(), `commit ${committed} beyond the stored log ${storage.lastIndex()}`);
  }

  firstIndex(): number {
    return this.pendingSnapshot ? this.pendingSnapshot.meta.index + 1 : this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.offset + this.unstable.length - 1;
    if (this.pendingSnapshot) return this.pendingSnapshot.meta.index;
    return this.storage.lastIndex();
  }

  /** The last index that is persisted. */
  stableLastIndex(): number {
    return this.offset - 1;
  }

  term(index: number): number | undefined {
    if (index === 0) return 0;
    if (this.pendingSnapshot && index === this.pendingSnapshot.meta.index) return this.pendingSnapshot.meta.term;
    if (index >= this.offset) return this.unstable[index - this.offset]?.term;
    if (index >= this.tailOffset) return this.stableTail[index - this.tailOffset]!.term;
    if (this.pendingSnapshot && index < this.pendingSnapshot.meta.index) return undefined;
    return this.storage.term(index);
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, 'the last entry has no term');
    return t;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft §5.4.1: is a candidate's log at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ours = this.lastTerm();
    return lastTerm > ours || (lastTerm === ours && lastIndex >= this.lastIndex());
  }

  /** Appends entries that follow on (possibly replacing a conflicting tail). Returns the new last index. */
  append(entries: Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    const after = entries[0]!.index;
    assert(after > this.committed, `appending at ${after} would overwrite committed ${this.committed}`);
    if (after === this.offset + this.unstable.length) {
      for (const e of entries) this.unstable.push(e);
    } else if (after <= this.offset) {
      // Replaces stored entries from `after` on: the driver overwrites them when it persists these.
      this.offset = after;
      this.unstable = [...entries];
      if (after < this.tailOffset + this.stableTail.length) {
        this.stableTail.length = Math.max(0, after - this.tailOffset);
        if (this.stableTail.length === 0) this.tailOffset = after;
      }
    } else {
      this.unstable = this.unstable.slice(0, after - this.offset).concat(entries);
    }
    return this.lastIndex();
  }

  /** The follower's side of AppendEntries. Undefined when prevIndex/prevTerm do not match. */
  maybeAppend(prevIndex: number, prevTerm: number, commit: number, entries: Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      assert(conflict > this.committed, `entry ${conflict} conflicts with a committed entry`);
      this.append(entries.slice(conflict - (prevIndex + 1)));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** The first entry whose term differs from ours (or that we lack); 0 when all match. */
  private findConflict(entries: Entry[]): number {
    for (const e of entries) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0;
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), `commit ${index} beyond the last index ${this.lastIndex()}`);
    this.committed = index;
  }

  /** Entries in [lo, hi), up to `bytesMax` (at least one), from storage and the unstable tail. */
  slice(lo: number, hi: number, bytesMax: number): Entry[] {
    if (lo >= hi) return [];
    assert(lo >= this.firstIndex(), `slice from ${lo} below the first index ${this.firstIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    if (lo < this.tailOffset) {
      const stored = this.storage.entries(lo, Math.min(hi, this.tailOffset), bytesMax);
      for (const e of stored) {
        out.push(e);
        bytes += e.data.length;
      }
      if (out.length < Math.min(hi, this.tailOffset) - lo || bytes >= bytesMax) return out;
    }
    for (let i = Math.max(lo, this.tailOffset); i < hi; i++) {
      const e = i < this.offset ? this.stableTail[i - this.tailOffset] : this.unstable[i - this.offset];
      if (!e) break;
      if (out.length > 0 && bytes + e.data.length > bytesMax) break;
      out.push(e);
      bytes += e.data.length;
    }
    return out;
  }

  /**
   * Committed entries not yet handed out for applying: persisted ones only, unless `allowUnstable`
   * (a leader whose followers made an entry durable on a majority before its own write finished).
   */
  nextCommitted(bytesMax: number, allowUnstable = false): Entry[] {
    const hi = allowUnstable ? this.committed : Math.min(this.committed, this.stableLastIndex());
    if (hi <= this.applied) return [];
    return this.slice(this.applied + 1, hi + 1, bytesMax);
  }

  hasNextCommitted(allowUnstable = false): boolean {
    return (allowUnstable ? this.committed : Math.min(this.committed, this.stableLastIndex())) > this.applied;
  }

  appliedTo(index: number): void {
    assert(index <= this.committed, `applied ${index} beyond commit ${this.committed}`);
    if (index > this.applied) this.applied = index;
    this.trimTail();
  }

  /** Drops applied entries from the in-memory tail (storage still has them). */
  private trimTail(): void {
    const drop = Math.min(this.stableTail.length, this.applied + 1 - this.tailOffset);
    if (drop > 0) {
      this.stableTail.splice(0, drop);
      this.tailOffset += drop;
    }
  }

  unstableEntries(): Entry[] {
    return this.unstable;
  }

  /** The driver persisted everything up to `index` (of `term`). */
  stableTo(index: number, term: number): void {
    if (index < this.offset || this.term(index) !== term) return;
    const persisted = this.unstable.slice(0, index + 1 - this.offset);
    if (this.stableTail.length === 0) this.tailOffset = this.offset;
    for (const e of persisted) this.stableTail.push(e);
    this.unstable = this.unstable.slice(index + 1 - this.offset);
    this.offset = index + 1;
    this.trimTail();
  }

  /** The driver persisted the pending snapshot. */
  stableSnapshotTo(index: number): void {
    if (this.pendingSnapshot?.meta.index === index) this.pendingSnapshot = undefined;
  }

  /** Replaces the whole log with a snapshot from the leader. */
  restore(snapshot: { meta: SnapshotMeta; data: unknown }): void {
    this.pendingSnapshot = snapshot;
    this.committed = snapshot.meta.index;
    this.applied = snapshot.meta.index;
    this.unstable = [];
    this.offset = snapshot.meta.index + 1;
    this.stableTail = [];
    this.tailOffset = this.offset;
  }
}
