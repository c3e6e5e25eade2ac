/**
 * The single-voter case of the Raft core: with one member, an entry commits as soon as its own log
 * holds it durably. It has the core's shape (propose, ready, advance) so that the driver, storage and
 * API above it do not change when the full Raft group (elections, replication) takes its place.
 */
import { assert } from '../assert.js';
import type { Entry, HardState, Ready } from './types.js';

export class SoloRaft {
  private readonly term: number;
  /** Proposed, not yet handed out to be persisted. */
  private unstable: Entry[] = [];
  /** Handed out in a Ready whose advance has not come yet. */
  private persisting: Entry[] = [];
  /** Persisted and therefore committed, waiting to be handed out for applying. */
  private toApply: Entry[] = [];
  private lastIndex: number;
  private commitIndex: number;
  private hardStateDirty: boolean;

  constructor(state: { lastIndex: number; hardState: HardState | null }) {
    this.lastIndex = state.lastIndex;
    // Every entry a solo node persisted was committed when it was persisted.
    this.commitIndex = state.lastIndex;
    this.term = (state.hardState?.term ?? 0) + 1;
    this.hardStateDirty = true;
  }

  get commit(): number {
    return this.commitIndex;
  }

  get currentTerm(): number {
    return this.term;
  }

  /** Appends a command to the log; returns its index. */
  propose(data: Uint8Array): number {
    const entry: Entry = { index: ++this.lastIndex, term: this.term, data };
    this.unstable.push(entry);
    return entry.index;
  }

  hasReady(): boolean {
    return this.unstable.length > 0 || this.toApply.length > 0 || this.hardStateDirty;
  }

  ready(): Ready {
    assert(this.persisting.length === 0, 'ready() called before the previous ready was advanced');
    const ready: Ready = {
      entries: this.unstable,
      hardState: this.hardStateDirty || this.unstable.length > 0 ? this.hardState() : null,
      committed: this.toApply,
    };
    this.persisting = this.unstable;
    this.unstable = [];
    this.toApply = [];
    this.hardStateDirty = false;
    return ready;
  }

  /** The driver persisted and applied what `ready` asked: what was persisted is now committed. */
  advance(ready: Ready): void {
    assert(ready.entries === this.persisting, 'advance() with a ready that is not the outstanding one');
    if (this.persisting.length > 0) {
      this.commitIndex = this.persisting[this.persisting.length - 1]!.index;
      this.toApply = this.persisting;
      this.hardStateDirty = true;
    }
    this.persisting = [];
  }

  private hardState(): HardState {
    return { term: this.term, vote: 1, commit: this.commitIndex };
  }
}
