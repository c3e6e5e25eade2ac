/**
 * WebSocket consumers of a subscription, on the leader. A session leases messages through the log
 * exactly as an HTTP pull does (`pull`, `ack`, `nack`, `modify-ack-deadline` commands), so the
 * subscription's locks, acks and attempt counts are shared with pull and push, and several sockets on
 * one subscription compete safely. It hands out no more than the client's credits, pulls nothing
 * while the socket's send buffer is full, and gives back the leases it still holds when it closes.
 *
 * Life of a session: open → (credit → pull → message frames → ack | nack | lease runs out)* → closed,
 * where closing (client left, heartbeat missed, leadership lost, subscription deleted, shutdown)
 * releases every unexpired lease at once with `modify-ack-deadline 0`.
 */
import { WebSocket, type RawData } from 'ws';
import type { Delivery, Reply } from '../core/broker/machine.js';
import { NotLeaderError, NodeUnavailableError, type HeraldNode } from '../runtime/herald-node.js';
import { estimateBytes, writeMessageFrame } from '../http/render.js';
import { parseClientFrame } from './ws-frames.js';
import { wsLimits } from './ws-limits.js';
import { BatchSizer, closeCodes, isBackedUp, sendError, TextFrameBatch, whenDrained } from './ws-socket.js';
import { countSettled, noteDeliveries } from '../metrics/registry.js';

/** How often every session is looked at again: leadership, the subscription's existence, and a wake-up
 * for what the broker does not announce (an HTTP ack freeing room under the pending limit). */
const housekeepingMs = 500;
/** A pull that found nothing although the subscription said it had messages is not retried sooner. */
const emptyPullRetryMs = 1000;
/** Releases and acks at shutdown get this long before the sockets are cut. */
const shutdownReleaseMs = 2000;

export class ConsumerSessions {
  private readonly bySubscription = new Map<string, Set<ConsumerSession>>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly node: HeraldNode) {
    node.onEffects((effects) => {
      for (const e of effects) if (e.type === 'available') this.wake(e.subscription);
    });
    // A publish that feeds a subscription lets its sockets pull right behind it, in the same log
    // write (see pull-waiters.ts), instead of a round trip after it is applied.
    node.onPublishProposed((topic, messages, nowMs) => {
      for (const [subscription, set] of this.bySubscription) {
        if (!node.machine.wouldMakeAvailable(subscription, topic, messages, nowMs)) continue;
        for (const s of set) if (s.waiting) s.pump(false, true);
      }
    });
    this.timer = setInterval(() => this.housekeep(), housekeepingMs);
    this.timer.unref();
  }

  get size(): number {
    let n = 0;
    for (const set of this.bySubscription.values()) n += set.size;
    return n;
  }

  open(socket: WebSocket, subscription: string): ConsumerSession {
    const session = new ConsumerSession(socket, subscription, this.node, this);
    let set = this.bySubscription.get(subscription);
    if (!set) this.bySubscription.set(subscription, (set = new Set()));
    set.add(session);
    return session;
  }

  /** The subscription may have messages (or room for them): every session on it looks. */
  wake(subscription: string): void {
    const set = this.bySubscription.get(subscription);
    if (set) for (const s of set) s.pump();
  }

  removed(session: ConsumerSession): void {
    const set = this.bySubscription.get(session.subscription);
    if (!set) return;
    set.delete(session);
    if (set.size === 0) this.bySubscription.delete(session.subscription);
  }

  private housekeep(): void {
    for (const set of [...this.bySubscription.values()]) {
      for (const s of [...set]) {
        if (!this.node.isLeader) s.stop(closeCodes.serviceRestart, 'Unavailable', 'this node stopped leading; reconnect');
        else s.pump();
      }
    }
  }

  /** Closes every session (going away), giving their leases back, and waits for that (bounded). */
  async shutdown(): Promise<void> {
    clearInterval(this.timer);
    const releases: Promise<void>[] = [];
    for (const set of [...this.bySubscription.values()]) for (const s of [...set]) releases.push(s.stop(closeCodes.goingAway));
    await Promise.race([Promise.all(releases), new Promise((r) => setTimeout(r, shutdownReleaseMs).unref())]);
  }
}

