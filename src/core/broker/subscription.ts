/**
 * One subscription's cursor over its topic, NATS style: `cursor` is the next topic seq it has not
 * examined; every matching seq below it is either done (acked, dead-lettered) or a pending record.
 * Pending records are what the subscription still owes: in flight (leased until a deadline),
 * waiting (delayed, nacked, backing off) or blocked behind an earlier message of its ordering key.
 * The heap orders the unblocked records by the time they become available again; a lease deadline
 * and a retry time are the same thing to it.
 */
import { assert } from '../assert.js';
import { TimedSeqHeap, type TimedSeq } from '../heap.js';
import { compileFilter, type CompiledFilter } from './filter.js';
import type { SubscriptionConfig } from './types.js';

/** Stale heap entries tolerated beyond twice the live records before the heap is rebuilt. */
const heapSlack = 1024;

export interface PendingRecord {
  seq: number;
  /** Deliveries so far, by every mode. */
  attempt: number;
  /** Lease deadline while leased; otherwise when it may be delivered again. */
  availableAtMs: number;
  /** Log index of the delivery that leased it; 0 when not leased. Part of the ackId. */
  leaseToken: number;
  orderingKey?: string;
  /** Waiting behind an earlier pending message of the same ordering key. */
  blocked: boolean;
  lastError?: string;
  /** When it was first delivered (push retries are bounded by `maxRetrySeconds` from here). */
  firstDeliveredMs?: number;
}

/**
 * A push subscription's signing secrets (Standard Webhooks `whsec_...`). After a rotation the
 * previous secret keeps signing until `previousUntilMs`, so receivers can switch at their own pace.
 */
export interface PushSecrets {
  current: string;
  previous?: string;
  previousUntilMs?: number;
}

export interface SubscriptionSnapshot {
  id: number;
  name: string;
  config: SubscriptionConfig;
  topicId: number;
  cursor: number;
  ahead: number;
  pending: PendingRecord[];
  keyQueues: [string, number[]][];
  deadLetteredSeqs: number[];
  delivered: number;
  acked: number;
  deadLettered: number;
  notBeforeMs: number;
  secrets?: PushSecrets;
  pushPaused?: boolean;
}

export class SubscriptionState {
  readonly pending = new Map<number, PendingRecord>();
  readonly heap = new TimedSeqHeap();
  /** Ordered subscriptions: per ordering key, its pending seqs in order; the head may be delivered. */
  readonly keyQueues = new Map<string, number[]>();
  /** Seqs this subscription dead-lettered and has not redriven (oldest first, bounded). */
  deadLetteredSeqs: number[] = [];
  /** Matching topic messages at or after the cursor. */
  ahead = 0;
  delivered = 0;
  acked = 0;
  deadLettered = 0;
  filter: CompiledFilter;
  /** Messages published before this time are not for this subscription (a start or seek time that
   * was in the future when it was set). */
  notBeforeMs = 0;
  /** Set when push is first configured; kept if push is removed, so adding it back keeps the secret. */
  secrets: PushSecrets | undefined;
  /** Push stopped by a 410 from the endpoint until `resume` (the backlog stays). */
  pushPaused = false;

  constructor(
    readonly id: number,
    readonly name: string,
    public config: SubscriptionConfig,
    readonly topicId: number,
    public cursor: number,
  ) {
    this.filter = compileFilter(config.filter);
  }

  /** Whether a message is for this subscription: after its start time and through its filter. */
  wants(m: { publishTimeMs: number; tags?: string[]; routingKey?: string }): boolean {
    return m.publishTimeMs >= this.notBeforeMs && this.filter(m);
  }

  setConfig(config: SubscriptionConfig): void {
    this.config = config;
    this.filter = compileFilter(config.filter);
  }

  /** Adds a record for a seq the cursor just passed (or a redriven one). */
  /** `schedule: false` when the caller leases it at once (the lease schedules it; one heap entry, not two). */
  addRecord(record: PendingRecord, schedule = true): void {
    assert(!this.pending.has(record.seq), `seq ${record.seq} is already pending in ${this.name}`);
    this.pending.set(record.seq, record);
    if (this.config.ordered && record.orderingKey !== undefined) {
      const queue = this.keyQueues.get(record.orderingKey);
      if (!queue) {
        this.keyQueues.set(record.orderingKey, [record.seq]);
      } else {
        // Sorted insert; never ahead of a head that is out with a consumer.
        let i = queue.length;
        while (i > 0 && queue[i - 1]! > record.seq) i--;
        if (i === 0) {
          const head = this.pending.get(queue[0]!)!;
          if (head.leaseToken !== 0) i = 1;
          else head.blocked = true;
        }
        queue.splice(i, 0, record.seq);
        record.blocked = i !== 0;
      }
    }
    if (!record.blocked && schedule) this.heap.push(record.availableAtMs, record.seq);
  }

