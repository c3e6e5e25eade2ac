/**
 * Broker clients and broker checkers for the cluster simulation.
 *
 * The clients (BrokerWorkload) use the real broker commands through whichever node claims to lead:
 * they create a topic and a subscription (sometimes with a dead-letter topic and its own
 * subscription), publish batches of unique bodies (sometimes with a dedup id, an ordering key or a
 * delay; a batch whose answer does not come is retried under the same dedup ids), pull, and ack most
 * deliveries, nack some, release or extend some, and let the rest expire. A publish is acknowledged
 * when the node it was proposed to applies it at the index and term it was given and the reply is ok.
 * After the healing phase `drain` pulls and acks until every backlog is empty.
 *
 * The checkers (BrokerChecker) follow the committed log: every index is seen once, in order, with the
 * reply of the first node that applies it (cluster.ts checks that every other node computes the same
 * reply there). From it they keep a model of every message of the two topics and of its deliveries,
 * and check at once:
 * - a delivery carries the body published at its seq, and attempt = 1 + the deliveries before it;
 * - nothing is delivered again after an ack answered ok for it, or after it was dead-lettered;
 * - no redelivery before its lease ends (or its nack delay or changed deadline), none before its
 *   delay; with a dead-letter policy, no more than maxDeliveries deliveries;
 * - an ordered subscription hands out a key's messages in seq order, each after the one before is done;
 * - an ack, nack or deadline change is valid exactly when it names the current lease, unexpired;
 * - a publish with a dedup id is a duplicate exactly when that id was stored within its window, and
 *   a duplicate names a message published under the same id;
 * - a dead-lettered copy names its subscription and its attempts, and its source was delivered
 *   maxDeliveries times and never acked.
 * At the end (`finalCheck`): every acknowledged publish was acked by a consumer or dead-lettered (and
 * every dead-lettered copy acked from the dead-letter subscription); every backlog is 0; the
 * subscriptions' counters agree with the model.
 */
import { resolveRetryPolicy } from '../../src/core/broker/backoff.js';
import type { Command, PublishItem, StampedCommand } from '../../src/core/broker/commands.js';
import { formatAckId, parseAckId, type Delivery, type Reply } from '../../src/core/broker/machine.js';
import type { RetryPolicy, SubscriptionConfig, TopicConfig } from '../../src/core/broker/types.js';
import { check } from './check.js';
import { tickMs, type Cluster, type SimNode } from './cluster.js';
import { text, utf8 } from './codec.js';
import type { Prng } from './prng.js';

export interface BrokerProfile {
  /** Share of client operations that publish (the rest pull). */
  publishShare: number;
  batchMax: number;
  dedupShare: number;
  orderingKeyShare: number;
  delayShare: number;
  ordered: boolean;
  ackDeadlineSeconds: number;
  /** Dead-lettering after this many deliveries; 0: no dead-letter topic. */
  maxDeliveries: number;
  dedupWindowSeconds: number;
  retry: RetryPolicy;
  pullMax: number;
  /** What a consumer does with a delivery: ack, nack, change its deadline; the rest it drops. */
  ackShare: number;
  nackShare: number;
  modifyShare: number;
  /** Share of acks sent after the lease may have ended. */
  lateAckShare: number;
  /** Ticks a client waits for an answer before it retries a publish or setup step. */
  retryTicks: number;
  /** A second subscription on the topic, filtered by tag; share of messages tagged for it. */
  tagged: boolean;
  tagShare: number;
  /** Per client operation: redrive dead-lettered messages (unordered subscriptions only). */
  redriveShare: number;
  /** Per client operation: change the subscription's ack deadline or dead-letter policy. */
  updateShare: number;
}

export function drawBrokerProfile(r: Prng): BrokerProfile {
  const on = (p: number) => r.chance(p);
  const ackShare = 0.5 + r.float() * 0.4;
  const nackShare = on(0.6) ? r.float() * 0.15 : 0;
  const modifyShare = on(0.4) ? r.float() * 0.1 : 0;
  return {
    publishShare: 0.3 + r.float() * 0.4,
    batchMax: r.int(1, 6),
    dedupShare: on(0.6) ? r.float() * 0.6 : 0,
    orderingKeyShare: on(0.5) ? r.float() : 0,
    delayShare: on(0.4) ? r.float() * 0.3 : 0,
    ordered: on(0.5),
    ackDeadlineSeconds: r.int(1, 4),
    maxDeliveries: on(0.5) ? r.int(1, 5) : 0,
    dedupWindowSeconds: on(0.5) ? r.int(1, 20) : 300,
    retry: on(0.5)
      ? { policy: 'fixed', intervalMs: r.int(0, 2000), maxAttempts: null }
      : { policy: 'exponential', minBackoffMs: r.int(50, 500), maxBackoffMs: r.int(500, 4000), multiplier: 2, jitter: r.float() * 0.5, maxAttempts: null, maxRetrySeconds: 600 },
    pullMax: r.int(1, 10),
    ackShare,
    nackShare,
    modifyShare,
    lateAckShare: on(0.5) ? r.float() * 0.3 : 0,
    retryTicks: r.int(15, 40),
    tagged: on(0.5),
    tagShare: r.float(),
    redriveShare: on(0.5) ? r.float() * 0.1 : 0,
    updateShare: on(0.4) ? r.float() * 0.02 : 0,
  };
}

