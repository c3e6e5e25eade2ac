/**
 * The broker's data: configurations as clients give them (defaults already applied at the edge),
 * stored messages, and the port through which the state machine reads and writes message bodies.
 */

export type Encoding = 'utf8' | 'base64';

export interface TopicConfig {
  retentionSeconds: number;
  maxMessageBytes: number;
  dedupWindowSeconds: number;
}

export interface PushConfig {
  url: string;
  headers: Record<string, string>;
  format: 'json' | 'raw' | 'cloudevents';
  timeoutMs: number;
  maxInFlight: number;
  rateLimitPerSecond: number;
}

export interface FilterConfig {
  tags?: string[];
  bindingKeys?: string[];
}

export type RetryPolicy =
  | {
      policy: 'exponential';
      minBackoffMs: number;
      maxBackoffMs: number;
      multiplier: number;
      jitter: number;
      maxAttempts: number | null;
      maxRetrySeconds: number;
    }
  | { policy: 'fixed'; intervalMs: number; maxAttempts: number | null }
  | { policy: 'EXPONENTIAL_DECAY_RETRY' }
  | { policy: 'BACKOFF_RETRY' };

export interface DeadLetterConfig {
  topic: string;
  maxDeliveries: number;
}

export type StartAt = 'latest' | 'earliest' | { time: string; timeMs: number } | { seq: number };

export interface SubscriptionConfig {
  topic: string;
  push: PushConfig | null;
  filter: FilterConfig | null;
  ackDeadlineSeconds: number;
  retry: RetryPolicy;
  deadLetter: DeadLetterConfig | null;
  ordered: boolean;
  startAt: StartAt;
}

/** A message as the topic log keeps it. `data` stays bytes from the request to the disk and back. */
export interface StoredMessage {
  seq: number;
  publishTimeMs: number;
  /** When it may first be delivered: publish time plus its delay. */
  visibleAtMs: number;
  data: Uint8Array;
  encoding: Encoding;
  attributes?: Record<string, string>;
  tags?: string[];
  routingKey?: string;
  orderingKey?: string;
  /** See PublishItem.jsonSafe. */
  jsonSafe?: true;
}

/**
 * Where the state machine keeps message bodies: LMDB in production, a Map in the simulator. Reads
 * must see every write made before them (the LMDB adapter keeps uncommitted writes in memory), and
 * writes must become durable together with the applied index that produced them.
 */
export interface MessageStore {
  put(topicId: number, message: StoredMessage): void;
  get(topicId: number, seq: number): StoredMessage | undefined;
  /** Removes seqs in [fromSeq, toSeqExclusive). */
  deleteRange(topicId: number, fromSeq: number, toSeqExclusive: number): void;
  /** Removes every message of a deleted topic (may finish in the background). */
  dropTopic(topicId: number): void;
}

export function messageId(topicId: number, seq: number): string {
  return `${topicId.toString(36)}-${seq.toString(36)}`;
}
