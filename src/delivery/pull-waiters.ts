/**
 * Long polling: a pull that finds nothing waits here until the state machine says its subscription
 * may have messages (a commit woke it), a pending record comes due, or its wait runs out. Only then
 * does it put a pull command through the log, so an idle poller writes nothing.
 *
 * A publish that will give a waiting subscription something wakes it as soon as it is proposed, not
 * when it is applied: the pull then goes into the log right behind the publish and commits with it,
 * so the message reaches the consumer one log round trip after it was sent, not two.
 */
import type { Delivery, Effect } from '../core/broker/machine.js';
import type { HeraldNode } from '../runtime/herald-node.js';
import { HeraldError } from '../http/errors.js';
import { notePullWaiting } from '../metrics/registry.js';

/** Ends a wait; `publishProposed`: woken by a publish not yet committed, so pull without looking. */
type Wake = (publishProposed: boolean) => void;

export class PullService {
  private readonly waiting = new Map<string, Set<Wake>>();
  private closing = false;

  constructor(private readonly node: HeraldNode) {
    node.onEffects((effects) => this.onEffects(effects));
    node.onPublishProposed((topic, messages, nowMs) => {
      for (const [subscription, set] of this.waiting) {
        if (!node.machine.wouldMakeAvailable(subscription, topic, messages, nowMs)) continue;
        this.waiting.delete(subscription);
        for (const wake of set) wake(true);
      }
    });
  }

  private onEffects(effects: Effect[]): void {
    for (const e of effects) {
      if (e.type !== 'available') continue;
      const set = this.waiting.get(e.subscription);
      if (!set) continue;
      this.waiting.delete(e.subscription);
      for (const wake of set) wake(false);
    }
  }

  /**
   * `gone` fires when the client leaves: a waiting poll then ends at once (so nothing is leased to
   * nobody, and a wait that nobody reads holds nothing).
   */
  async pull(subscription: string, max: number, waitMs: number, ackDeadlineMs: number, gone?: AbortSignal): Promise<Delivery[]> {
    const deadline = this.node.now() + waitMs;
    let publishProposed = false;
    for (;;) {
      const now = this.node.now();
      if (gone?.aborted || this.closing) return [];
      if (this.node.machine.subscriptionConfig(subscription) === undefined) {
        throw new HeraldError('SubscriptionNotFound', `subscription ${subscription} not found`);
      }
      if (publishProposed || this.node.machine.hasAvailable(subscription, now)) {
        publishProposed = false;
        const reply = await this.node.propose({ type: 'pull', subscription, max, ackDeadlineMs });
        if (!reply.ok) throw new HeraldError(reply.code, reply.message);
        const { deliveries } = reply as { deliveries: Delivery[] };
        if (deliveries.length > 0 || this.node.now() >= deadline) return deliveries;
        continue;
      }
      if (now >= deadline) return [];
      publishProposed = await this.wait(subscription, deadline, gone);
    }
  }

  /** A planned stop: every long poll answers now (empty), and none waits again. */
  shutdown(): void {
    this.closing = true;
    for (const set of this.waiting.values()) for (const wake of set) wake(false);
    this.waiting.clear();
  }

  /** Gives leased messages back at once (their client went away before it got them). Best effort. */
  release(subscription: string, ackIds: string[]): void {
    this.node.propose({ type: 'modify-ack-deadline', subscription, ackIds, deadlineMs: 0 }).catch(() => {});
  }

  /** Resolves true when woken by a publish just proposed (see the top of the file). */
  private wait(subscription: string, deadline: number, gone: AbortSignal | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      let set = this.waiting.get(subscription);
      if (!set) this.waiting.set(subscription, (set = new Set()));
      const due = this.node.machine.nextAvailableAtMs(subscription);
      const until = Math.min(deadline, due ?? Infinity);
      const onGone = () => wake(false);
      let woken = false;
      const wake: Wake = (publishProposed) => {
        if (woken) return;
        woken = true;
        clearTimeout(timer);
        gone?.removeEventListener('abort', onGone);
        const own = this.waiting.get(subscription);
        own?.delete(wake);
        if (own?.size === 0) this.waiting.delete(subscription);
        notePullWaiting(-1);
        resolve(publishProposed);
      };
      const timer = setTimeout(() => wake(false), Math.max(0, until - this.node.now()));
      gone?.addEventListener('abort', onGone, { once: true });
      set.add(wake);
      notePullWaiting(1);
    });
  }
}
