/**
 * Every limit Herald enforces, in one place. API.md fixes the client-facing ones; the rest bound
 * memory and the work one step may do. Units and qualifiers go last (`ackDeadlineSecondsMax`).
 */
import { assert } from './assert.js';

export const limits = {
  // Names (topics, subscriptions, queues): API.md.
  nameLengthMax: 128,

  // Publishing: API.md.
  publishBatchMessagesMax: 1000,
  requestBodyBytesMax: 10 * 1024 * 1024,
  attributesPerMessageMax: 32,
  attributeNameLengthMax: 128,
  attributeValueLengthMax: 1024,
  tagsPerMessageMax: 16,
  tagLengthMax: 64,
  routingKeyLengthMax: 255,
  routingKeyWordsMax: 16,
  orderingKeyLengthMax: 128,
  dedupIdLengthMax: 128,
  delaySecondsMax: 900,

  // Topic configuration: API.md.
  retentionSecondsDefault: 345_600,
  retentionSecondsMin: 60,
  retentionSecondsMax: 1_296_000,
  maxMessageBytesDefault: 1_048_576,
  maxMessageBytesMax: 10 * 1024 * 1024,
  dedupWindowSecondsDefault: 300,
  dedupWindowSecondsMax: 86_400,

  // Subscriptions: API.md.
  filterTagsMax: 16,
  filterBindingKeysMax: 16,
  ackDeadlineSecondsDefault: 30,
  ackDeadlineSecondsMin: 1,
  ackDeadlineSecondsMax: 43_200,
  maxDeliveriesMax: 1000,
  pullMessagesMax: 1000,
  pullWaitSecondsMax: 30,
  ackIdsPerRequestMax: 1000,
  ackIdLengthMax: 256,
  redriveMessagesMax: 100_000,

  // Push (API.md: both secrets sign for 24 hours after a rotation).
  pushSecretOverlapMs: 24 * 3600 * 1000,
  /** `GET .../attempts?limit=`: at most this many (the latest attempts a leader remembers). */
  pushAttemptsListMax: 200,

  // Memory bounds of the state machine (ours).
  /** Messages a subscription tracks between its ack floor and its cursor: in flight, delayed, nacked
   * or waiting for their ordering key. When full, the cursor stops until consumers ack (NATS calls
   * this MaxAckPending, SQS caps in-flight messages at 120,000). */
  pendingMessagesPerSubscriptionMax: 100_000,
  /** Dedup ids remembered per topic; past this the oldest are forgotten before their window ends. */
  dedupIdsPerTopicMax: 200_000,
  /** Dead-lettered seqs a subscription remembers for redrive; older ones stay in the dead-letter topic. */
  deadLetteredTrackedPerSubscriptionMax: 100_000,
  /** Topic records one pull may examine (filters can skip many); the rest waits for the next pull. */
  pullScanRecordsMax: 10_000,
  /** Messages deleted by one retention step per topic, so one step stays short. */
  retentionDeleteBatchMax: 5_000,
  topicsMax: 10_000,
  /** API tokens in the replicated state. */
  tokensMax: 10_000,
  /** A token's request rate on one node, unless it is created with another (0: none). */
  tokenRateLimitPerSecondDefault: 1000,
  tokenRateLimitPerSecondMax: 1_000_000,
  /** WebSockets a token may hold open on one node, unless it is created with another. */
  tokenWebSocketsDefault: 100,
  tokenWebSocketsMax: 10_000,
  subscriptionsMax: 10_000,

  // The log and its batching (ours).
  /** Entries applied between two broker snapshots; bounds replay after a restart. */
  snapshotEntriesInterval: 20_000,
  /** Log bytes between two broker snapshots. */
  snapshotLogBytesInterval: 32 * 1024 * 1024,
  /** Proposals waiting for the log before new ones are refused with 503. */
  proposalsQueuedMax: 50_000,
} as const;

// Relations between limits, checked at load time.
assert(limits.pullMessagesMax <= limits.pendingMessagesPerSubscriptionMax, 'a pull must fit the pending window');
assert(limits.maxMessageBytesMax <= limits.requestBodyBytesMax, 'one message must fit one request');
assert(limits.retentionSecondsMin <= limits.retentionSecondsDefault, 'retention default in range');
assert(limits.retentionSecondsDefault <= limits.retentionSecondsMax, 'retention default in range');
