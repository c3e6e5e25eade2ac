/**
 * Webhook push, on the leader. Each push subscription gets a pusher that leases messages through the
 * log exactly as a pull does (so pull and WebSocket consumers share its locks, acks and attempt
 * counts), POSTs each one, and puts the outcome back through the log: an ack for a 2xx, a
 * `push-failed` (backoff, Retry-After or dead-letter) otherwise, a `pause-push` for a 410.
 *
 * A pusher keeps at most `maxInFlight` requests open and at most `rateLimitPerSecond` starts per
 * second (token bucket). An endpoint that keeps failing is circuit-broken: the pusher stops leasing
 * for a probe interval (doubling up to a minute), then sends one probe; its backlog stays where it
 * is, and since every pusher has its own window and timeouts, a slow or dead endpoint holds up no
 * other subscription. After a failover, the new leader's pushers start from the log: only the
 * messages in flight at the crash wait out their lease and are delivered again.
 */
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { assert } from '../core/assert.js';
import { limits } from '../core/limits.js';
import type { PushFailure } from '../core/broker/commands.js';
import type { Delivery, Effect } from '../core/broker/machine.js';
import { type PushConfig } from '../core/broker/types.js';
import { resolveRetryPolicy } from '../core/broker/backoff.js';
import type { HeraldNode } from '../runtime/herald-node.js';
import { buildWebhookRequest, errorOutcome, parseRetryAfter } from './webhook-request.js';
import { postWebhook, webhookAgent, webhookTarget, type WebhookTarget } from './webhook-connector.js';
import { noteWebhookAttempt } from '../metrics/registry.js';

/** Push's own bounds (the contract's are in core/limits.ts). */
export const pushLimits = {
  /** Messages one lease proposal takes for a pusher. */
  leaseBatchMax: 256,
  /**
   * Lease proposals a pusher may have in the log at once: while one commits, the next is on its way,
   * so a fast endpoint is not held to one batch per commit round trip.
   */
  leasesInFlightMax: 4,
  /** A push lease outlives the request timeout by this much, so a slow answer is not redelivered early. */
  leaseMarginMs: 2_000,
  /** Attempts remembered per subscription for `GET .../attempts` (10,000 push subscriptions × 200
   * stay in the tens of megabytes). */
  attemptsKeptMax: 200,
  /** Consecutive failures that open the circuit. */
  circuitFailureThreshold: 5,
  circuitProbeMsMin: 1_000,
  circuitProbeMsMax: 60_000,
  /** Response bodies are read and dropped up to this size; a longer one fails the attempt. */
  responseBodyBytesMax: 64 * 1024,
  /** How often the leader looks for push subscriptions created, changed or removed. */
  syncIntervalMs: 200,
  /** Requests to one origin, leased or out, per connection to it (see OriginWindow). */
  originInFlightPerConnection: 2,
  /** Free slots in an origin's window before it wakes a pusher waiting for them (less in a small window). */
  originWakeSlotsMin: 16,
} as const;

assert(limits.pushAttemptsListMax <= pushLimits.attemptsKeptMax, 'the attempts route lists only what is kept');

export type PushState = 'active' | 'backing-off' | 'paused';

export interface PushAttempt {
  messageId: string;
  seq: number;
  attempt: number;
  time: string;
  /** The HTTP status, or an error name (`timeout`, `connection-refused`, `ssrf-blocked`, ...). */
  outcome: number | string;
  latencyMs: number;
}

export interface PushDispatcherOptions {
  allowPrivate: boolean;
  /** Connections per endpoint origin. */
  connectionsPerOrigin?: number;
}

/**
 * The requests to one origin, across every pusher that posts there: leased messages not yet answered.
 * Its size is what the origin's connections carry plus as many waiting, so that a message is leased
 * (its ack deadline running) only when a connection will take it soon. Without it, 100 subscriptions
 * × 64 in flight leased 6,400 messages for 256 connections: most sat in undici's queue, and the
 * objects they kept alive made the garbage collector the bottleneck (deliveries/s rose by a fifth with
 * the window). Pushers the window holds back wait in order and are woken one at a time as room frees.
 */
export class OriginWindow {
  private used = 0;
  private readonly waiting = new Set<SubscriptionPusher>();
  /** A pusher was woken and has not pumped yet: the next waits for it, not for the same slots. */
  private turnTaken = false;

