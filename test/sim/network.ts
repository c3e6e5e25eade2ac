/**
 * A fake network between simulated nodes (TigerBeetle's packet simulator, in small): every message
 * gets a delivery time drawn from the seeded PRNG, may be dropped or duplicated, and is delivered in
 * a random order among those due, so reordering comes for free. Links can be cut one way or both
 * ways. Checked at delivery time: a message in flight when a partition starts is lost with it.
 */
import type { Message } from '../../src/core/raft/messages.js';
import type { NodeId } from '../../src/core/raft/types.js';
import type { Prng } from './prng.js';

/** A fault budget; every field is a probability per message, or a delay in ticks. */
export interface NetworkOptions {
  dropProbability: number;
  duplicateProbability: number;
  /** Most messages arrive within the tick they are sent in (delay 0): a round trip is shorter than a heartbeat. */
  delayProbability: number;
  delayTicksMax: number;
  /** Rarely a message is held much longer (a slow path), to exercise stale and reordered messages. */
  longDelayProbability: number;
  longDelayTicksMax: number;
}

export const quietNetwork: NetworkOptions = {
  dropProbability: 0,
  duplicateProbability: 0,
  delayProbability: 0,
  delayTicksMax: 0,
  longDelayProbability: 0,
  longDelayTicksMax: 0,
};

export interface InFlight {
  msg: Message;
  deliverAt: number;
}

export type DropReason = 'drop' | 'cut' | 'down';

export class FakeNetwork {
  opts: NetworkOptions;
  private queue: InFlight[] = [];
  /** One-way cuts, "from>to". */
  private cuts = new Set<string>();
  /** A scripted nemesis: messages it matches are lost (scenario tests aim at one message kind). */
  dropFilter: ((m: Message) => boolean) | undefined;
  sent = 0;
  delivered = 0;
  dropped = 0;

  constructor(
    private readonly rng: Prng,
    opts: NetworkOptions,
  ) {
    this.opts = { ...opts };
  }

  send(msg: Message, now: number): void {
    this.sent++;
    const copies = this.rng.chance(this.opts.duplicateProbability) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let delay = 0;
      if (this.rng.chance(this.opts.longDelayProbability)) delay = this.rng.int(1, Math.max(1, this.opts.longDelayTicksMax));
      else if (this.rng.chance(this.opts.delayProbability)) delay = this.rng.int(1, Math.max(1, this.opts.delayTicksMax));
      this.queue.push({ msg: i === 0 ? msg : cloneMessage(msg), deliverAt: now + delay });
    }
  }

  /** Takes one message due at `now`, chosen at random among those due; undefined when none is due. */
  take(now: number): InFlight | undefined {
    let due = 0;
    for (const f of this.queue) if (f.deliverAt <= now) due++;
    if (due === 0) return undefined;
    let k = this.rng.int(0, due - 1);
    for (let i = 0; i < this.queue.length; i++) {
      if (this.queue[i]!.deliverAt > now) continue;
      if (k-- === 0) return this.queue.splice(i, 1)[0];
    }
    return undefined;
  }

  /** Whether a message taken now should be lost: a random drop or a cut link. */
  fate(msg: Message): 'deliver' | DropReason {
    if (this.cuts.has(`${msg.from}>${msg.to}`) || this.dropFilter?.(msg)) return 'cut';
    if (this.rng.chance(this.opts.dropProbability)) return 'drop';
    return 'deliver';
  }

  pending(): number {
    return this.queue.length;
  }

  /** Drops every in-flight message to or from `id` that matches. */
  purge(pred: (m: Message) => boolean): void {
    this.queue = this.queue.filter((f) => !pred(f.msg));
  }

  cut(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}>${to}`);
  }

  /** Splits the nodes into two sides that cannot talk to each other. */
  partition(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a) {
      for (const y of b) {
        this.cut(x, y);
        this.cut(y, x);
      }
    }
  }

  isolate(id: NodeId, all: readonly NodeId[]): void {
    this.partition([id], all.filter((x) => x !== id));
  }

  heal(): void {
    this.cuts.clear();
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cuts.has(`${from}>${to}`);
  }

  describeCuts(): string {
    return [...this.cuts].sort().join(' ');
  }
}

/** Messages cross the network as copies: no node may hold a reference into another node's memory. */
export function cloneMessage(m: Message): Message {
  if (m.type === 'append') return { ...m, entries: m.entries.map((e) => ({ ...e })) };
  if (m.type === 'snapshot') return { ...m, snapshot: { ...m.snapshot, conf: { voters: [...m.snapshot.conf.voters], learners: [...m.snapshot.conf.learners] } } };
  return { ...m };
}
