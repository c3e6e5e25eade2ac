/**
 * The broker state machine (Ra style): `apply(command, index)` changes the state and returns a reply
 * for the proposer and effects for the leader to carry out. It is deterministic: time comes stamped
 * in the command, jitter is derived from the message, message bodies go through the injected store.
 * Followers apply the same commands and throw the replies and effects away.
 */
import { assert } from '../assert.js';
import { limits } from '../limits.js';
import { hash01, resolveRetryPolicy, retryDelayMs } from './backoff.js';
import type { Command, PublishItem, PushFailure, StampedCommand, SubscriptionPatch } from './commands.js';
import { SubscriptionState, type PendingRecord, type SubscriptionSnapshot } from './subscription.js';
import type { TokenRecord } from './tokens.js';
import { messageId, type MessageStore, type StoredMessage, type SubscriptionConfig, type TopicConfig } from './types.js';

export type BrokerErrorCode =
  | 'InvalidRequest'
  | 'TopicNotFound'
  | 'SubscriptionNotFound'
  | 'AlreadyExists'
  | 'PayloadTooLarge'
  | 'NotFound'
  | 'Unavailable';

/** An expected refusal: a value, not a throw. The edge maps `code` to the HTTP status. */
export interface Refusal {
  ok: false;
  code: BrokerErrorCode;
  message: string;
}

export interface PublishResult {
  id: string;
  seq: number;
  duplicate: boolean;
}

export interface Delivery {
  topicId: number;
  message: StoredMessage;
  attempt: number;
  ackId: string;
}

export type Reply =
  | Refusal
  | { ok: true; created: boolean }
  | { ok: true }
  | { ok: true; results: PublishResult[] }
  | { ok: true; deliveries: Delivery[] }
  | { ok: true; count: number; invalid: string[] }
  | { ok: true; redriven: number };

/**
 * What the driver passes on after an apply. `available` (leader only): the subscription may have
 * messages to hand out. `published` (every node): a topic's log grew, for tails reading it.
 */
export type Effect = { type: 'available'; subscription: string } | { type: 'published'; topic: string };

export interface ApplyResult {
  reply: Reply;
  effects: Effect[];
}

interface TopicState {
  id: number;
  name: string;
  config: TopicConfig;
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  lastPublishTimeMs: number;
  /** dedupId → seq and expiry, in insertion (hence expiry) order. */
  dedup: Map<string, { seq: number; expiresAtMs: number }>;
  subscriptions: Set<string>;
}

export interface BrokerSnapshot {
  version: 1;
  topics: {
    id: number;
    name: string;
    config: TopicConfig;
    firstSeq: number;
    lastSeq: number;
    bytes: number;
    lastPublishTimeMs: number;
    dedup: [string, number, number][];
  }[];
  subscriptions: (SubscriptionSnapshot & { topicName: string })[];
  tokens?: TokenRecord[];
}

export interface TopicInfo {
  name: string;
  config: TopicConfig;
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  subscriptions: number;
}

export interface SubscriptionInfo {
  name: string;
  config: SubscriptionConfig;
  backlog: number;
  inFlight: number;
  oldestUnackedAgeSeconds: number;
  deadLettered: number;
  delivered: number;
  acked: number;
  /** Push stopped by a 410 until resumed. */
  pushPaused: boolean;
}

const refuse = (code: BrokerErrorCode, message: string): Refusal => ({ ok: false, code, message });
const OK = { ok: true } as const;

export class BrokerMachine {
  private readonly topics = new Map<string, TopicState>();
  private readonly subs = new Map<string, SubscriptionState>();
  private readonly tokens = new Map<string, TokenRecord>();
  private effects: Effect[] = [];

  constructor(private readonly store: MessageStore) {}

  apply(stamped: StampedCommand, index: number): ApplyResult {
    this.effects = [];
    const reply = this.dispatch(stamped.command, stamped.nowMs, index);
    return { reply, effects: this.effects };
  }