export const names = { topic: 'orders', dlq: 'orders-dlq', sub: 'orders-sub', dlqSub: 'orders-dlq-sub', tagged: 'orders-tagged' } as const;

/** The tagged subscription's filter. */
const wantedTag = 't1';

/** One published body, by the client's name for it (its data). */
interface PublishAttempt {
  data: string;
  dedupId?: string;
  orderingKey?: string;
  delaySeconds?: number;
  tags?: string[];
}

interface DueAck {
  dueTick: number;
  subscription: string;
  kind: 'ack' | 'nack' | 'modify';
  ackId: string;
  ms: number | null;
}

export class BrokerWorkload {
  readonly checker: BrokerChecker;
  private readonly topicConfig: TopicConfig;
  private readonly subConfig: SubscriptionConfig;
  private readonly dlqSubConfig: SubscriptionConfig;
  private readonly taggedConfig: SubscriptionConfig;
  /** Setup steps, in order; each is retried until answered ok. */
  private readonly setup: Command[] = [];
  private setupDone = 0;
  private setupTriedAt = -Infinity;
  private nextData = 1;
  private nextDedup = 1;
  /** Publishes not answered yet, retried under the same dedup ids. */
  private unanswered: { items: PublishAttempt[]; at: number; tries: number; answered: boolean }[] = [];
  private dueAcks: DueAck[] = [];
  /** Client-side: acknowledged publishes (seq on the main topic → the body the client sent). */
  readonly ackedPublishes: { seq: number; data: string; duplicate: boolean; dedupId?: string }[] = [];
  /** Every body a dedup id was sent with. */
  private readonly bodiesByDedup = new Map<string, Set<string>>();
  private drainPull = new Map<string, number>();
  private readonly counts = { published: 0, publishAcked: 0, pulls: 0, pulled: 0, acksSent: 0, nacksSent: 0, retries: 0 };

  constructor(
    private readonly c: Cluster,
    private readonly rng: Prng,
    readonly p: BrokerProfile,
  ) {
    this.topicConfig = { retentionSeconds: 345_600, maxMessageBytes: 1_048_576, dedupWindowSeconds: p.dedupWindowSeconds };
    const deadLetter = p.maxDeliveries > 0 ? { topic: names.dlq, maxDeliveries: p.maxDeliveries } : null;
    this.subConfig = { topic: names.topic, push: null, filter: null, ackDeadlineSeconds: p.ackDeadlineSeconds, retry: p.retry, deadLetter, ordered: p.ordered, startAt: 'earliest' };
    this.dlqSubConfig = { topic: names.dlq, push: null, filter: null, ackDeadlineSeconds: p.ackDeadlineSeconds, retry: p.retry, deadLetter: null, ordered: false, startAt: 'earliest' };
    if (deadLetter) this.setup.push({ type: 'create-topic', name: names.dlq, config: this.topicConfig });
    this.setup.push({ type: 'create-topic', name: names.topic, config: this.topicConfig });
    this.setup.push({ type: 'create-subscription', name: names.sub, config: this.subConfig });
    this.taggedConfig = { ...this.subConfig, filter: { tags: [wantedTag] }, deadLetter: null, ordered: false };
    if (deadLetter) this.setup.push({ type: 'create-subscription', name: names.dlqSub, config: this.dlqSubConfig });
    if (p.tagged) this.setup.push({ type: 'create-subscription', name: names.tagged, config: this.taggedConfig });
    this.checker = new BrokerChecker(deadLetter !== null, p.tagged, c.logging ? (line) => c.log(line) : undefined);
    c.onApplied = (n, index, stamped, reply) => this.checker.applied(n, index, stamped, reply);
  }

  /** What the clients did, and what the log says happened (deliveries, acks, dead-letters). */
  get stats() {
    const k = this.checker;
    const subs = k.subs();
    let redelivered = 0;
    for (const s of subs) for (const t of s.msgs.values()) if (t.deliveries > 1) redelivered++;
    return {
      ...this.counts,
      stored: k.main.lastSeq,
      delivered: subs.reduce((a, s) => a + s.delivered, 0),
      redelivered,
      consumerAcks: subs.reduce((a, s) => a + s.acked, 0),
      deadLettered: k.mainSub.deadLettered,
      redriven: k.redriven,
      brokerEntries: k.entries,
    };
  }

  private get topicReady(): boolean {
    return this.setupDone >= (this.p.maxDeliveries > 0 ? 2 : 1);
  }

  private get subReady(): boolean {
    return this.setupDone >= (this.p.maxDeliveries > 0 ? 3 : 2);
  }

  get setupComplete(): boolean {
    return this.setupDone === this.setup.length;
  }

  private propose(command: Command, onReply?: (reply: Reply) => void): boolean {
    const r = this.c.propose(undefined, undefined, command, onReply && ((reply) => onReply(reply)));
    return r?.result.ok === true;
  }