  /** Free slots before a waiting pusher is woken: enough for a batch, reachable in a small window. */
  readonly wakeSlots: number;

  constructor(readonly size: number) {
    this.wakeSlots = Math.max(1, Math.min(pushLimits.originWakeSlotsMin, Math.ceil(size / 8)));
  }

  free(): number {
    return this.size - this.used;
  }

  take(n: number): void {
    this.used += n;
  }

  give(n: number): void {
    this.used -= n;
    assert(this.used >= 0, 'origin window gave back more than it took');
    this.wakeNext();
  }

  /** Holds a pusher back until room frees. */
  wait(pusher: SubscriptionPusher): void {
    this.waiting.add(pusher);
  }

  leave(pusher: SubscriptionPusher): void {
    this.waiting.delete(pusher);
  }

  /** A woken pusher has pumped (and taken what it needed): the next may go. */
  turnDone(): void {
    this.turnTaken = false;
    this.wakeNext();
  }

  private wakeNext(): void {
    if (this.turnTaken || this.free() < this.wakeSlots) return;
    const next = this.waiting.values().next();
    if (next.done) return;
    this.waiting.delete(next.value);
    this.turnTaken = true;
    next.value.originTurn();
  }
}

export class PushDispatcher {
  private readonly pushers = new Map<string, SubscriptionPusher>();
  private readonly agent: Dispatcher;
  private readonly originWindows = new Map<string, OriginWindow>();
  private readonly originWindowSize: number;
  private readonly syncTimer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly node: HeraldNode,
    options: PushDispatcherOptions,
  ) {
    const connections = options.connectionsPerOrigin ?? 256;
    this.agent = webhookAgent({ allowPrivate: options.allowPrivate, connections });
    this.originWindowSize = connections * pushLimits.originInFlightPerConnection;
    node.onEffects((effects) => this.onEffects(effects));
    // An idle pusher whose subscription a publish feeds leases right behind it, in the same log write
    // (see pull-waiters.ts): the message reaches the endpoint one log round trip after it was sent.
    node.onPublishProposed((topic, messages, nowMs) => {
      for (const [name, pusher] of this.pushers) {
        if (pusher.topic === topic && pusher.idle() && node.machine.wouldMakeAvailable(name, topic, messages, nowMs)) pusher.pumpBehindPublish();
      }
    });
    this.syncTimer = setInterval(() => this.sync(), pushLimits.syncIntervalMs);
    this.syncTimer.unref();
    this.sync();
  }

  private onEffects(effects: Effect[]): void {
    for (const e of effects) {
      if (e.type !== 'available') continue;
      const pusher = this.pushers.get(e.subscription);
      if (pusher) pusher.wake();
      else if (this.node.machine.subscriptionConfig(e.subscription)?.push) this.sync();
    }
  }

  /** Starts pushers for the push subscriptions while leading; stops those gone, and all when not leading. */
  sync(): void {
    if (this.closed) return;
    const machine = this.node.machine;
    const leading = this.node.isLeader;
    for (const [name, pusher] of this.pushers) {
      const config = machine.subscriptionConfig(name);
      if (!leading || !config?.push || pusher.generation !== config) {
        pusher.stop();
        this.pushers.delete(name);
      }
    }
    // Attempt logs of deleted subscriptions go with them, and windows of origins no pusher posts to.
    for (const name of this.attemptLogs.keys()) if (!machine.subscriptionConfig(name)) this.attemptLogs.delete(name);
    const originsInUse = new Set([...this.pushers.values()].map((p) => p.origin));
    for (const [origin, window] of this.originWindows) {
      if (window.free() === window.size && !originsInUse.has(origin)) this.originWindows.delete(origin);
    }
    if (!leading) return;
    for (const name of machine.subscriptionNames()) {
      const config = machine.subscriptionConfig(name)!;
      if (!config.push || this.pushers.has(name)) continue;
      const pusher = new SubscriptionPusher(this.node, this.agent, name, config.topic, config.push, config, this.attemptsOf(name), (origin) => {
        let window = this.originWindows.get(origin);
        if (!window) this.originWindows.set(origin, (window = new OriginWindow(this.originWindowSize)));
        return window;
      });
      this.pushers.set(name, pusher);
      pusher.wake();
    }
  }

  /** Attempt logs survive a pusher's restart (a config change) on this node. */
  private readonly attemptLogs = new Map<string, AttemptLog>();
  private attemptsOf(name: string): AttemptLog {
    let log = this.attemptLogs.get(name);
    if (!log) this.attemptLogs.set(name, (log = new AttemptLog()));
    return log;
  }

  /** The latest attempts, newest first. */
  attempts(name: string, limit: number): PushAttempt[] {
    if (!this.node.machine.subscriptionConfig(name)) this.attemptLogs.delete(name);
    return this.attemptLogs.get(name)?.latest(limit) ?? [];
  }

  pushState(name: string): PushState {
    if (this.node.machine.pushPaused(name)) return 'paused';
    return this.pushers.get(name)?.backingOff() ? 'backing-off' : 'active';
  }

  /**
   * A planned stop: no more leasing; waits (at most `timeoutMs`) for the requests in flight to end and
   * for their outcomes to commit, so nothing that was delivered is delivered again by the next leader.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.closed = true; // no new pushers from here on
    clearInterval(this.syncTimer);
    for (const p of this.pushers.values()) p.stop();
    const deadline = Date.now() + timeoutMs;
    while ([...this.pushers.values()].some((p) => p.busy()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await Promise.race([Promise.all([...this.pushers.values()].map((p) => p.settled())), new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())))]);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.syncTimer);
    for (const p of this.pushers.values()) p.stop();
    this.pushers.clear();
    await this.agent.destroy();
  }
}

/** An attempt as the log keeps it: the time as a number, formatted only when someone asks. */
type AttemptRecord = Omit<PushAttempt, 'time'> & { timeMs: number };