  private dispatch(c: Command, nowMs: number, index: number): Reply {
    switch (c.type) {
      case 'create-topic':
        return this.createTopic(c.name, c.config, index);
      case 'update-topic': {
        const t = this.topics.get(c.name);
        if (!t) return refuse('TopicNotFound', `topic ${c.name} not found`);
        t.config = { ...t.config, ...c.patch };
        return OK;
      }
      case 'delete-topic':
        return this.deleteTopic(c.name);
      case 'create-subscription':
        return this.createSubscription(c.name, c.config, index, c.secret);
      case 'update-subscription':
        return this.updateSubscription(c.name, c.patch, c.secret);
      case 'delete-subscription': {
        const s = this.subs.get(c.name);
        if (!s) return refuse('SubscriptionNotFound', `subscription ${c.name} not found`);
        this.removeSubscription(s);
        return OK;
      }
      case 'create-queue':
        return this.createQueue(c.name, c.topic, c.subscription, index, c.secret);
      case 'publish':
        return this.publish(c.topic, c.messages, nowMs);
      case 'pull':
        return this.pull(c.subscription, c.max, c.ackDeadlineMs, nowMs, index);
      case 'push-failed':
        return this.pushFailed(c.subscription, c.failures, nowMs);
      case 'rotate-secret': {
        const s = this.subs.get(c.subscription);
        if (!s) return refuse('SubscriptionNotFound', `subscription ${c.subscription} not found`);
        if (!s.config.push || !s.secrets) return refuse('InvalidRequest', `subscription ${c.subscription} has no push`);
        s.secrets = { current: c.secret, previous: s.secrets.current, previousUntilMs: nowMs + limits.pushSecretOverlapMs };
        return OK;
      }
      case 'pause-push':
      case 'resume-push': {
        const s = this.subs.get(c.subscription);
        if (!s) return refuse('SubscriptionNotFound', `subscription ${c.subscription} not found`);
        if (!s.config.push) return refuse('InvalidRequest', `subscription ${c.subscription} has no push`);
        s.pushPaused = c.type === 'pause-push';
        if (!s.pushPaused) this.wake(s);
        return OK;
      }
      case 'ack':
        return this.withLeases(c.subscription, c.ackIds, nowMs, (s, r) => {
          s.removeRecord(r);
          s.acked++;
          // The next message of its ordering key may go now.
          if (r.orderingKey !== undefined) this.wake(s);
        });
      case 'nack':
        return this.withLeases(c.subscription, c.ackIds, nowMs, (s, r) => {
          const delayMs = c.delayMs ?? this.backoffMs(s, r);
          r.leaseToken = 0;
          r.lastError = 'nacked';
          s.reschedule(r, nowMs + delayMs);
          this.wake(s);
        });
      case 'modify-ack-deadline':
        return this.withLeases(c.subscription, c.ackIds, nowMs, (s, r) => {
          if (c.deadlineMs === 0) {
            r.leaseToken = 0;
            r.lastError = 'released';
            this.wake(s);
          }
          s.reschedule(r, nowMs + c.deadlineMs);
        });
      case 'seek':
        return this.seek(c.subscription, c.target);
      case 'redrive':
        return this.redrive(c.subscription, c.max, nowMs);
      case 'expire':
        this.expire(nowMs);
        return OK;
      case 'create-token':
        if (this.tokens.has(c.token.id)) return refuse('AlreadyExists', `token ${c.token.id} exists`);
        if (this.tokens.size >= limits.tokensMax) return refuse('InvalidRequest', `at most ${limits.tokensMax} tokens`);
        this.tokens.set(c.token.id, { ...c.token, createdAtMs: nowMs });
        return { ok: true, created: true };
      case 'revoke-token':
        if (!this.tokens.delete(c.id)) return refuse('NotFound', `token ${c.id} not found`);
        return OK;
    }
  }

  // ---- topics ----

  private createTopic(name: string, config: TopicConfig, index: number): Reply {
    const existing = this.topics.get(name);
    if (existing) {
      return sameJson(existing.config, config)
        ? { ok: true, created: false }
        : refuse('AlreadyExists', `topic ${name} exists with a different configuration`);
    }
    if (this.topics.size >= limits.topicsMax) return refuse('InvalidRequest', `at most ${limits.topicsMax} topics`);
    this.topics.set(name, {
      id: index,
      name,
      config,
      firstSeq: 1,
      lastSeq: 0,
      bytes: 0,
      lastPublishTimeMs: 0,
      dedup: new Map(),
      subscriptions: new Set(),
    });
    return { ok: true, created: true };
  }

  private deleteTopic(name: string): Reply {
    const t = this.topics.get(name);
    if (!t) return refuse('TopicNotFound', `topic ${name} not found`);
    for (const subName of [...t.subscriptions]) this.removeSubscription(this.subs.get(subName)!);
    this.topics.delete(name);
    this.store.dropTopic(t.id);
    return OK;
  }