export class ConsumerSession {
  private credits = 0;
  /** ackIds leased to this socket and not yet acked or nacked through it → when the lease runs out
   * (by this node's clock, which stamped the pull). Insertion order is deadline order but for a
   * changed ackDeadlineSeconds, which only makes pruning late. */
  private readonly leases = new Map<string, number>();
  private acksToSend: string[] = [];
  private ackFlushScheduled = false;
  /** Pulls in the log for this socket, and the credits (and lease room) they reserved. */
  private pulls = 0;
  private reserved = 0;
  private waitingForDrain = false;
  /** When a pull last came back empty although the subscription said it had messages. */
  private emptyPullAtMs = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private badFramesInARow = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly sizer = new BatchSizer(wsLimits.pullBatchMax);

  constructor(
    private readonly socket: WebSocket,
    readonly subscription: string,
    private readonly node: HeraldNode,
    private readonly hub: ConsumerSessions,
  ) {
    socket.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    socket.once('close', () => void this.stop());
    // ws emits 'close' after any error; nothing else to do here.
    socket.on('error', () => {});
  }

  /**
   * Looks for messages to send now (or arranges to look again when there may be some). Up to
   * `pullsInFlightMax` pulls go through the log at once, each with its credits and lease room
   * reserved, so a fast reader is not held to one batch per commit round trip.
   */
  /** No pull of its own in the log: a publish that feeds it is worth a pull right behind it. */
  get waiting(): boolean {
    return this.pulls === 0 && !this.closed;
  }

  pump(afterPull = false, publishProposed = false): void {
    if (this.closed) return;
    // Anything but a pull's return (a credit, an ack, an `available` effect, a timer) may mean there
    // is something after all.
    if (!afterPull) this.emptyPullAtMs = -Infinity;
    this.clearTimer();
    while (this.pulls < wsLimits.pullsInFlightMax) {
      const plan = this.planPull(publishProposed);
      publishProposed = false; // one pull behind a publish; more only if there is more
      if (!plan) return;
      this.pulls++;
      this.reserved += plan.max;
      this.pullOnce(plan)
        .catch((error: Error) => this.onProposalError(error))
        .finally(() => {
          this.pulls--;
          this.reserved -= plan.max;
          this.pump(true);
        });
    }
  }

  /**
   * What the next pull may take, or undefined (having arranged to look again) when none should go now.
   * `publishProposed`: a publish not yet applied will have something for this subscription.
   */
  private planPull(publishProposed: boolean): { max: number; ackDeadlineMs: number } | undefined {
    const config = this.node.machine.subscriptionConfig(this.subscription);
    if (!config) {
      void this.stop(closeCodes.normal, 'SubscriptionNotFound', `subscription ${this.subscription} was deleted`);
      return undefined;
    }
    const credits = this.credits - this.reserved;
    if (credits <= 0) return undefined; // a credit frame pumps again
    if (isBackedUp(this.socket)) {
      if (!this.waitingForDrain) {
        this.waitingForDrain = true;
        whenDrained(this.socket, () => {
          this.waitingForDrain = false;
          this.pump();
        });
      }
      return undefined;
    }
    const now = this.node.now();
    const room = wsLimits.leasesPerSocketMax - this.liveLeases(now) - this.reserved;
    if (room <= 0) {
      if (this.pulls === 0) this.lookAgainAt(this.leases.values().next().value ?? now + emptyPullRetryMs);
      return undefined;
    }
    const emptyLately = now - this.emptyPullAtMs < emptyPullRetryMs;
    if (!publishProposed && (emptyLately || !this.node.machine.hasAvailable(this.subscription, now))) {
      if (this.pulls === 0) this.waitForMessages(emptyLately);
      return undefined;
    }
    return { max: Math.min(credits, room, this.sizer.next()), ackDeadlineMs: config.ackDeadlineSeconds * 1000 };
  }