  /** Once a tick: setup, due acks, retries. */
  tick(): void {
    this.advanceSetup();
    this.sendDueAcks();
    this.retryPublishes();
  }

  /** One client operation: publish, pull, now and then a redrive or a subscription update. */
  operate(): void {
    if (!this.topicReady) return;
    // An operator redrives when the dead-letter count says there is something to bring back.
    if (this.subReady && this.checker.mainSub.deadLetteredSeqs.length > 0 && this.rng.chance(this.p.redriveShare) && !this.p.ordered) {
      this.propose({ type: 'redrive', subscription: names.sub, max: this.rng.int(1, 5) });
      return;
    }
    if (this.subReady && this.rng.chance(this.p.updateShare)) {
      this.update();
      return;
    }
    if (!this.subReady || this.rng.chance(this.p.publishShare)) {
      this.publish();
      return;
    }
    const created = this.setup.slice(0, this.setupDone).flatMap((c) => (c.type === 'create-subscription' ? [c.name] : []));
    const name = created.length > 1 && this.rng.chance(0.3) ? this.rng.pick(created.slice(1)) : names.sub;
    this.pull(name);
  }

  /** Changes the main subscription's ack deadline, or its dead-letter limit (or drops and restores it). */
  private update(): void {
    if (this.p.maxDeliveries > 0 && this.rng.chance(0.7)) {
      const deadLetter = this.rng.chance(0.2) ? null : { topic: names.dlq, maxDeliveries: this.rng.int(1, 5) };
      this.propose({ type: 'update-subscription', name: names.sub, patch: { deadLetter } });
    } else {
      this.propose({ type: 'update-subscription', name: names.sub, patch: { ackDeadlineSeconds: this.rng.int(1, 4) } });
    }
  }

  private advanceSetup(): void {
    if (this.setupComplete || this.c.now - this.setupTriedAt < this.p.retryTicks) return;
    const step = this.setupDone;
    const command = this.setup[step]!;
    const sent = this.propose(command, (reply) => {
      check(reply.ok, `setup ${command.type} ${'name' in command ? command.name : ''} refused: ${JSON.stringify(reply)}`);
      if (this.setupDone === step) {
        this.setupDone++;
        this.setupTriedAt = -Infinity;
      }
    });
    if (sent) this.setupTriedAt = this.c.now;
  }

  private publish(): void {
    const k = this.rng.int(1, this.p.batchMax);
    const items: PublishAttempt[] = [];
    for (let i = 0; i < k; i++) {
      const a: PublishAttempt = { data: `m${this.nextData++}` };
      if (this.rng.chance(this.p.dedupShare)) a.dedupId = `d${this.nextDedup++}`;
      if (this.rng.chance(this.p.orderingKeyShare)) a.orderingKey = this.rng.pick(['k1', 'k2', 'k3']);
      if (this.rng.chance(this.p.delayShare)) a.delaySeconds = this.rng.int(1, 3);
      if (this.p.tagged && this.rng.chance(0.7)) a.tags = this.rng.chance(this.p.tagShare) ? [wantedTag, 'x'] : ['t2'];
      items.push(a);
    }
    this.sendPublish(items, 0);
  }

  private sendPublish(items: PublishAttempt[], tries: number): void {
    const u = { items, at: this.c.now, tries, answered: false };
    for (const a of items) if (a.dedupId !== undefined) addTo(this.bodiesByDedup, a.dedupId, a.data);
    const messages: PublishItem[] = items.map((a) => {
      const m: PublishItem = { data: utf8(a.data), encoding: 'utf8' };
      if (a.dedupId !== undefined) m.dedupId = a.dedupId;
      if (a.orderingKey !== undefined) m.orderingKey = a.orderingKey;
      if (a.delaySeconds !== undefined) m.delaySeconds = a.delaySeconds;
      if (a.tags !== undefined) m.tags = a.tags;
      return m;
    });
    this.counts.published += items.length;
    this.unanswered.push(u);
    this.propose({ type: 'publish', topic: names.topic, messages }, (reply) => {
      u.answered = true;
      check(reply.ok && 'results' in reply, `publish refused: ${JSON.stringify(reply)}`);
      check(reply.results.length === items.length, `publish of ${items.length} answered with ${reply.results.length} results`);
      reply.results.forEach((r, i) => {
        const a = items[i]!;
        this.counts.publishAcked++;
        this.ackedPublishes.push({ seq: r.seq, data: a.data, duplicate: r.duplicate, ...(a.dedupId !== undefined ? { dedupId: a.dedupId } : {}) });
      });
    });
  }

  /** A client that hears nothing sends its dedup'd messages again (same ids, fresh bodies). */
  private retryPublishes(): void {
    const old = this.unanswered;
    this.unanswered = [];
    for (const u of old) {
      if (u.answered) continue;
      if (this.c.now - u.at < this.p.retryTicks) {
        this.unanswered.push(u);
        continue;
      }
      const again = u.items.filter((a) => a.dedupId !== undefined).map((a) => ({ ...a, data: `m${this.nextData++}` }));
      if (again.length > 0 && u.tries < 3) {
        this.counts.retries++;
        this.sendPublish(again, u.tries + 1);
      }
    }
  }