  /** Moves a record's availability and queues it in the heap. */
  reschedule(record: PendingRecord, availableAtMs: number): void {
    record.availableAtMs = availableAtMs;
    if (!record.blocked) this.heap.push(availableAtMs, record.seq);
  }

  /** Forgets a record (acked, dead-lettered, dropped by retention or seek); unblocks its key's next. */
  removeRecord(record: PendingRecord): void {
    this.pending.delete(record.seq);
    this.compactHeapIfStale();
    if (this.config.ordered && record.orderingKey !== undefined) {
      const queue = this.keyQueues.get(record.orderingKey);
      assert(queue !== undefined, `ordering key queue missing for seq ${record.seq}`);
      const i = queue.indexOf(record.seq);
      assert(i >= 0, `seq ${record.seq} missing from its ordering key queue`);
      queue.splice(i, 1);
      if (queue.length === 0) {
        this.keyQueues.delete(record.orderingKey);
      } else if (i === 0) {
        const next = this.pending.get(queue[0]!)!;
        next.blocked = false;
        this.heap.push(next.availableAtMs, next.seq);
      }
    }
  }

  /**
   * Heap entries are dropped lazily, when they come up: an acked record's entry stays until its lease
   * would have run out. A consumer acking 100,000 messages a second under a 30 s deadline left millions
   * of them, and garbage collection over them made every delivery dearer as a drain went on. Once stale
   * entries outnumber live ones, the heap is rebuilt from the records (one entry each): O(records),
   * at most once per as many removals, so O(1) a removal. Pop order is (time, seq) either way.
   */
  private compactHeapIfStale(): void {
    if (this.heap.size <= 2 * this.pending.size + heapSlack) return;
    const entries: TimedSeq[] = [];
    for (const r of this.pending.values()) if (!r.blocked) entries.push({ timeMs: r.availableAtMs, seq: r.seq });
    this.heap.rebuild(entries);
  }

  /** The next record due at or before `nowMs`, dropping stale heap entries on the way. */
  popDue(nowMs: number): PendingRecord | undefined {
    for (;;) {
      const top = this.heap.peek();
      if (!top || top.timeMs > nowMs) return undefined;
      this.heap.pop();
      const record = this.pending.get(top.seq);
      if (record && !record.blocked && record.availableAtMs === top.timeMs) return record;
    }
  }

  /** When the earliest record becomes available; undefined when none waits. */
  nextAvailableAtMs(): number | undefined {
    for (;;) {
      const top = this.heap.peek();
      if (!top) return undefined;
      const record = this.pending.get(top.seq);
      if (record && !record.blocked && record.availableAtMs === top.timeMs) return top.timeMs;
      this.heap.pop();
    }
  }

  clearPending(): void {
    this.pending.clear();
    this.heap.clear();
    this.keyQueues.clear();
  }

  inFlight(nowMs: number): number {
    let n = 0;
    for (const r of this.pending.values()) if (r.leaseToken !== 0 && r.availableAtMs > nowMs) n++;
    return n;
  }

  snapshot(): SubscriptionSnapshot {
    return {
      id: this.id,
      name: this.name,
      config: this.config,
      topicId: this.topicId,
      cursor: this.cursor,
      ahead: this.ahead,
      pending: [...this.pending.values()].map((r) => ({ ...r })),
      keyQueues: [...this.keyQueues.entries()].map(([k, q]) => [k, [...q]]),
      deadLetteredSeqs: [...this.deadLetteredSeqs],
      delivered: this.delivered,
      acked: this.acked,
      deadLettered: this.deadLettered,
      notBeforeMs: this.notBeforeMs,
      ...(this.secrets ? { secrets: { ...this.secrets } } : {}),
      ...(this.pushPaused ? { pushPaused: true } : {}),
    };
  }

  static restore(s: SubscriptionSnapshot): SubscriptionState {
    const sub = new SubscriptionState(s.id, s.name, s.config, s.topicId, s.cursor);
    sub.ahead = s.ahead;
    sub.delivered = s.delivered;
    sub.acked = s.acked;
    sub.deadLettered = s.deadLettered;
    sub.notBeforeMs = s.notBeforeMs;
    if (s.secrets) sub.secrets = { ...s.secrets };
    sub.pushPaused = s.pushPaused ?? false;
    sub.deadLetteredSeqs = [...s.deadLetteredSeqs];
    for (const [k, q] of s.keyQueues) sub.keyQueues.set(k, [...q]);
    for (const r of s.pending) {
      const record = { ...r };
      sub.pending.set(record.seq, record);
      if (!record.blocked) sub.heap.push(record.availableAtMs, record.seq);
    }
    return sub;
  }
}
