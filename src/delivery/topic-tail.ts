/**
 * Topic tails: a socket that streams a topic's log from a point, with no subscription, credits or
 * acks. It reads this node's applied state (every node applies the same log, so any node serves a
 * tail, no forwarding), as fast as the socket drains, and waits for `published` effects once caught
 * up. When retention has removed what the tail was about to read (at the start, or later behind a
 * slow reader), it says so with a `gap` frame before going on, so a client always knows what it missed.
 */
import type { WebSocket } from 'ws';
import type { HeraldNode } from '../runtime/herald-node.js';
import { estimateBytes, writeTailMessageFrame } from '../http/render.js';
import type { WireBuffer } from '../http/wire-buffer.js';
import { wsLimits } from './ws-limits.js';
import { BatchSizer, closeCodes, isBackedUp, sendError, TextFrameBatch, whenDrained } from './ws-socket.js';

/** How often tails look again without being told: a deleted topic announces nothing. */
const housekeepingMs = 500;
/** Batches one pump sends before it yields to other work. */
const pumpRoundsMax = 64;

/** Where a tail starts: a seq (inclusive), or the next message published. */
export type TailStart = { seq: number } | { next: true };

export class TopicTails {
  private readonly byTopic = new Map<string, Set<TopicTail>>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly node: HeraldNode) {
    node.onAnyRoleEffects((effects) => {
      for (const e of effects) if (e.type === 'published') this.wake(e.topic);
    });
    this.timer = setInterval(() => {
      for (const set of [...this.byTopic.values()]) for (const t of [...set]) t.pump();
    }, housekeepingMs);
    this.timer.unref();
  }

  /** Starts a tail; undefined (and the socket left alone) when the topic does not exist. */
  open(socket: WebSocket, topic: string, start: TailStart): TopicTail | undefined {
    const head = this.node.machine.readTopic(topic, 0, 0);
    if (!head) return undefined;
    const tail = new TopicTail(socket, topic, head.topicId, this.node, this);
    let set = this.byTopic.get(topic);
    if (!set) this.byTopic.set(topic, (set = new Set()));
    set.add(tail);
    tail.begin('seq' in start ? start.seq : head.lastSeq + 1);
    return tail;
  }

  wake(topic: string): void {
    const set = this.byTopic.get(topic);
    if (set) for (const t of set) t.pump();
  }

  removed(tail: TopicTail): void {
    const set = this.byTopic.get(tail.topic);
    if (!set) return;
    set.delete(tail);
    if (set.size === 0) this.byTopic.delete(tail.topic);
  }

  shutdown(): void {
    clearInterval(this.timer);
    for (const set of [...this.byTopic.values()]) for (const t of [...set]) t.stop(closeCodes.goingAway);
  }
}

export class TopicTail {
  /** The next seq to send. */
  private next = 0;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly sizer = new BatchSizer(wsLimits.tailBatchMax);

  constructor(
    private readonly socket: WebSocket,
    readonly topic: string,
    /** A topic deleted and created again gets a new id: this tail belongs to the one it started on. */
    private readonly topicId: number,
    private readonly node: HeraldNode,
    private readonly hub: TopicTails,
  ) {
    socket.once('close', () => this.stop());
    socket.on('error', () => {});
    // Clients send nothing on a tail; whatever they send is ignored (the heartbeat needs no frames).
  }

  begin(fromSeq: number): void {
    this.next = fromSeq;
    this.pump();
  }

  pump(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (let round = 0; round < pumpRoundsMax; round++) {
      if (isBackedUp(this.socket)) {
        whenDrained(this.socket, () => this.pump());
        return;
      }
      const r = this.node.machine.readTopic(this.topic, this.next, this.sizer.next());
      if (!r || r.topicId !== this.topicId) {
        this.stop(closeCodes.normal, `topic ${this.topic} was deleted`);
        return;
      }
      let size = 256;
      for (const m of r.messages) size += estimateBytes(m);
      const frames = new TextFrameBatch(size);
      if (r.firstSeq > this.next) {
        frames.add(writeJson, { type: 'gap', requested: this.next, firstAvailable: r.firstSeq });
        this.next = r.firstSeq;
      }
      const topicId = r.topicId;
      const writeMessage = (w: WireBuffer, m: (typeof r.messages)[number]) => writeTailMessageFrame(w, topicId, m);
      for (const m of r.messages) frames.add(writeMessage, m);
      const last = r.messages[r.messages.length - 1];
      if (last) this.next = last.seq + 1;
      // Seqs with no stored message (none expected) are stepped over rather than read forever.
      else if (r.lastSeq >= this.next) this.next = r.lastSeq + 1;
      if (frames.frames > 0) this.sizer.record(frames.send(this.socket), frames.frames);
      if (r.messages.length === 0) return; // caught up: a `published` effect wakes us
    }
    // More to send: yield to other sockets and requests first.
    this.timer = setTimeout(() => this.pump(), 0);
  }

  stop(code: number = closeCodes.normal, topicGone?: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.hub.removed(this);
    if (topicGone) sendError(this.socket, 'TopicNotFound', topicGone);
    if (this.socket.readyState === this.socket.OPEN) this.socket.close(code, topicGone?.slice(0, 120));
  }
}

function writeJson(w: WireBuffer, value: unknown): void {
  w.text(JSON.stringify(value));
}
