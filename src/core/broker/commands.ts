/**
 * Commands: everything that changes the broker goes through the log as one of these. The leader
 * stamps `nowMs` on each, so every replica computes the same state (TigerBeetle's injected time).
 */
import type { Encoding, FilterConfig, PushConfig, RetryPolicy, DeadLetterConfig, SubscriptionConfig, TopicConfig } from './types.js';

export interface PublishItem {
  data: Uint8Array;
  encoding: Encoding;
  attributes?: Record<string, string>;
  tags?: string[];
  routingKey?: string;
  orderingKey?: string;
  dedupId?: string;
  delaySeconds?: number;
}

export type SubscriptionPatch = Partial<{
  push: PushConfig | null;
  filter: FilterConfig | null;
  ackDeadlineSeconds: number;
  retry: RetryPolicy;
  deadLetter: DeadLetterConfig | null;
}>;

export type Command =
  | { type: 'create-topic'; name: string; config: TopicConfig }
  | { type: 'update-topic'; name: string; patch: Partial<TopicConfig> }
  | { type: 'delete-topic'; name: string }
  | { type: 'create-subscription'; name: string; config: SubscriptionConfig }
  | { type: 'update-subscription'; name: string; patch: SubscriptionPatch }
  | { type: 'delete-subscription'; name: string }
  | { type: 'create-queue'; name: string; topic: TopicConfig; subscription: SubscriptionConfig }
  | { type: 'publish'; topic: string; messages: PublishItem[] }
  | { type: 'pull'; subscription: string; max: number; ackDeadlineMs: number }
  | { type: 'ack'; subscription: string; ackIds: string[] }
  | { type: 'nack'; subscription: string; ackIds: string[]; delayMs: number | null }
  | { type: 'modify-ack-deadline'; subscription: string; ackIds: string[]; deadlineMs: number }
  | { type: 'seek'; subscription: string; target: { seq: number } | { timeMs: number } }
  | { type: 'redrive'; subscription: string; max: number }
  /** One bounded step of retention; the leader proposes it when something is due. */
  | { type: 'expire' };

/** What the log carries: the command and the leader's clock when it was proposed. */
export interface StampedCommand {
  nowMs: number;
  command: Command;
}
