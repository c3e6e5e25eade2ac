/**
 * Long polling: a pull that finds nothing waits here until the state machine says its subscription
 * may have messages (a commit woke it), a pending record comes due, or its wait runs out. Only then
 * does it put a pull command through the log, so an idle poller writes nothing.
 */
import type { Delivery, Effect } from '../core/broker/machine.js';
import type { HeraldNode } from '../runtime/herald-node.js';
import { HeraldError } from '../http/errors.js';

export class PullService {
  private readonly waiting = new Map<string, Set<() => void>>();
  private closing = false;

  constructor(private readonly node: HeraldNode) {
    node.onEffects((effects) => this.onEffects(effects));
  }

  private onEffects(effects: Effect[]): void {
    for (const e of effects) {
      if (e.type !== 'available') continue;
      const set = this.waiting.get(e.subscription);
      if (!set) continue;
      this.waiting.delete(e.subscription);
      for (const wake of set) wake();
    }
  }

  /** `isGone` tells when the client has left, so nothing is leased to nobody. */
  async pull(subscription: string, max: number, waitMs: number, ackDeadlineMs: number, isGone: () => boolean = () => false): Promise<Delivery[]> {
    const deadline = this.node.now() + waitMs;
    for (;;) {
      const now = this.node.now();
      if (isGone() || this.closing) return [];
      if (this.node.machine.subscriptionConfig(subscription) === undefined) {
        throw new HeraldError('SubscriptionNotFound', `subscription ${subscription} not found`);
      }
      if (this.node.machine.hasAvailable(subscription, now)) {
        const reply = await this.node.propose({ type: 'pull', subscription, max, ackDeadlineMs });
        if (!reply.ok) throw new HeraldError(reply.code, reply.message);
        const { deliveries } = reply as { deliveries: Delivery[] };
        if (deliveries.length > 0 || this.node.now() >= deadline) return deliveries;
        continue;
      }
      if (now >= deadline) return [];
      await this.wait(subscription, deadline);
    }
  }

  /** A planned stop: every long poll answers now (empty), and none waits again. */
  shutdown(): void {
    this.closing = true;
    for (const set of this.waiting.values()) for (const wake of set) wake();
    this.waiting.clear();
  }

  /** Gives leased messages back at once (their client went away before it got them). Best effort. */
  release(subscription: string, ackIds: string[]): void {
    this.node.propose({ type: 'modify-ack-deadline', subscription, ackIds, deadlineMs: 0 }).catch(() => {});
  }

  private wait(subscription: string, deadline: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiting.get(subscription);
      if (!set) this.waiting.set(subscription, (set = new Set()));
      const due = this.node.machine.nextAvailableAtMs(subscription);
      const until = Math.min(deadline, due ?? Infinity);
      const wake = () => {
        clearTimeout(timer);
        this.waiting.get(subscription)?.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, until - this.node.now()));
      set.add(wake);
    });
  }
}