  private pull(subscription: string): void {
    this.counts.pulls++;
    const ackDeadlineMs = this.p.ackDeadlineSeconds * 1000;
    const max = this.rng.int(1, this.p.pullMax);
    this.propose({ type: 'pull', subscription, max, ackDeadlineMs }, (reply) => {
      check(reply.ok && 'deliveries' in reply, `pull refused: ${JSON.stringify(reply)}`);
      const deadlineTicks = ackDeadlineMs / tickMs;
      for (const d of reply.deliveries) {
        this.counts.pulled++;
        const x = this.rng.float();
        const p = this.p;
        if (x < p.ackShare) {
          const late = this.rng.chance(p.lateAckShare);
          const delay = late ? this.rng.int(deadlineTicks - 2, deadlineTicks + 5) : this.rng.int(0, Math.floor(deadlineTicks / 2));
          this.dueAcks.push({ dueTick: this.c.now + delay, subscription, kind: 'ack', ackId: d.ackId, ms: null });
        } else if (x < p.ackShare + p.nackShare) {
          const ms = this.rng.chance(0.5) ? null : this.rng.int(0, 3000);
          this.dueAcks.push({ dueTick: this.c.now + this.rng.int(0, 3), subscription, kind: 'nack', ackId: d.ackId, ms });
        } else if (x < p.ackShare + p.nackShare + p.modifyShare) {
          const ms = this.rng.chance(0.5) ? 0 : this.rng.int(500, 4000);
          this.dueAcks.push({ dueTick: this.c.now + this.rng.int(0, 3), subscription, kind: 'modify', ackId: d.ackId, ms });
        }
      }
    });
  }

  private sendDueAcks(): void {
    if (this.dueAcks.length === 0) return;
    const due = this.dueAcks.filter((a) => a.dueTick <= this.c.now);
    if (due.length === 0) return;
    this.dueAcks = this.dueAcks.filter((a) => a.dueTick > this.c.now);
    const acks = new Map<string, string[]>();
    for (const a of due) {
      if (a.kind === 'ack') {
        addList(acks, a.subscription, a.ackId);
      } else if (a.kind === 'nack') {
        this.counts.nacksSent++;
        // Half the nacks come as a push dispatcher's failed attempts (backoff, Retry-After, give-up).
        if (this.rng.int(0, 1) === 0) this.propose({ type: 'nack', subscription: a.subscription, ackIds: [a.ackId], delayMs: a.ms });
        else this.propose({ type: 'push-failed', subscription: a.subscription, failures: [{ ackId: a.ackId, error: '500', retryAfterMs: a.ms }] });
      } else {
        this.propose({ type: 'modify-ack-deadline', subscription: a.subscription, ackIds: [a.ackId], deadlineMs: a.ms ?? 0 });
      }
    }
    for (const [subscription, ackIds] of acks) {
      this.counts.acksSent += ackIds.length;
      this.propose({ type: 'ack', subscription, ackIds });
    }
  }

  /**
   * The drain, once a tick after healing: finish the setup, then pull everything and ack it at once.
   * True when the leader's subscriptions have nothing left.
   */
  drain(): boolean {
    this.advanceSetup();
    const leader = this.c.leader();
    if (!leader?.core || !this.setupComplete) return false;
    const subs = this.checker.subs().map((s) => s.name);
    let empty = true;
    for (const name of subs) {
      const info = leader.machine.subscriptionInfo(name, this.c.clockMs(leader));
      if (!info) return false; // a new leader still applying
      if (info.backlog === 0) continue;
      empty = false;
      const asked = this.drainPull.get(name);
      if (asked !== undefined && this.c.now - asked < 5) continue;
      this.drainPull.set(name, this.c.now);
      this.propose({ type: 'pull', subscription: name, max: 100, ackDeadlineMs: 10_000 }, (reply) => {
        this.drainPull.delete(name);
        check(reply.ok && 'deliveries' in reply, `pull refused: ${JSON.stringify(reply)}`);
        if (reply.deliveries.length > 0) this.propose({ type: 'ack', subscription: name, ackIds: reply.deliveries.map((d) => d.ackId) });
      });
    }
    return empty;
  }