  private async pullOnce(plan: { max: number; ackDeadlineMs: number }): Promise<void> {
    const now = this.node.now();
    const reply = await this.node.propose({ type: 'pull', subscription: this.subscription, max: plan.max, ackDeadlineMs: plan.ackDeadlineMs });
    if (!reply.ok) {
      if (reply.code === 'SubscriptionNotFound') void this.stop(closeCodes.normal, reply.code, reply.message);
      else {
        sendError(this.socket, reply.code, reply.message);
        this.lookAgainIn(emptyPullRetryMs);
      }
      return;
    }
    const deliveries = (reply as { deliveries: Delivery[] }).deliveries;
    if (this.closed) {
      // The client left while the lease was being committed: nobody holds these.
      this.release(deliveries.map((d) => d.ackId));
      return;
    }
    if (deliveries.length === 0) {
      // Told there was something but got nothing: do not ask again at once (see waitForMessages).
      this.emptyPullAtMs = this.node.now();
      return;
    }
    this.send(deliveries, now + plan.ackDeadlineMs);
  }

  private send(deliveries: Delivery[], leaseEndsAtMs: number): void {
    let size = 0;
    for (const d of deliveries) size += estimateBytes(d.message);
    const batch = new TextFrameBatch(size);
    for (const d of deliveries) batch.add(writeMessageFrame, d);
    for (const d of deliveries) this.leases.set(d.ackId, leaseEndsAtMs);
    this.credits -= deliveries.length;
    this.sizer.record(batch.send(this.socket), batch.frames);
    noteDeliveries('websocket', this.subscription, 'sent', deliveries.length);
  }

  /** Leases not yet run out; forgets those that have (their message went back to the backlog). */
  private liveLeases(now: number): number {
    for (const [ackId, endsAt] of this.leases) {
      if (endsAt > now) break;
      this.leases.delete(ackId);
    }
    return this.leases.size;
  }

  /** Nothing to hand out now: an `available` effect wakes us, or the next record coming due. */
  private waitForMessages(afterEmptyPull: boolean): void {
    const now = this.node.now();
    let at = this.node.machine.nextAvailableAtMs(this.subscription) ?? Infinity;
    // Told there was something but got nothing (another consumer was faster, or an ordering key is
    // busy): do not ask again at once, or two sockets could trade empty pulls forever.
    if (afterEmptyPull && at <= now) at = now + emptyPullRetryMs;
    if (at !== Infinity) this.lookAgainAt(at);
  }

  private lookAgainAt(atMs: number): void {
    this.lookAgainIn(Math.max(0, atMs - this.node.now()) + 1);
  }

  private lookAgainIn(ms: number): void {
    this.clearTimer();
    // Timers past 2^31 - 1 ms fire at once; the housekeeping tick covers anything that far out.
    this.timer = setTimeout(() => this.pump(), Math.min(ms, 2 ** 31 - 1));
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    const parsed = parseClientFrame(data, isBinary);
    if (!parsed.ok) return this.badFrame(parsed.message);
    const frame = parsed.frame;
    switch (frame.type) {
      case 'credit':
        if (this.credits + frame.n > wsLimits.creditsOutstandingMax) {
          return this.badFrame(`credits outstanding would be ${this.credits + frame.n}, over ${wsLimits.creditsOutstandingMax}; the frame is ignored`);
        }
        this.badFramesInARow = 0;
        this.credits += frame.n;
        this.pump();
        return;
      case 'ack':
        this.badFramesInARow = 0;
        for (const id of frame.ackIds) this.leases.delete(id);
        this.acksToSend.push(...frame.ackIds);
        // Acks that arrive in the same tick go through the log as one command.
        if (!this.ackFlushScheduled) {
          this.ackFlushScheduled = true;
          setImmediate(() => this.flushAcks());
        }
        return;
      case 'nack': {
        this.badFramesInARow = 0;
        for (const id of frame.ackIds) this.leases.delete(id);
        const delayMs = frame.delaySeconds === undefined ? null : frame.delaySeconds * 1000;
        this.settle(countSettled('websocket', this.subscription, 'nacked', this.node.propose({ type: 'nack', subscription: this.subscription, ackIds: frame.ackIds, delayMs })));
        return;
      }
    }
  }