/** A bounded ring of attempts. */
class AttemptLog {
  private readonly items: AttemptRecord[] = [];
  private next = 0;

  add(a: AttemptRecord): void {
    if (this.items.length < pushLimits.attemptsKeptMax) this.items.push(a);
    else this.items[this.next] = a;
    this.next = (this.next + 1) % pushLimits.attemptsKeptMax;
  }

  latest(limit: number): PushAttempt[] {
    const out: PushAttempt[] = [];
    const n = this.items.length;
    for (let i = 1; i <= Math.min(limit, n); i++) {
      const { timeMs, ...rest } = this.items[(this.next - i + n * 2) % n]!;
      out.push({ ...rest, time: new Date(timeMs).toISOString() });
    }
    return out;
  }
}

export class SubscriptionPusher {
  private inFlight = 0;
  /** Lease proposals in the log, and the window slots they asked for. */
  private leases = 0;
  private reserved = 0;
  private stopped = false;
  private pumpScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAtMs = Infinity;
  // Token bucket for rateLimitPerSecond (burst of one second's worth).
  private tokens: number;
  private refilledAtMs: number;
  // Circuit breaker.
  private consecutiveFailures = 0;
  private openUntilMs = 0;
  private probeMs: number = pushLimits.circuitProbeMsMin;
  private halfOpen = false;
  // Outcomes waiting to go through the log together.
  private acks: string[] = [];
  private failures: PushFailure[] = [];
  private flushScheduled = false;
  /** Outcome proposals not yet answered (a planned stop waits for them). */
  private readonly outcomes = new Set<Promise<unknown>>();
  readonly origin: string;
  /** Shared with the other pushers to the same origin. */
  private readonly window: OriginWindow;
  private readonly target: WebhookTarget;

  constructor(
    private readonly node: HeraldNode,
    private readonly agent: Dispatcher,
    private readonly name: string,
    readonly topic: string,
    private readonly push: PushConfig,
    /** The config object this pusher was built for; a new one (PATCH) means a new pusher. */
    readonly generation: object,
    private readonly attemptLog: AttemptLog,
    originWindow: (origin: string) => OriginWindow,
  ) {
    this.target = webhookTarget(new URL(push.url));
    this.origin = this.target.origin;
    this.window = originWindow(this.origin);
    this.tokens = push.rateLimitPerSecond;
    this.refilledAtMs = node.now();
  }

  /** Nothing out: no lease in the log and no request in flight. */
  idle(): boolean {
    return this.inFlight === 0 && this.leases === 0 && !this.stopped;
  }

  /** A publish not yet applied has something for this subscription: lease now, behind it. */
  pumpBehindPublish(): void {
    void this.pump(true);
  }