  /** The end: every acknowledged publish consumed or dead-lettered, and the model agrees with every member's broker. */
  finalCheck(members: SimNode[]): void {
    const k = this.checker;
    for (const a of this.ackedPublishes) {
      const seq = a.seq;
      const m = k.main.seqs.get(seq);
      check(m !== undefined, `acknowledged publish ${a.data} (seq ${seq}) is not in the topic`);
      if (a.duplicate) {
        check(a.dedupId !== undefined && m.dedupId === a.dedupId, `publish ${a.data} acknowledged as a duplicate of seq ${seq}, which holds ${m.data} (dedup id ${m.dedupId})`);
        check(this.bodiesByDedup.get(a.dedupId)?.has(m.data) === true, `duplicate ${a.data} points at seq ${seq} with a body never sent under ${a.dedupId}`);
      } else {
        check(m.data === a.data, `publish ${a.data} acknowledged at seq ${seq}, which holds ${m.data}`);
      }
      const t = k.mainSub.msgs.get(seq);
      check(t !== undefined && (t.ackedAt > 0 || t.deadLetteredAt > 0), `acknowledged publish ${a.data} (seq ${seq}) was never consumed nor dead-lettered (delivered ${t?.deliveries ?? 0} times)`);
    }
    for (const s of k.subs()) {
      for (const [seq, m] of s.topic.seqs) {
        if (!s.wants(m)) continue;
        const t = s.msgs.get(seq);
        check(t !== undefined && (t.ackedAt > 0 || t.deadLetteredAt > 0), `${s.name}: message ${m.data} (seq ${seq} of ${s.topic.name}) was never consumed nor dead-lettered`);
      }
    }
    for (const n of members) {
      const now = this.c.clockMs(n);
      for (const s of k.subs()) {
        const info = n.machine.subscriptionInfo(s.name, now);
        check(info !== undefined, `n${n.id} lacks subscription ${s.name}`);
        check(info.backlog === 0, `n${n.id}: ${s.name} ends with backlog ${info.backlog}`);
        check(info.delivered === s.delivered, `n${n.id}: ${s.name} counts ${info.delivered} deliveries, the log holds ${s.delivered}`);
        check(info.acked === s.acked, `n${n.id}: ${s.name} counts ${info.acked} acks, the log holds ${s.acked}`);
        check(info.deadLettered === s.deadLettered, `n${n.id}: ${s.name} counts ${info.deadLettered} dead-lettered, the model ${s.deadLettered}`);
      }
    }
  }
}

// ---- the checkers ----

interface MessageModel {
  data: string;
  dedupId?: string;
  orderingKey?: string;
  tags?: string[];
  visibleAtMs: number;
}

class TopicModel {
  id = 0;
  lastSeq = 0;
  readonly seqs = new Map<number, MessageModel>();
  readonly seqByData = new Map<string, number>();
  /** Per ordering key, its seqs in order. */
  readonly keys = new Map<string, number[]>();
  /** Per dedup id: the stamped time it was last stored at. */
  readonly dedupStoredAtMs = new Map<string, number>();

  /** `uniqueBodies`: the clients never send a body twice (a dead-letter topic may get a redriven one again). */
  constructor(
    readonly name: string,
    private readonly uniqueBodies: boolean,
  ) {}

  add(seq: number, m: MessageModel): void {
    check(seq === this.lastSeq + 1, `topic ${this.name}: seq ${seq} follows ${this.lastSeq}`);
    if (this.uniqueBodies) check(!this.seqByData.has(m.data), `topic ${this.name}: body ${m.data} stored twice (seqs ${this.seqByData.get(m.data)} and ${seq})`);
    this.lastSeq = seq;
    this.seqs.set(seq, m);
    this.seqByData.set(m.data, seq);
    if (m.orderingKey !== undefined) {
      let k = this.keys.get(m.orderingKey);
      if (!k) this.keys.set(m.orderingKey, (k = []));
      k.push(seq);
    }
  }
}

interface MessageTrack {
  /** Deliveries since it was published or last redriven. */
  deliveries: number;
  /** The current lease: its token (the pull's index) and deadline. */
  lease: { token: number; deadlineMs: number } | null;
  /** Not to be delivered before (a nack's delay, a released lease, a redrive). */
  notBeforeMs: number;
  ackedAt: number;
  deadLetteredAt: number;
}

class SubscriptionModel {
  readonly msgs = new Map<number, MessageTrack>();
  /** Per ordering key: how many of its seqs, from the front, are done. */
  readonly keyDone = new Map<string, number>();
  /** Dead-lettered and not redriven, oldest first (the machine's redrive list). */
  deadLetteredSeqs: number[] = [];
  delivered = 0;
  acked = 0;
  deadLettered = 0;
  config: SubscriptionConfig | undefined;

  constructor(
    readonly name: string,
    readonly topic: TopicModel,
    private readonly tag?: string,
  ) {}

  wants(m: MessageModel): boolean {
    return this.tag === undefined || (m.tags ?? []).includes(this.tag);
  }

  track(seq: number): MessageTrack {
    let t = this.msgs.get(seq);
    if (!t) this.msgs.set(seq, (t = { deliveries: 0, lease: null, notBeforeMs: 0, ackedAt: 0, deadLetteredAt: 0 }));
    return t;
  }

  done(t: MessageTrack): boolean {
    return t.ackedAt > 0 || t.deadLetteredAt > 0;
  }

  /** The first seq of a key that is not done yet. */
  keyHead(key: string): number | undefined {
    const seqs = this.topic.keys.get(key) ?? [];
    let i = this.keyDone.get(key) ?? 0;
    for (; i < seqs.length; i++) {
      const t = this.msgs.get(seqs[i]!);
      if (!t || !this.done(t)) break;
    }
    this.keyDone.set(key, i);
    return seqs[i];
  }
}

export class BrokerChecker {
  readonly main = new TopicModel(names.topic, true);
  readonly dlq = new TopicModel(names.dlq, false);
  readonly mainSub = new SubscriptionModel(names.sub, this.main);
  readonly dlqSub: SubscriptionModel | undefined;
  readonly taggedSub: SubscriptionModel | undefined;
  entries = 0;
  redriven = 0;

