/** Raft's vocabulary, shared by the core, storage and the transport. Words from the paper. */

/** Every log key, message and metric carries a group id, so one node can later host several groups. */
export type GroupId = number;
export type NodeId = number;

export const EntryType = { normal: 0, conf: 1 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  index: number;
  term: number;
  /** 0: a command for the state machine (empty data: a new leader's no-op); 1: a membership change. */
  type?: EntryType;
  /** The encoded command. Persisted as is. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

/** Who votes and who only listens. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMeta {
  index: number;
  term: number;
  conf: ConfState;
  /** How to reach each member (the driver's; the core ignores it). */
  addresses?: Record<string, string>;
}

/** A linearizable read may be served once the state machine has applied `index`. */
export interface ReadState {
  index: number;
  context: number;
}

/**
 * What the core hands its driver in one step, etcd style. The driver must, in this order:
 * 1. persist `snapshot` (if any), `entries` and `hardState` to stable storage; entries replace any
 *    stored entries at the same or higher indexes;
 * 2. only THEN send `messages` (a vote or an append is acknowledged only once it is durable);
 * 3. apply `committed` in order (they are already durable);
 * 4. call `advance(ready)`.
 */
export interface Ready {
  entries: Entry[];
  hardState: HardState | null;
  committed: Entry[];
  messages?: import('./messages.js').Message[];
  snapshot?: { meta: SnapshotMeta; data: unknown } | undefined;
  readStates?: ReadState[];
  /** Set when the leader or this node's role changed. */
  softState?: { leader: NodeId; role: Role } | undefined;
}

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';