  /** Requests out, or outcomes not yet proposed. */
  busy(): boolean {
    return this.inFlight > 0 || this.leases > 0 || this.flushScheduled;
  }

  /** Resolves when the outcomes proposed so far have committed (or failed). */
  settled(): Promise<unknown> {
    return Promise.all([...this.outcomes]);
  }

  backingOff(): boolean {
    return this.halfOpen || this.node.now() < this.openUntilMs;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.window.leave(this);
  }

  /** Its origin's window has room for it now: pump, then let the window wake the next in line. */
  originTurn(): void {
    setImmediate(() => {
      void this.pump(); // takes its slots before its first await
      this.window.turnDone();
    });
  }

  wake(): void {
    if (this.pumpScheduled || this.stopped) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      void this.pump();
    });
  }

  private wakeAt(atMs: number): void {
    if (this.stopped || (this.timer && this.timerAtMs <= atMs)) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAtMs = Infinity;
      this.wake();
    }, Math.max(1, atMs - this.node.now()));
  }

  /**
   * Leases as many messages as the window, the rate and the circuit allow, and sends them.
   * `publishProposed`: a publish not yet applied will have something, so lease without looking.
   */
  private async pump(publishProposed = false): Promise<void> {
    if (this.stopped || this.leases >= pushLimits.leasesInFlightMax) return;
    const machine = this.node.machine;
    if (machine.pushPaused(this.name)) return;
    const now = this.node.now();
    if (now < this.openUntilMs) return this.wakeAt(this.openUntilMs);
    const busy = this.inFlight + this.reserved;
    let room = this.push.maxInFlight - busy;
    // Half-open: one probe at a time until an attempt succeeds.
    if (this.halfOpen) room = busy === 0 ? 1 : 0;
    const originLimited = this.window.free() < room;
    if (originLimited) room = this.window.free();
    // Lease in batches: with requests still out, wait until an eighth of the window is free, so a
    // busy pusher puts one lease through the log per many messages rather than one per message (and
    // no more than the origin's window wakes it for, or it would pass every turn up).
    const batchMin = originLimited ? Math.min(Math.ceil(this.push.maxInFlight / 8), this.window.wakeSlots) : Math.ceil(this.push.maxInFlight / 8);
    if (room <= 0 || (busy > 0 && room < batchMin)) {
      // A finished attempt of its own wakes the pusher; room at its origin, the origin's window.
      if (originLimited) this.window.wait(this);
      return;
    }
    const rate = this.push.rateLimitPerSecond;
    if (rate > 0) {
      this.tokens = Math.min(rate, this.tokens + ((now - this.refilledAtMs) * rate) / 1000);
      this.refilledAtMs = now;
      if (this.tokens < 1) return this.wakeAt(now + Math.ceil(((1 - this.tokens) * 1000) / rate));
      room = Math.min(room, Math.floor(this.tokens));
    }
    if (!publishProposed && !machine.hasAvailable(this.name, now)) {
      const next = machine.nextAvailableAtMs(this.name);
      if (next !== undefined) this.wakeAt(next);
      return;
    }
    const max = Math.min(room, pushLimits.leaseBatchMax);
    this.leases++;
    this.reserved += max;
    this.window.take(max);
    // Tokens are taken when asking, and what the lease did not use is given back.
    if (rate > 0) this.tokens -= max;
    let leased = 0;
    // More room may be left for a lease alongside this one.
    if (room > max || this.leases < pushLimits.leasesInFlightMax) this.wake();
    try {
      const reply = await this.node.propose({
        type: 'pull',
        subscription: this.name,
        max,
        ackDeadlineMs: this.push.timeoutMs + pushLimits.leaseMarginMs,
      });
      if (!reply.ok || !('deliveries' in reply)) return;
      leased = reply.deliveries.length;
      // One batch: the same signing secrets and timestamp for each of its attempts.
      const startedMs = this.node.now();
      const secrets = machine.pushSecrets(this.name, startedMs);
      for (const d of reply.deliveries) {
        this.inFlight++;
        void this.deliver(d, secrets, startedMs);
      }
    } catch {
      // Not leading any more, or the log is full: the sync loop or a later wake-up takes it from here.
      this.wakeAt(this.node.now() + 200);
      return;
    } finally {
      this.leases--;
      this.reserved -= max;
      this.window.give(max - leased); // the attempts started keep theirs until they end
      if (rate > 0) this.tokens += max - leased;
    }
    if (this.stopped) return;
    if (leased > 0) this.wake();
    else {
      // Nothing due after all (delayed messages were scanned, or a lease alongside took them): look
      // again when something comes due; a lease still out wakes the pusher when it returns.
      const next = machine.nextAvailableAtMs(this.name);
      this.wakeAt(Math.min(next ?? Infinity, this.node.now() + 1000));
    }
  }

  /** One attempt: POST, note the outcome, queue the log command that settles it. */
  private async deliver(d: Delivery, secrets: readonly string[], startedMs: number): Promise<void> {
    const { id, headers, body } = buildWebhookRequest(this.push, this.topic, this.name, d, secrets, Math.floor(startedMs / 1000));
    const started = performance.now();
    let outcome: number | string;
    let retryAfterMs: number | null = null;
    try {
      const res = await postWebhook(this.agent, this.target, headers, body, this.push.timeoutMs, pushLimits.responseBodyBytesMax);
      outcome = res.status;
      retryAfterMs = parseRetryAfter(res.retryAfter, Date.now());
    } catch (error) {
      outcome = errorOutcome(error);
    }
    const latencyMs = Math.round((performance.now() - started) * 10) / 10;
    noteWebhookAttempt(this.name, this.origin, outcome, latencyMs);
    this.attemptLog.add({
      messageId: id,
      seq: d.message.seq,
      attempt: d.attempt,
      timeMs: startedMs,
      outcome,
      latencyMs,
    });
    this.inFlight--;
    this.window.give(1);
    // Settled even by a stopped pusher (its config changed); on a node no longer leading the
    // proposal fails and the lease runs out instead.
    this.settle(d, outcome, retryAfterMs);
    this.wake();
  }

  private settle(d: Delivery, outcome: number | string, retryAfterMs: number | null): void {
    if (typeof outcome === 'number' && outcome >= 200 && outcome < 300) {
      this.acks.push(d.ackId);
      this.consecutiveFailures = 0;
      this.halfOpen = false;
      this.probeMs = pushLimits.circuitProbeMsMin;
    } else if (outcome === 410) {
      // Gone: stop pushing until resumed; the message returns to the backlog at once.
      this.failures.push({ ackId: d.ackId, error: '410', retryAfterMs: 0 });
      this.node.propose({ type: 'pause-push', subscription: this.name }).catch(() => {});
    } else {
      const throttled = outcome === 429 || outcome === 503;
      this.failures.push({ ackId: d.ackId, error: String(outcome), retryAfterMs: throttled ? retryAfterMs : null });
      this.consecutiveFailures++;
      const now = this.node.now();
      const maxBackoffMs = resolveRetryPolicy(this.node.machine.subscriptionConfig(this.name)?.retry ?? { policy: 'BACKOFF_RETRY' }).maxBackoffMs;
      if (throttled && retryAfterMs !== null) {
        // The endpoint said when to come back: the whole subscription waits, not just this message.
        this.openUntilMs = Math.max(this.openUntilMs, now + Math.min(retryAfterMs, maxBackoffMs));
      } else if (this.halfOpen || this.consecutiveFailures >= pushLimits.circuitFailureThreshold) {
        this.openUntilMs = now + this.probeMs;
        this.probeMs = Math.min(pushLimits.circuitProbeMsMax, this.probeMs * 2);
        this.halfOpen = true;
      }
    }
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const acks = this.acks.splice(0);
      const failures = this.failures.splice(0);
      // A lost proposal is harmless: the lease runs out and the message is delivered again.
      const track = (p: Promise<unknown>) => {
        const done = p.then(
          () => this.wake(),
          () => {},
        );
        this.outcomes.add(done);
        void done.then(() => this.outcomes.delete(done));
      };
      for (let i = 0; i < acks.length; i += 1000) {
        track(this.node.propose({ type: 'ack', subscription: this.name, ackIds: acks.slice(i, i + 1000) }));
      }
      for (let i = 0; i < failures.length; i += 1000) {
        track(this.node.propose({ type: 'push-failed', subscription: this.name, failures: failures.slice(i, i + 1000) }));
      }
    });
  }
}