  private flushAcks(): Promise<void> {
    this.ackFlushScheduled = false;
    const ids = this.acksToSend;
    this.acksToSend = [];
    const done: Promise<void>[] = [];
    for (let i = 0; i < ids.length; i += wsLimits.ackIdsPerFrameMax) {
      done.push(this.settle(countSettled('websocket', this.subscription, 'acked', this.node.propose({ type: 'ack', subscription: this.subscription, ackIds: ids.slice(i, i + wsLimits.ackIdsPerFrameMax) }))));
    }
    return Promise.all(done).then(() => {});
  }

  /**
   * An ack or nack went through: tell the client only of a refusal (ackIds that were unknown or had
   * expired are not errors, as in the HTTP answer's `invalid`), and let every socket on the
   * subscription look again (an ack can free an ordering key or room under the pending limit).
   */
  private settle(proposal: Promise<Reply>): Promise<void> {
    return proposal.then(
      (reply) => {
        if (!reply.ok) sendError(this.socket, reply.code, reply.message);
        this.hub.wake(this.subscription);
      },
      (error: Error) => this.onProposalError(error),
    );
  }

  private onProposalError(error: Error): void {
    if (this.closed) return;
    if (error instanceof NotLeaderError) {
      void this.stop(closeCodes.serviceRestart, 'Unavailable', 'this node stopped leading; reconnect');
    } else if (error instanceof NodeUnavailableError) {
      sendError(this.socket, 'Unavailable', error.message);
      this.lookAgainIn(emptyPullRetryMs);
    } else {
      console.error('herald: websocket consumer failed', error);
      void this.stop(closeCodes.internalError, 'InternalError', 'internal error');
    }
  }

  private badFrame(message: string): void {
    this.badFramesInARow++;
    if (this.badFramesInARow > wsLimits.badFramesInARowMax) {
      void this.stop(closeCodes.policyViolation, 'InvalidRequest', `more than ${wsLimits.badFramesInARowMax} bad frames in a row`);
      return;
    }
    // A client that does not read gets no more error frames: they would only pile up.
    if (!isBackedUp(this.socket)) sendError(this.socket, 'InvalidRequest', message);
  }

  /** Gives leases back to the backlog at once. Best effort: a lost release only waits out its lease. */
  private release(ackIds: string[]): Promise<void> {
    const done: Promise<unknown>[] = [];
    for (let i = 0; i < ackIds.length; i += wsLimits.ackIdsPerFrameMax) {
      const chunk = ackIds.slice(i, i + wsLimits.ackIdsPerFrameMax);
      done.push(this.node.propose({ type: 'modify-ack-deadline', subscription: this.subscription, ackIds: chunk, deadlineMs: 0 }).catch(() => {}));
    }
    return Promise.all(done).then(() => this.hub.wake(this.subscription));
  }

  /**
   * Ends the session: acks already received go through, every unexpired lease goes back, and the
   * socket is closed (with an error frame first when there is something to say). Idempotent; the
   * socket's own 'close' comes here too.
   */
  stop(code: number = closeCodes.normal, errorCode?: Parameters<typeof sendError>[1], message?: string): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.clearTimer();
    this.hub.removed(this);
    const acks = this.flushAcks();
    const now = this.node.now();
    const held = [...this.leases].filter(([, endsAt]) => endsAt > now).map(([ackId]) => ackId);
    this.leases.clear();
    const released = held.length > 0 ? this.release(held) : Promise.resolve();
    if (errorCode && message) sendError(this.socket, errorCode, message);
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close(code, message?.slice(0, 120));
    this.closing = Promise.all([acks, released]).then(() => {});
    return this.closing;
  }
}