  constructor(
    withDlq: boolean,
    withTagged: boolean,
    private readonly log?: (line: string) => void,
  ) {
    this.dlqSub = withDlq ? new SubscriptionModel(names.dlqSub, this.dlq) : undefined;
    this.taggedSub = withTagged ? new SubscriptionModel(names.tagged, this.main, wantedTag) : undefined;
  }

  subs(): SubscriptionModel[] {
    return [this.mainSub, ...(this.dlqSub ? [this.dlqSub] : []), ...(this.taggedSub ? [this.taggedSub] : [])];
  }

  private topic(name: string): TopicModel | undefined {
    return name === names.topic ? this.main : name === names.dlq ? this.dlq : undefined;
  }

  private sub(name: string): SubscriptionModel | undefined {
    return this.subs().find((s) => s.name === name);
  }

  /** One committed index, in log order, with the reply and the state of the first node that applied it. */
  applied(n: SimNode, index: number, stamped: StampedCommand, reply: Reply): void {
    this.entries++;
    const c = stamped.command;
    const nowMs = stamped.nowMs;
    const at = `@${index} (${c.type}, n${n.id})`;
    if (this.log) this.log(`broker @${index} now=${nowMs} ${describeCommand(c)} -> ${describeReply(reply)}`);
    switch (c.type) {
      case 'create-topic': {
        const t = this.topic(c.name);
        if (t && reply.ok && 'created' in reply && reply.created) t.id = index;
        return;
      }
      case 'create-subscription': {
        const s = this.sub(c.name);
        if (s && reply.ok && 'created' in reply && reply.created) s.config = c.config;
        return;
      }
      case 'update-subscription': {
        const s = this.sub(c.name);
        if (s?.config && reply.ok) s.config = { ...s.config, ...c.patch };
        return;
      }
      case 'publish': {
        const t = this.topic(c.topic);
        if (!t || !reply.ok) return;
        check('results' in reply, `publish answered without results ${at}`);
        const windowMs = n.machine.topicConfig(c.topic)!.dedupWindowSeconds * 1000;
        reply.results.forEach((r, i) => {
          const item = c.messages[i]!;
          const data = text(item.data);
          if (item.dedupId !== undefined) {
            const storedAt = t.dedupStoredAtMs.get(item.dedupId);
            const expectDuplicate = storedAt !== undefined && storedAt + windowMs > nowMs;
            check(r.duplicate === expectDuplicate, `dedup: ${data} (id ${item.dedupId}, last stored at ${storedAt}, window ${windowMs} ms) is ${r.duplicate ? '' : 'not '}a duplicate at ${nowMs} ${at}`);
          } else {
            check(!r.duplicate, `${data} without a dedup id answered as a duplicate ${at}`);
          }
          if (r.duplicate) {
            const m = t.seqs.get(r.seq);
            check(m !== undefined && m.dedupId === item.dedupId, `duplicate ${data} (id ${item.dedupId}) names seq ${r.seq}, published under ${m?.dedupId} ${at}`);
            return;
          }
          const stored = n.store.get(t.id, r.seq);
          check(stored !== undefined && text(stored.data) === data, `${data} answered with seq ${r.seq}, which holds ${stored ? text(stored.data) : 'nothing'} ${at}`);
          check(stored.visibleAtMs === stored.publishTimeMs + (item.delaySeconds ?? 0) * 1000, `seq ${r.seq} visible at ${stored.visibleAtMs}, published ${stored.publishTimeMs} with delay ${item.delaySeconds}`);
          const m: MessageModel = { data, visibleAtMs: stored.visibleAtMs };
          if (item.dedupId !== undefined) {
            m.dedupId = item.dedupId;
            t.dedupStoredAtMs.set(item.dedupId, nowMs);
          }
          if (item.orderingKey !== undefined) m.orderingKey = item.orderingKey;
          if (item.tags !== undefined) m.tags = item.tags;
          t.add(r.seq, m);
        });
        return;
      }
      case 'pull': {
        const s = this.sub(c.subscription);
        if (!s || !reply.ok) return;
        check('deliveries' in reply, `pull answered without deliveries ${at}`);
        if (s === this.mainSub && this.dlqSub) this.deadLettered(n, index, nowMs);
        check(reply.deliveries.length <= c.max, `pull of ${c.max} answered with ${reply.deliveries.length} ${at}`);
        for (const d of reply.deliveries) this.delivered(s, d, index, nowMs, c.ackDeadlineMs, at);
        return;
      }
      case 'redrive': {
        const s = this.sub(c.subscription);
        if (!s || !reply.ok) return;
        check('redriven' in reply, `redrive answered without a count ${at}`);
        // Nothing is lost to retention or a seek here, and a listed seq is never pending: the first `max` come back.
        const back = s.deadLetteredSeqs.splice(0, c.max);
        check(reply.redriven === back.length, `redrive of ${c.max} brought back ${reply.redriven}, the model ${back.length} (${back.join(',')}) ${at}`);
        for (const seq of back) {
          const t = s.track(seq);
          check(t.deadLetteredAt > 0 && t.ackedAt === 0, `redrive brings back seq ${seq}, which is not dead-lettered ${at}`);
          t.deadLetteredAt = 0;
          t.deliveries = 0;
          t.lease = null;
          t.notBeforeMs = nowMs;
        }
        s.deadLettered = Math.max(0, s.deadLettered - back.length);
        this.redriven += back.length;
        return;
      }
      case 'ack':
      case 'nack':
      case 'push-failed':
      case 'modify-ack-deadline': {
        const s = this.sub(c.subscription);
        if (!s || !reply.ok) return;
        check('invalid' in reply, `${c.type} answered without invalid ${at}`);
        const invalid = new Set(reply.invalid);
        let count = 0;
        const ackIds = c.type === 'push-failed' ? c.failures.map((f) => f.ackId) : c.ackIds;
        for (const [i, ackId] of ackIds.entries()) {
          const parsed = parseAckId(ackId);
          const t = parsed ? s.msgs.get(parsed.seq) : undefined;
          const modelValid = parsed !== undefined && t !== undefined && !s.done(t) && t.lease !== null && t.lease.token === parsed.token && t.lease.deadlineMs > nowMs;
          const valid = !invalid.has(ackId);
          check(
            valid === modelValid,
            `${c.type} of ${ackId} on ${s.name} answered ${valid ? 'ok' : 'invalid'}, the model says ${modelValid ? 'valid' : 'invalid'} (lease ${JSON.stringify(t?.lease)}, now ${nowMs}, acked at ${t?.ackedAt}, dead-lettered at ${t?.deadLetteredAt}) ${at}`,
          );
          if (!valid || !t) continue;
          count++;
          if (c.type === 'ack') {
            t.ackedAt = index;
            t.lease = null;
            s.acked++;
          } else if (c.type === 'nack') {
            t.lease = null;
            t.notBeforeMs = nowMs + (c.delayMs ?? 0);
          } else if (c.type === 'push-failed') {
            // Retries are never spent here (maxAttempts null, maxRetrySeconds past the run): it waits.
            const retryAfterMs = c.failures[i]!.retryAfterMs;
            t.lease = null;
            t.notBeforeMs = nowMs + (retryAfterMs === null ? 0 : Math.min(retryAfterMs, resolveRetryPolicy(s.config!.retry).maxBackoffMs));
          } else if (c.deadlineMs === 0) {
            t.lease = null;
            t.notBeforeMs = nowMs;
          } else {
            t.lease!.deadlineMs = nowMs + c.deadlineMs;
          }
        }
        check('count' in reply && reply.count === count, `${c.type} answered count ${'count' in reply ? reply.count : '?'}, the model ${count} ${at}`);
        return;
      }
      default:
        return;
    }
  }