  private publish(topicName: string, items: PublishItem[], nowMs: number): Reply {
    const t = this.topics.get(topicName);
    if (!t) return refuse('TopicNotFound', `topic ${topicName} not found`);
    for (const item of items) {
      if (item.data.length > t.config.maxMessageBytes) {
        return refuse('PayloadTooLarge', `a message is over the topic's maxMessageBytes (${t.config.maxMessageBytes})`);
      }
    }
    this.expireDedup(t, nowMs);
    const results: PublishResult[] = new Array(items.length);
    const subs = [...t.subscriptions].map((n) => this.subs.get(n)!);
    const woken = new Set<SubscriptionState>();
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (item.dedupId !== undefined) {
        const seen = t.dedup.get(item.dedupId);
        if (seen && seen.expiresAtMs > nowMs) {
          results[i] = { id: messageId(t.id, seen.seq), seq: seen.seq, duplicate: true };
          continue;
        }
      }
      const message = this.append(t, item, nowMs);
      if (item.dedupId !== undefined) {
        t.dedup.delete(item.dedupId);
        t.dedup.set(item.dedupId, { seq: message.seq, expiresAtMs: nowMs + t.config.dedupWindowSeconds * 1000 });
        if (t.dedup.size > limits.dedupIdsPerTopicMax) t.dedup.delete(t.dedup.keys().next().value!);
      }
      for (const s of subs) {
        if (message.seq >= s.cursor && s.wants(message)) {
          s.ahead++;
          woken.add(s);
        }
      }
      results[i] = { id: messageId(t.id, message.seq), seq: message.seq, duplicate: false };
    }
    for (const s of woken) this.wake(s);
    this.effects.push({ type: 'published', topic: t.name });
    return { ok: true, results };
  }

  /** Appends one message to a topic's log. Publish times never go backwards within a topic, so
   * seq order is time order and seek-by-time can binary-search. */
  private append(t: TopicState, item: Omit<PublishItem, 'dedupId'>, nowMs: number): StoredMessage {
    const publishTimeMs = Math.max(nowMs, t.lastPublishTimeMs);
    t.lastPublishTimeMs = publishTimeMs;
    const message: StoredMessage = {
      seq: ++t.lastSeq,
      publishTimeMs,
      visibleAtMs: publishTimeMs + (item.delaySeconds ?? 0) * 1000,
      data: item.data,
      encoding: item.encoding,
    };
    if (item.attributes !== undefined) message.attributes = item.attributes;
    if (item.tags !== undefined) message.tags = item.tags;
    if (item.routingKey !== undefined) message.routingKey = item.routingKey;
    if (item.orderingKey !== undefined) message.orderingKey = item.orderingKey;
    if (item.jsonSafe) message.jsonSafe = true;
    this.store.put(t.id, message);
    t.bytes += item.data.length;
    return message;
  }

  private expireDedup(t: TopicState, nowMs: number): void {
    for (const [id, entry] of t.dedup) {
      if (entry.expiresAtMs > nowMs) break;
      t.dedup.delete(id);
    }
  }

  /** One bounded step of retention over every topic. */
  private expire(nowMs: number): void {
    for (const t of this.topics.values()) {
      const cutoffMs = nowMs - t.config.retentionSeconds * 1000;
      const removed: StoredMessage[] = [];
      while (removed.length < limits.retentionDeleteBatchMax && t.firstSeq <= t.lastSeq) {
        const m = this.store.get(t.id, t.firstSeq + removed.length);
        if (!m || m.publishTimeMs >= cutoffMs) break;
        removed.push(m);
        if (t.firstSeq + removed.length > t.lastSeq) break;
      }
      if (removed.length === 0) continue;
      const newFirst = t.firstSeq + removed.length;
      this.store.deleteRange(t.id, t.firstSeq, newFirst);
      for (const m of removed) t.bytes -= m.data.length;
      for (const subName of t.subscriptions) {
        const s = this.subs.get(subName)!;
        if (s.cursor < newFirst) {
          for (const m of removed) if (m.seq >= s.cursor && s.wants(m)) s.ahead--;
          s.cursor = newFirst;
        }
        for (const r of [...s.pending.values()]) if (r.seq < newFirst) s.removeRecord(r);
      }
      t.firstSeq = newFirst;
    }
  }

  /** Whether a retention step would remove anything now (the leader asks before proposing one). */
  expireDue(nowMs: number): boolean {
    for (const t of this.topics.values()) {
      if (t.firstSeq > t.lastSeq) continue;
      const m = this.store.get(t.id, t.firstSeq);
      if (m && m.publishTimeMs < nowMs - t.config.retentionSeconds * 1000) return true;
    }
    return false;
  }

  /** The first seq published at or after `timeMs` (lastSeq + 1 if none). */
  private seqAtTime(t: TopicState, timeMs: number): number {
    let lo = t.firstSeq;
    let hi = t.lastSeq + 1;
    while (lo < hi) {
      const mid = lo + Math.floor((hi - lo) / 2);
      const m = this.store.get(t.id, mid);
      if (m && m.publishTimeMs < timeMs) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Messages from `fromSeq` on that the subscription wants. Reads them when a filter or start time
   * must be checked; that happens only on create, seek and filter changes. */
  private countMatching(t: TopicState, s: SubscriptionState, fromSeq: number): number {
    if (fromSeq > t.lastSeq) return 0;
    if (s.config.filter === null && s.notBeforeMs === 0) return t.lastSeq - fromSeq + 1;
    let n = 0;
    for (let seq = fromSeq; seq <= t.lastSeq; seq++) {
      const m = this.store.get(t.id, seq);
      if (m && s.wants(m)) n++;
    }
    return n;
  }

  // ---- subscriptions ----

  private createSubscription(name: string, config: SubscriptionConfig, index: number, secret: string | undefined): Reply {
    const existing = this.subs.get(name);
    if (existing) {
      return sameJson(existing.config, config)
        ? { ok: true, created: false }
        : refuse('AlreadyExists', `subscription ${name} exists with a different configuration`);
    }
    const t = this.topics.get(config.topic);
    if (!t) return refuse('TopicNotFound', `topic ${config.topic} not found`);
    if (config.deadLetter && !this.topics.has(config.deadLetter.topic)) {
      return refuse('TopicNotFound', `dead-letter topic ${config.deadLetter.topic} not found`);
    }
    if (this.subs.size >= limits.subscriptionsMax) {
      return refuse('InvalidRequest', `at most ${limits.subscriptionsMax} subscriptions`);
    }
    const start = config.startAt;
    const s = new SubscriptionState(index, name, config, t.id, t.lastSeq + 1);
    if (config.push && secret !== undefined) s.secrets = { current: secret };
    if (start === 'earliest') this.moveCursor(t, s, { seq: t.firstSeq });
    else if (start === 'latest') this.moveCursor(t, s, { seq: t.lastSeq + 1 });
    else if ('seq' in start) this.moveCursor(t, s, { seq: start.seq });
    else this.moveCursor(t, s, { timeMs: start.timeMs });
    this.subs.set(name, s);
    t.subscriptions.add(name);
    if (s.ahead > 0) this.wake(s);
    return { ok: true, created: true };
  }

  private createQueue(name: string, topic: TopicConfig, sub: SubscriptionConfig, index: number, secret: string | undefined): Reply {
    const t = this.topics.get(name);
    const s = this.subs.get(name);
    if (t && !sameJson(t.config, topic)) return refuse('AlreadyExists', `topic ${name} exists with a different configuration`);
    if (s && !sameJson(s.config, sub)) return refuse('AlreadyExists', `subscription ${name} exists with a different configuration`);
    if (t && s) return { ok: true, created: false };
    if (sub.deadLetter && sub.deadLetter.topic !== name && !this.topics.has(sub.deadLetter.topic)) {
      return refuse('TopicNotFound', `dead-letter topic ${sub.deadLetter.topic} not found`);
    }
    if (!t) this.createTopic(name, topic, index);
    if (!s) {
      const r = this.createSubscription(name, sub, index, secret);
      if (!r.ok) return r;
    }
    return { ok: true, created: true };
  }

  private updateSubscription(name: string, patch: SubscriptionPatch, secret: string | undefined): Reply {
    const s = this.subs.get(name);
    if (!s) return refuse('SubscriptionNotFound', `subscription ${name} not found`);
    if (patch.deadLetter && !this.topics.has(patch.deadLetter.topic)) {
      return refuse('TopicNotFound', `dead-letter topic ${patch.deadLetter.topic} not found`);
    }
    const filterChanged = patch.filter !== undefined && !sameJson(patch.filter, s.config.filter);
    // A changed push target is a fresh start for a push that a 410 stopped.
    if (patch.push !== undefined && !sameJson(patch.push, s.config.push)) s.pushPaused = false;
    if (patch.push && !s.secrets && secret !== undefined) s.secrets = { current: secret };
    s.setConfig({ ...s.config, ...patch });
    if (filterChanged) {
      const t = this.topics.get(s.config.topic)!;
      s.ahead = this.countMatching(t, s, s.cursor);
      this.wake(s);
    }
    return OK;
  }

  private removeSubscription(s: SubscriptionState): void {
    this.subs.delete(s.name);
    this.topics.get(s.config.topic)?.subscriptions.delete(s.name);
  }

  /**
   * Hands out up to `max` messages under a lease that ends at now + ackDeadlineMs: first the records
   * whose time has come (expired leases, nacks, delays), then new messages from the cursor. A record
   * that has been delivered maxDeliveries times is dead-lettered instead.
   */
  private pull(name: string, max: number, ackDeadlineMs: number, nowMs: number, index: number): Reply {
    const s = this.subs.get(name);
    if (!s) return refuse('SubscriptionNotFound', `subscription ${name} not found`);
    const t = this.topics.get(s.config.topic)!;
    const deadlineMs = nowMs + ackDeadlineMs;
    const deliveries: Delivery[] = [];

    for (let r = s.popDue(nowMs); r; r = deliveries.length < max ? s.popDue(nowMs) : undefined) {
      const m = this.store.get(t.id, r.seq);
      assert(m !== undefined, `pending seq ${r.seq} of ${name} has no message`);
      if (r.attempt > 0 && r.leaseToken !== 0) r.lastError = 'ack-deadline-exceeded';
      const dl = s.config.deadLetter;
      if (dl && r.attempt >= dl.maxDeliveries && this.deadLetter(s, r, m, nowMs)) continue;
      deliveries.push(this.lease(s, r, m, index, nowMs, deadlineMs));
    }

    let scanned = 0;
    while (
      deliveries.length < max &&
      s.cursor <= t.lastSeq &&
      s.pending.size < limits.pendingMessagesPerSubscriptionMax &&
      scanned < limits.pullScanRecordsMax
    ) {
      const seq = s.cursor++;
      scanned++;
      const m = this.store.get(t.id, seq);
      assert(m !== undefined, `topic ${t.name} has no message at seq ${seq} inside [${t.firstSeq}, ${t.lastSeq}]`);
      if (!s.wants(m)) continue;
      s.ahead--;
      const record: PendingRecord = { seq, attempt: 0, availableAtMs: m.visibleAtMs, leaseToken: 0, blocked: false };
      if (m.orderingKey !== undefined && s.config.ordered) record.orderingKey = m.orderingKey;
      const visible = m.visibleAtMs <= nowMs;
      s.addRecord(record, !visible);
      if (record.blocked || !visible) continue;
      deliveries.push(this.lease(s, record, m, index, nowMs, deadlineMs));
    }
    return { ok: true, deliveries };
  }

  private lease(s: SubscriptionState, r: PendingRecord, m: StoredMessage, index: number, nowMs: number, deadlineMs: number): Delivery {
    r.attempt++;
    if (r.attempt === 1) r.firstDeliveredMs = nowMs;
    r.leaseToken = index;
    s.reschedule(r, deadlineMs);
    s.delivered++;
    return { topicId: s.topicId, message: m, attempt: r.attempt, ackId: formatAckId(r.seq, index) };
  }

  /** Publishes a copy to the dead-letter topic and acks it here. False when that topic is gone:
   * then nothing is dropped and the message is delivered again. */
  private deadLetter(s: SubscriptionState, r: PendingRecord, m: StoredMessage, nowMs: number): boolean {
    const dlq = this.topics.get(s.config.deadLetter!.topic);
    if (!dlq) return false;
    const copy = this.append(
      dlq,
      {
        data: m.data,
        encoding: m.encoding,
        attributes: {
          ...m.attributes,
          'herald-source-subscription': s.name,
          'herald-delivery-attempts': String(r.attempt),
          'herald-last-error': r.lastError ?? 'ack-deadline-exceeded',
        },
        ...(m.tags !== undefined ? { tags: m.tags } : {}),
        ...(m.routingKey !== undefined ? { routingKey: m.routingKey } : {}),
        ...(m.orderingKey !== undefined ? { orderingKey: m.orderingKey } : {}),
        ...(m.jsonSafe ? { jsonSafe: true as const } : {}),
      },
      nowMs,
    );
    this.effects.push({ type: 'published', topic: dlq.name });
    for (const subName of dlq.subscriptions) {
      const d = this.subs.get(subName)!;
      if (copy.seq >= d.cursor && d.wants(copy)) {
        d.ahead++;
        this.wake(d);
      }
    }
    s.removeRecord(r);
    s.deadLettered++;
    s.deadLetteredSeqs.push(r.seq);
    if (s.deadLetteredSeqs.length > limits.deadLetteredTrackedPerSubscriptionMax) s.deadLetteredSeqs.shift();
    return true;
  }

  /**
   * Failed push attempts. A message whose retries are spent (`maxAttempts` attempts, or
   * `maxRetrySeconds` since its first delivery) is dead-lettered; without a dead-letter topic it
   * stays and is retried at the largest backoff. Otherwise it waits out the endpoint's Retry-After
   * (capped at the largest backoff) or the policy's next backoff.
   */
  private pushFailed(name: string, failures: PushFailure[], nowMs: number): Reply {
    const s = this.subs.get(name);
    if (!s) return refuse('SubscriptionNotFound', `subscription ${name} not found`);
    const t = this.topics.get(s.config.topic)!;
    const policy = resolveRetryPolicy(s.config.retry);
    const byAckId = new Map(failures.map((f) => [f.ackId, f]));
    const reply = this.withLeases(name, failures.map((f) => f.ackId), nowMs, (s, r) => {
      const f = byAckId.get(formatAckId(r.seq, r.leaseToken))!;
      r.leaseToken = 0;
      r.lastError = f.error;
      const spent =
        (policy.maxAttempts !== null && r.attempt >= policy.maxAttempts) ||
        (policy.maxRetrySeconds !== null && nowMs - (r.firstDeliveredMs ?? nowMs) >= policy.maxRetrySeconds * 1000);
      if (spent && s.config.deadLetter) {
        const m = this.store.get(t.id, r.seq);
        assert(m !== undefined, `pending seq ${r.seq} of ${name} has no message`);
        if (this.deadLetter(s, r, m, nowMs)) return;
      }
      const delayMs = spent
        ? policy.maxBackoffMs
        : f.retryAfterMs !== null
          ? Math.min(f.retryAfterMs, policy.maxBackoffMs)
          : this.backoffMs(s, r);
      s.reschedule(r, nowMs + delayMs);
    });
    if ('count' in reply && reply.count > 0) this.wake(s);
    return reply;
  }

  private backoffMs(s: SubscriptionState, r: PendingRecord): number {
    return retryDelayMs(resolveRetryPolicy(s.config.retry), r.attempt, hash01(s.id, r.seq, r.attempt));
  }

  /** Runs `fn` on each record whose ackId is current; lists the rest as invalid. */
  private withLeases(
    name: string,
    ackIds: string[],
    nowMs: number,
    fn: (s: SubscriptionState, r: PendingRecord) => void,
  ): Reply {
    const s = this.subs.get(name);
    if (!s) return refuse('SubscriptionNotFound', `subscription ${name} not found`);
    const invalid: string[] = [];
    let count = 0;
    for (const ackId of ackIds) {
      const parsed = parseAckId(ackId);
      const r = parsed ? s.pending.get(parsed.seq) : undefined;
      if (!parsed || !r || r.leaseToken !== parsed.token || r.availableAtMs <= nowMs) {
        invalid.push(ackId);
        continue;
      }
      fn(s, r);
      count++;
    }
    return { ok: true, count, invalid };
  }

  private seek(name: string, target: { seq: number } | { timeMs: number }): Reply {
    const s = this.subs.get(name);
    if (!s) return refuse('SubscriptionNotFound', `subscription ${name} not found`);
    const t = this.topics.get(s.config.topic)!;
    s.clearPending();
    this.moveCursor(t, s, target);
    this.wake(s);
    return OK;
  }

  /**
   * Points a subscription at a seq (inclusive) or a time. A target past the end stays where it is:
   * messages published later below a future seq, or before a future time, are skipped.
   */
  private moveCursor(t: TopicState, s: SubscriptionState, target: { seq: number } | { timeMs: number }): void {
    if ('seq' in target) {
      s.notBeforeMs = 0;
      s.cursor = Math.max(target.seq, t.firstSeq);
    } else {
      s.notBeforeMs = target.timeMs;
      s.cursor = this.seqAtTime(t, target.timeMs);
    }
    s.ahead = this.countMatching(t, s, s.cursor);
  }

  private redrive(name: string, max: number, nowMs: number): Reply {
    const s = this.subs.get(name);
    if (!s) return refuse('SubscriptionNotFound', `subscription ${name} not found`);
    const t = this.topics.get(s.config.topic)!;
    let redriven = 0;
    let taken = 0;
    while (
      taken < s.deadLetteredSeqs.length &&
      redriven < max &&
      s.pending.size < limits.pendingMessagesPerSubscriptionMax
    ) {
      const seq = s.deadLetteredSeqs[taken++]!;
      // Gone by retention, pending again, or ahead of the cursor after a seek: nothing to bring back.
      if (seq < t.firstSeq || seq >= s.cursor || s.pending.has(seq)) continue;
      const m = this.store.get(t.id, seq)!;
      const record: PendingRecord = { seq, attempt: 0, availableAtMs: nowMs, leaseToken: 0, blocked: false };
      if (m.orderingKey !== undefined && s.config.ordered) record.orderingKey = m.orderingKey;
      s.addRecord(record);
      redriven++;
    }
    s.deadLetteredSeqs.splice(0, taken);
    s.deadLettered = Math.max(0, s.deadLettered - taken);
    if (redriven > 0) this.wake(s);
    return { ok: true, redriven };
  }

  private wake(s: SubscriptionState): void {
    this.effects.push({ type: 'available', subscription: s.name });
  }

  // ---- queries (read-only; the API answers reads from the applied state) ----

  topicNames(): string[] {
    return [...this.topics.keys()].sort();
  }

  topicInfo(name: string): TopicInfo | undefined {
    const t = this.topics.get(name);
    if (!t) return undefined;
    return {
      name,
      config: t.config,
      messages: t.lastSeq - t.firstSeq + 1,
      bytes: t.bytes,
      firstSeq: t.firstSeq,
      lastSeq: t.lastSeq,
      subscriptions: t.subscriptions.size,
    };
  }

  /**
   * Up to `max` retained messages of a topic from `fromSeq` (clamped to what is retained), for tails.
   * Undefined when there is no such topic.
   */
  readTopic(name: string, fromSeq: number, max: number): { topicId: number; firstSeq: number; lastSeq: number; messages: StoredMessage[] } | undefined {
    const t = this.topics.get(name);
    if (!t) return undefined;
    const messages: StoredMessage[] = [];
    for (let seq = Math.max(fromSeq, t.firstSeq); seq <= t.lastSeq && messages.length < max; seq++) {
      const m = this.store.get(t.id, seq);
      if (m) messages.push(m);
    }
    return { topicId: t.id, firstSeq: t.firstSeq, lastSeq: t.lastSeq, messages };
  }

  /** The first seq published at or after `timeMs` in a topic (lastSeq + 1 if none); undefined without the topic. */
  topicSeqAtTime(name: string, timeMs: number): number | undefined {
    const t = this.topics.get(name);
    return t ? this.seqAtTime(t, timeMs) : undefined;
  }

  token(id: string): TokenRecord | undefined {
    return this.tokens.get(id);
  }

  tokenList(): TokenRecord[] {
    return [...this.tokens.values()].sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1));
  }

  topicConfig(name: string): TopicConfig | undefined {
    return this.topics.get(name)?.config;
  }

  subscriptionNames(topic?: string): string[] {
    const names = topic === undefined ? [...this.subs.keys()] : [...(this.topics.get(topic)?.subscriptions ?? [])];
    return names.sort();
  }

  subscriptionConfig(name: string): SubscriptionConfig | undefined {
    return this.subs.get(name)?.config;
  }

  subscriptionInfo(name: string, nowMs: number): SubscriptionInfo | undefined {
    const s = this.subs.get(name);
    if (!s) return undefined;
    const t = this.topics.get(s.config.topic)!;
    let oldestSeq = s.ahead > 0 ? this.firstWantedFrom(t, s) : Infinity;
    for (const seq of s.pending.keys()) if (seq < oldestSeq) oldestSeq = seq;
    const oldest = oldestSeq === Infinity ? undefined : this.store.get(t.id, oldestSeq);
    return {
      name,
      config: s.config,
      backlog: s.pending.size + s.ahead,
      inFlight: s.inFlight(nowMs),
      oldestUnackedAgeSeconds: oldest ? Math.max(0, Math.floor((nowMs - oldest.publishTimeMs) / 1000)) : 0,
      deadLettered: s.deadLettered,
      delivered: s.delivered,
      acked: s.acked,
      pushPaused: s.pushPaused,
    };
  }

  /** The secrets that sign a push now: the current one, and the previous one during its overlap. */
  pushSecrets(name: string, nowMs: number): string[] {
    const secrets = this.subs.get(name)?.secrets;
    if (!secrets) return [];
    return secrets.previous !== undefined && (secrets.previousUntilMs ?? 0) > nowMs ? [secrets.current, secrets.previous] : [secrets.current];
  }

  /** Whether push is stopped by a 410 (or there is no push). */
  pushPaused(name: string): boolean {
    const s = this.subs.get(name);
    return !s || !s.config.push || s.pushPaused;
  }

  /** The first seq at or after the cursor the subscription wants, looking at most pullScanRecordsMax
   * records ahead (past that, the cursor: an upper bound on the age). */
  private firstWantedFrom(t: TopicState, s: SubscriptionState): number {
    if (s.config.filter === null && s.notBeforeMs === 0) return s.cursor;
    const end = Math.min(t.lastSeq, s.cursor + limits.pullScanRecordsMax);
    for (let seq = s.cursor; seq <= end; seq++) {
      const m = this.store.get(t.id, seq);
      if (m && s.wants(m)) return seq;
    }
    return s.cursor;
  }

  /** Whether a pull now would find something (checked before proposing one). */
  hasAvailable(name: string, nowMs: number): boolean {
    const s = this.subs.get(name);
    if (!s) return false;
    if (s.ahead > 0 && s.pending.size < limits.pendingMessagesPerSubscriptionMax) return true;
    const next = s.nextAvailableAtMs();
    return next !== undefined && next <= nowMs;
  }

  /**
   * Whether publishing `messages` to `topic` at `nowMs` would, once applied, give the subscription
   * something to deliver at once: it reads that topic, has room for more pending records, and one
   * message passes its filter undelayed. A consumer waiting on it can then propose its pull right
   * behind the publish, to be committed with it, instead of a log round trip after it.
   */
  wouldMakeAvailable(name: string, topic: string, messages: readonly PublishItem[], nowMs: number): boolean {
    const s = this.subs.get(name);
    if (!s || s.config.topic !== topic || s.pending.size >= limits.pendingMessagesPerSubscriptionMax) return false;
    // What `wants` checks of a stored message, on the items themselves (their tags and routing key).
    if (nowMs < s.notBeforeMs) return false;
    for (const m of messages) if (!m.delaySeconds && s.filter(m)) return true;
    return false;
  }

  /** When the subscription next has a record coming due (lease expiry, delay, backoff). */
  nextAvailableAtMs(name: string): number | undefined {
    return this.subs.get(name)?.nextAvailableAtMs();
  }

  // ---- snapshots ----

  snapshot(): BrokerSnapshot {
    return {
      version: 1,
      topics: [...this.topics.values()].map((t) => ({
        id: t.id,
        name: t.name,
        config: t.config,
        firstSeq: t.firstSeq,
        lastSeq: t.lastSeq,
        bytes: t.bytes,
        lastPublishTimeMs: t.lastPublishTimeMs,
        dedup: [...t.dedup.entries()].map(([id, e]) => [id, e.seq, e.expiresAtMs] as [string, number, number]),
      })),
      subscriptions: [...this.subs.values()].map((s) => ({ ...s.snapshot(), topicName: s.config.topic })),
      ...(this.tokens.size > 0 ? { tokens: [...this.tokens.values()].map((t) => ({ ...t, scopes: [...t.scopes] })) } : {}),
    };
  }

  restore(snapshot: BrokerSnapshot): void {
    assert(snapshot.version === 1, `unknown broker snapshot version ${snapshot.version}`);
    this.topics.clear();
    this.subs.clear();
    this.tokens.clear();
    for (const t of snapshot.tokens ?? []) this.tokens.set(t.id, { ...t, scopes: [...t.scopes] });
    for (const t of snapshot.topics) {
      this.topics.set(t.name, {
        id: t.id,
        name: t.name,
        config: t.config,
        firstSeq: t.firstSeq,
        lastSeq: t.lastSeq,
        bytes: t.bytes,
        lastPublishTimeMs: t.lastPublishTimeMs,
        dedup: new Map(t.dedup.map(([id, seq, exp]) => [id, { seq, expiresAtMs: exp }])),
        subscriptions: new Set(),
      });
    }
    for (const s of snapshot.subscriptions) {
      const sub = SubscriptionState.restore(s);
      this.subs.set(sub.name, sub);
      this.topics.get(s.topicName)!.subscriptions.add(sub.name);
    }
  }
}

export function formatAckId(seq: number, token: number): string {
  return `${seq.toString(36)}.${token.toString(36)}`;
}

export function parseAckId(ackId: string): { seq: number; token: number } | undefined {
  const dot = ackId.indexOf('.');
  if (dot <= 0 || dot > 12 || ackId.length - dot > 13) return undefined;
  const seqPart = ackId.slice(0, dot);
  const tokenPart = ackId.slice(dot + 1);
  // One spelling per ackId: no leading zeros.
  if (!/^(0|[1-9a-z][0-9a-z]*)$/.test(seqPart) || !/^[1-9a-z][0-9a-z]*$/.test(tokenPart)) return undefined;
  const seq = parseInt(seqPart, 36);
  const token = parseInt(tokenPart, 36);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(token) || token === 0) return undefined;
  return { seq, token };
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
