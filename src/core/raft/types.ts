/** Raft's vocabulary, shared by the core, storage and (later) the transport. Words from the paper. */

/** Every log key, message and metric carries a group id, so one node can later host several groups. */
export type GroupId = number;

export interface Entry {
  index: number;
  term: number;
  /** The encoded command. Persisted as is. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: number;
  commit: number;
}

/**
 * What the core hands its driver in one step, etcd style. The driver must:
 * 1. persist `entries` and `hardState` to stable storage BEFORE calling `advance`;
 * 2. apply `committed` in order, after they are persisted;
 * 3. call `advance(ready)` once both are done.
 */
export interface Ready {
  entries: Entry[];
  hardState: HardState | null;
  committed: Entry[];
}