  /** Copies the main subscription dead-lettered in this pull: they appear at the end of the DLQ topic. */
  private deadLettered(n: SimNode, index: number, nowMs: number): void {
    const info = n.machine.topicInfo(names.dlq);
    if (!info) return;
    const s = this.mainSub;
    const maxDeliveries = s.config?.deadLetter?.maxDeliveries;
    for (let seq = this.dlq.lastSeq + 1; seq <= info.lastSeq; seq++) {
      const m = n.store.get(this.dlq.id, seq);
      check(m !== undefined, `dead-letter copy ${seq} missing on n${n.id} @${index}`);
      const data = text(m.data);
      const source = this.main.seqByData.get(data);
      check(source !== undefined, `dead-letter copy ${seq} holds ${data}, not a message of ${names.topic} @${index}`);
      const t = s.track(source);
      check(!s.done(t), `seq ${source} dead-lettered @${index}, but it was acked @${t.ackedAt} / dead-lettered @${t.deadLetteredAt}`);
      check(maxDeliveries !== undefined && t.deliveries >= maxDeliveries, `seq ${source} dead-lettered @${index} after ${t.deliveries} deliveries (maxDeliveries ${maxDeliveries})`);
      check(t.lease === null || t.lease.deadlineMs <= nowMs, `seq ${source} dead-lettered @${index} while leased until ${t.lease?.deadlineMs} (now ${nowMs})`);
      const attrs = m.attributes ?? {};
      check(attrs['herald-source-subscription'] === names.sub, `dead-letter copy ${seq} names source ${attrs['herald-source-subscription']}`);
      check(attrs['herald-delivery-attempts'] === String(t.deliveries), `dead-letter copy ${seq} says ${attrs['herald-delivery-attempts']} attempts, the log holds ${t.deliveries}`);
      const src = this.main.seqs.get(source)!;
      check(m.orderingKey === src.orderingKey, `dead-letter copy ${seq} lost its ordering key`);
      check(JSON.stringify(m.tags) === JSON.stringify(src.tags), `dead-letter copy ${seq} lost its tags`);
      t.deadLetteredAt = index;
      t.lease = null;
      s.deadLettered++;
      s.deadLetteredSeqs.push(source);
      const copy: MessageModel = { data, visibleAtMs: m.visibleAtMs };
      if (m.orderingKey !== undefined) copy.orderingKey = m.orderingKey;
      if (m.tags !== undefined) copy.tags = m.tags;
      this.dlq.add(seq, copy);
    }
  }

