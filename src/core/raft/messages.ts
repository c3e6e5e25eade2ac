/** Messages between Raft nodes, a discriminated union. Each carries the group, sender, receiver and term. */
import type { Entry, NodeId, SnapshotMeta } from './types.js';

interface Envelope {
  group: number;
  from: NodeId;
  to: NodeId;
  term: number;
}

export type Message =
  /** A (pre-)vote request. A pre-vote carries the term the sender would campaign in, and changes no term. */
  | (Envelope & { type: 'vote'; pre: boolean; lastIndex: number; lastTerm: number; transfer: boolean })
  | (Envelope & { type: 'vote-response'; pre: boolean; granted: boolean })
  | (Envelope & { type: 'append'; prevIndex: number; prevTerm: number; entries: Entry[]; commit: number })
  /** `index`: on success the last index now known to match; on reject the prevIndex refused, with a hint
   * of the follower's last index so the leader can jump back. */
  | (Envelope & { type: 'append-response'; index: number; reject: boolean; hintIndex: number })
  | (Envelope & { type: 'heartbeat'; commit: number; context: number })
  | (Envelope & { type: 'heartbeat-response'; context: number })
  /** `data` is opaque to the core: the driver fills it when sending and installs it when receiving. */
  | (Envelope & { type: 'snapshot'; snapshot: SnapshotMeta; data: unknown })
  /** Leader transfer: campaign now, ignoring leases. */
  | (Envelope & { type: 'timeout-now' });

export type MessageType = Message['type'];
