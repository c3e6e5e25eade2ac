/**
 * The simulator's stand-in for the LMDB raft log: what a node has made durable, and nothing else.
 * A crash keeps this object and drops the node's RaftCore, so only what the driver persisted (a
 * Ready's snapshot, entries and hard state) survives. It implements the core's `LogReader` port and
 * asserts the port's contract on every call (TigerBeetle's pair assertions: check what goes in as
 * well as what comes out), so a core that asks for something it must not gets caught here.
 */
import { check as assert } from './check.js';
import type { LogReader } from '../../src/core/raft/log.js';
import type { ConfState, Entry, HardState, SnapshotMeta } from '../../src/core/raft/types.js';

export class MemoryLogStorage implements LogReader {
  private meta: SnapshotMeta = { index: 0, term: 0, conf: { voters: [], learners: [] } };
  private data: unknown = undefined;
  /** ents[0] has index meta.index + 1. */
  private ents: Entry[] = [];
  private hs: HardState | null = null;

  /** A node that joins the group starts empty; a founding node starts from a bootstrap snapshot. */
  static bootstrap(conf: ConfState, data: unknown): MemoryLogStorage {
    const s = new MemoryLogStorage();
    s.meta = { index: 1, term: 1, conf: cloneConf(conf) };
    s.data = data;
    s.hs = { term: 1, vote: 0, commit: 1 };
    return s;
  }

  // ---- LogReader ----

  firstIndex(): number {
    return this.meta.index + 1;
  }

  lastIndex(): number {
    return this.meta.index + this.ents.length;
  }

  term(index: number): number | undefined {
    if (index === this.meta.index) return this.meta.term;
    if (index < this.meta.index || index > this.lastIndex()) return undefined;
    return this.ents[index - this.meta.index - 1]!.term;
  }

  entries(lo: number, hi: number, bytesMax: number): Entry[] {
    assert(lo >= this.firstIndex(), `storage.entries(${lo}, ${hi}) below the first index ${this.firstIndex()}`);
    assert(hi <= this.lastIndex() + 1, `storage.entries(${lo}, ${hi}) beyond the last index ${this.lastIndex()}`);
    assert(lo < hi, `storage.entries(${lo}, ${hi}) asks for nothing`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - this.meta.index - 1]!;
      if (out.length > 0 && bytes + e.data.length > bytesMax) break;
      out.push(cloneEntry(e));
      bytes += e.data.length;
    }
    return out;
  }

  snapshot(): SnapshotMeta {
    return { index: this.meta.index, term: this.meta.term, conf: cloneConf(this.meta.conf) };
  }

  // ---- the driver's writes ----

  snapshotData(): unknown {
    return this.data;
  }

  hardState(): HardState | null {
    return this.hs ? { ...this.hs } : null;
  }

  /** Entries replace any stored at the same or higher index. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    assert(first >= this.firstIndex(), `persisting entry ${first} below the first index ${this.firstIndex()} (compacted)`);
    assert(first <= this.lastIndex() + 1, `persisting entry ${first} leaves a gap after ${this.lastIndex()}`);
    for (let i = 1; i < entries.length; i++) {
      assert(entries[i]!.index === first + i, `persisting non-contiguous entries at ${first + i}`);
    }
    // Committed entries are never replaced by different ones.
    const commit = this.hs?.commit ?? 0;
    for (const e of entries) {
      if (e.index > commit) break;
      const had = this.term(e.index);
      assert(had === undefined || had === e.term, `persisting entry ${e.index} term ${e.term} over committed term ${had}`);
    }
    this.ents.length = first - this.meta.index - 1;
    for (const e of entries) this.ents.push(cloneEntry(e));
  }

  setHardState(hs: HardState): void {
    if (this.hs) {
      assert(hs.term >= this.hs.term, `hard state term went back ${this.hs.term} -> ${hs.term}`);
      assert(
        hs.term > this.hs.term || this.hs.vote === 0 || hs.vote === this.hs.vote,
        `vote changed within term ${hs.term}: ${this.hs.vote} -> ${hs.vote}`,
      );
      assert(hs.commit >= this.hs.commit, `persisted commit went back ${this.hs.commit} -> ${hs.commit}`);
    }
    assert(hs.commit <= this.lastIndex(), `persisted commit ${hs.commit} beyond the persisted log ${this.lastIndex()}`);
    this.hs = { ...hs };
  }

  /** A snapshot from the leader replaces the whole log. */
  installSnapshot(meta: SnapshotMeta, data: unknown): void {
    assert(meta.index > this.meta.index, `installing snapshot ${meta.index} not newer than ours ${this.meta.index}`);
    this.meta = { index: meta.index, term: meta.term, conf: cloneConf(meta.conf) };
    this.data = data;
    this.ents = [];
  }

  /** Log compaction: the applied state at `index` replaces the entries up to it. */
  compact(index: number, conf: ConfState, data: unknown): void {
    assert(index > this.meta.index, `compacting to ${index}, not past the snapshot ${this.meta.index}`);
    assert(index <= this.lastIndex(), `compacting to ${index} beyond the last index ${this.lastIndex()}`);
    const term = this.term(index)!;
    this.ents = this.ents.slice(index - this.meta.index);
    this.meta = { index, term, conf: cloneConf(conf) };
    this.data = data;
  }

  /** The persisted log after the snapshot, for the checkers. */
  storedEntries(): readonly Entry[] {
    return this.ents;
  }
}

export function cloneConf(c: ConfState): ConfState {
  return { voters: [...c.voters], learners: [...c.learners] };
}

function cloneEntry(e: Entry): Entry {
  return e.type === undefined ? { index: e.index, term: e.term, data: e.data } : { index: e.index, term: e.term, type: e.type, data: e.data };
}