  private delivered(s: SubscriptionModel, d: Delivery, index: number, nowMs: number, ackDeadlineMs: number, at: string): void {
    const seq = d.message.seq;
    const m = s.topic.seqs.get(seq);
    check(m !== undefined, `${s.name} delivers seq ${seq}, which the log never stored ${at}`);
    const data = text(d.message.data);
    check(data === m.data, `${s.name} delivers ${data} as seq ${seq}, which holds ${m.data} ${at}`);
    check(s.wants(m), `${s.name} delivers seq ${seq} (tags ${JSON.stringify(m.tags)}), which its filter excludes ${at}`);
    check(d.topicId === s.topic.id, `${s.name} delivers seq ${seq} of topic ${d.topicId}, not ${s.topic.id} ${at}`);
    const t = s.track(seq);
    check(t.ackedAt === 0, `acked into the void: ${s.name} delivers seq ${seq} (${data}) again, after an ok ack @${t.ackedAt} ${at}`);
    check(t.deadLetteredAt === 0, `${s.name} delivers seq ${seq} (${data}) after dead-lettering it @${t.deadLetteredAt} ${at}`);
    check(d.attempt === t.deliveries + 1, `${s.name} delivers seq ${seq} as attempt ${d.attempt} after ${t.deliveries} deliveries ${at}`);
    check(d.ackId === formatAckId(seq, index), `${s.name} delivers seq ${seq} with ackId ${d.ackId} ${at}`);
    // (Only the first time: a redelivery stamped by a leader whose clock runs behind may come earlier.)
    if (t.deliveries === 0 && t.notBeforeMs === 0) check(nowMs >= m.visibleAtMs, `${s.name} delivers seq ${seq} at ${nowMs}, before it is visible at ${m.visibleAtMs} ${at}`);
    if (t.lease) check(nowMs >= t.lease.deadlineMs, `${s.name} redelivers seq ${seq} at ${nowMs}, its lease (token ${t.lease.token}) runs until ${t.lease.deadlineMs} ${at}`);
    else check(nowMs >= t.notBeforeMs, `${s.name} redelivers seq ${seq} at ${nowMs}, before ${t.notBeforeMs} (nack delay, release or redrive) ${at}`);
    const dl = s.config?.deadLetter;
    if (dl) check(d.attempt <= dl.maxDeliveries, `${s.name} delivers seq ${seq} a ${d.attempt}th time (maxDeliveries ${dl.maxDeliveries}) ${at}`);
    if (s.config?.ordered && m.orderingKey !== undefined) {
      const head = s.keyHead(m.orderingKey);
      check(head === seq, `ordering: ${s.name} delivers seq ${seq} of key ${m.orderingKey}, but seq ${head} of that key is not done ${at}`);
    }
    t.deliveries++;
    t.lease = { token: index, deadlineMs: nowMs + ackDeadlineMs };
    s.delivered++;
  }
}

function addTo(map: Map<string, Set<string>>, key: string, value: string): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

function addList(map: Map<string, string[]>, key: string, value: string): void {
  let list = map.get(key);
  if (!list) map.set(key, (list = []));
  list.push(value);
}

function describeCommand(c: StampedCommand['command']): string {
  switch (c.type) {
    case 'publish':
      return `publish ${c.topic} [${c.messages.map((m) => `${text(m.data)}${m.dedupId ? ` id=${m.dedupId}` : ''}${m.orderingKey ? ` key=${m.orderingKey}` : ''}${m.delaySeconds ? ` delay=${m.delaySeconds}s` : ''}`).join(', ')}]`;
    case 'pull':
      return `pull ${c.subscription} max=${c.max} deadline=${c.ackDeadlineMs}`;
    case 'ack':
    case 'nack':
    case 'modify-ack-deadline':
      return `${c.type} ${c.subscription} [${c.ackIds.join(' ')}]${c.type === 'nack' ? ` delay=${c.delayMs}` : c.type === 'modify-ack-deadline' ? ` deadline=${c.deadlineMs}` : ''}`;
    case 'push-failed':
      return `push-failed ${c.subscription} [${c.failures.map((f) => `${f.ackId} ${f.error} retry-after=${f.retryAfterMs}`).join(', ')}]`;
    default:
      return c.type + ('name' in c ? ` ${c.name}` : '');
  }
}

function describeReply(r: Reply): string {
  if (!r.ok) return `${r.code}`;
  if ('results' in r) return `[${r.results.map((x) => `${x.seq}${x.duplicate ? ' dup' : ''}`).join(', ')}]`;
  if ('deliveries' in r) return `[${r.deliveries.map((d) => `${d.message.seq}:${text(d.message.data)} #${d.attempt} ${d.ackId} visible=${d.message.visibleAtMs}`).join(', ')}]`;
  if ('invalid' in r) return `count=${r.count}${r.invalid.length ? ` invalid=[${r.invalid.join(' ')}]` : ''}`;
  if ('redriven' in r) return `redriven=${r.redriven}`;
  if ('created' in r) return `created=${r.created}`;
  return 'ok';
}
