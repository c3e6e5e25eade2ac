/**
 * A small driver for BrokerMachine tests: it numbers log indexes (each apply gets the next one, as the
 * log would), keeps a clock that tests move by hand, and unwraps replies so a refusal fails loudly.
 * Nothing here has logic of its own beyond bookkeeping, so a failing test points at the machine.
 */
import { expect } from 'vitest';
import { BrokerMachine, type Delivery, type Reply } from '../../../src/core/broker/machine.js';
import type { Command, PublishItem } from '../../../src/core/broker/commands.js';
import type { RetryPolicy, StoredMessage, SubscriptionConfig, TopicConfig } from '../../../src/core/broker/types.js';
import { MemoryMessageStore } from '../../../src/storage/memory-store.js';

export const T0 = 1_700_000_000_000;

export const topicConfig = (over: Partial<TopicConfig> = {}): TopicConfig => ({
  retentionSeconds: 3600,
  maxMessageBytes: 1_048_576,
  dedupWindowSeconds: 300,
  ...over,
});

export const exponentialRetry: RetryPolicy = {
  policy: 'exponential',
  minBackoffMs: 1000,
  maxBackoffMs: 512_000,
  multiplier: 2,
  jitter: 0.2,
  maxAttempts: null,
  maxRetrySeconds: 86_400,
};

export const subConfig = (topic: string, over: Partial<SubscriptionConfig> = {}): SubscriptionConfig => ({
  topic,
  push: null,
  filter: null,
  ackDeadlineSeconds: 30,
  retry: exponentialRetry,
  deadLetter: null,
  ordered: false,
  startAt: 'earliest',
  ...over,
});

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const msg = (text: string, over: Omit<Partial<PublishItem>, 'data'> = {}): PublishItem => ({
  data: encoder.encode(text),
  encoding: 'utf8',
  ...over,
});

export const text = (m: StoredMessage): string => decoder.decode(m.data);

export function okReply<R extends Reply>(reply: Reply): Extract<R, { ok: true }> {
  if (!reply.ok) throw new Error(`expected ok, got ${reply.code}: ${reply.message}`);
  return reply as Extract<R, { ok: true }>;
}

export class Harness {
  readonly store = new MemoryMessageStore();
  readonly machine = new BrokerMachine(this.store);
  index = 0;
  nowMs = T0;

  apply(command: Command, nowMs = this.nowMs) {
    return this.machine.apply({ nowMs, command }, ++this.index);
  }

  /** Applies and returns the reply only. */
  run(command: Command): Reply {
    return this.apply(command).reply;
  }

  advance(ms: number): this {
    this.nowMs += ms;
    return this;
  }

  createTopic(name: string, over: Partial<TopicConfig> = {}): number {
    const reply = this.run({ type: 'create-topic', name, config: topicConfig(over) });
    expect(reply).toEqual({ ok: true, created: true });
    return this.index;
  }

  createSub(name: string, topic: string, over: Partial<SubscriptionConfig> = {}): void {
    const reply = this.run({ type: 'create-subscription', name, config: subConfig(topic, over) });
    expect(reply).toEqual({ ok: true, created: true });
  }

  publish(topic: string, ...items: PublishItem[]) {
    const reply = this.run({ type: 'publish', topic, messages: items });
    if (!reply.ok || !('results' in reply)) throw new Error(`publish failed: ${JSON.stringify(reply)}`);
    return reply.results;
  }

  pull(subscription: string, max = 100, ackDeadlineMs = 30_000): Delivery[] {
    const reply = this.run({ type: 'pull', subscription, max, ackDeadlineMs });
    if (!reply.ok || !('deliveries' in reply)) throw new Error(`pull failed: ${JSON.stringify(reply)}`);
    return reply.deliveries;
  }

  /** Pulls and returns the message texts, for readable assertions. */
  pullTexts(subscription: string, max = 100, ackDeadlineMs = 30_000): string[] {
    return this.pull(subscription, max, ackDeadlineMs).map((d) => text(d.message));
  }

  private batch(command: Command): { count: number; invalid: string[] } {
    const reply = this.run(command);
    if (!reply.ok || !('count' in reply)) throw new Error(`${command.type} failed: ${JSON.stringify(reply)}`);
    return { count: reply.count, invalid: reply.invalid };
  }

  ack(subscription: string, ackIds: string[]) {
    return this.batch({ type: 'ack', subscription, ackIds });
  }

  nack(subscription: string, ackIds: string[], delayMs: number | null) {
    return this.batch({ type: 'nack', subscription, ackIds, delayMs });
  }

  modify(subscription: string, ackIds: string[], deadlineMs: number) {
    return this.batch({ type: 'modify-ack-deadline', subscription, ackIds, deadlineMs });
  }

  info(subscription: string) {
    const info = this.machine.subscriptionInfo(subscription, this.nowMs);
    if (!info) throw new Error(`no subscription ${subscription}`);
    return info;
  }

  topic(name: string) {
    const info = this.machine.topicInfo(name);
    if (!info) throw new Error(`no topic ${name}`);
    return info;
  }
}
