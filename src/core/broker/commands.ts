/**
 * Commands: everything that changes the broker goes through the log as one of these. The leader
 * stamps `nowMs` on each, so every replica computes the same state (TigerBeetle's injected time).
 */
import type { TokenRecord } from './tokens.js';
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
  /** utf8 data with nothing JSON must escape (no quote, backslash or control character), found once
   * at publish: deliveries then copy the bytes into JSON as they are, without looking again. */
  jsonSafe?: true;
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
  /** `secret`: drawn by the proposer (randomness stays out of the machine); used when push is set. */
  | { type: 'create-subscription'; name: string; config: SubscriptionConfig; secret?: string }
  | { type: 'update-subscription'; name: string; patch: SubscriptionPatch; secret?: string }
  | { type: 'delete-subscription'; name: string }
  | { type: 'create-queue'; name: string; topic: TopicConfig; subscription: SubscriptionConfig; secret?: string }
  | { type: 'publish'; topic: string; messages: PublishItem[] }
  | { type: 'pull'; subscription: string; max: number; ackDeadlineMs: number }
  | { type: 'ack'; subscription: string; ackIds: string[] }
  | { type: 'nack'; subscription: string; ackIds: string[]; delayMs: number | null }
  | { type: 'modify-ack-deadline'; subscription: string; ackIds: string[]; deadlineMs: number }
  | { type: 'seek'; subscription: string; target: { seq: number } | { timeMs: number } }
  | { type: 'redrive'; subscription: string; max: number }
  /** The previous secret signs too for `pushSecretOverlapMs`. */
  | { type: 'rotate-secret'; subscription: string; secret: string }
  /** The endpoint answered 410: push stops until `resume-push` (pull and WebSocket go on). */
  | { type: 'pause-push'; subscription: string }
  | { type: 'resume-push'; subscription: string }
  /**
   * Push attempts that failed: each leased message waits out `retryAfterMs` (capped at the policy's
   * largest backoff) or the policy's next backoff, or is dead-lettered when its retries are spent.
   */
  | { type: 'push-failed'; subscription: string; failures: PushFailure[] }
  /** API tokens: the edge draws the id and secret and sends only the secret's hash. */
  | { type: 'create-token'; token: TokenRecord }
  | { type: 'revoke-token'; id: string }
  /** One bounded step of retention; the leader proposes it when something is due. */
  | { type: 'expire' };

export interface PushFailure {
  ackId: string;
  /** The HTTP status as a string ("500") or an error name ("timeout"); becomes `herald-last-error`. */
  error: string;
  retryAfterMs: number | null;
}

/** What the log carries: the command and the leader's clock when it was proposed. */
export interface StampedCommand {
  nowMs: number;
  command: Command;
}
