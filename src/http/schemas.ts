/**
 * Request schemas, one per body (TypeBox → JSON Schema, checked by fastify's Ajv). Unknown fields
 * are refused everywhere: a misspelt option must not be silently ignored.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { limits } from '../core/limits.js';

const strict = { additionalProperties: false } as const;
const Int = (min: number, max: number) => Type.Integer({ minimum: min, maximum: max });
const Opt = <T extends TSchema>(t: T) => Type.Optional(t);

export const namePattern = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';
export const Name = Type.String({ pattern: namePattern, minLength: 1, maxLength: limits.nameLengthMax });

export const NameParams = Type.Object({ name: Name }, strict);

export const TopicConfigBody = Type.Object(
  {
    retentionSeconds: Opt(Int(limits.retentionSecondsMin, limits.retentionSecondsMax)),
    maxMessageBytes: Opt(Int(1, limits.maxMessageBytesMax)),
    dedupWindowSeconds: Opt(Int(0, limits.dedupWindowSecondsMax)),
  },
  strict,
);
export type TopicConfigBody = Static<typeof TopicConfigBody>;

const Push = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    headers: Opt(Type.Record(Type.String(), Type.String({ maxLength: 4096, pattern: '^[\\t\\x20-\\x7e]*$' }), { maxProperties: 32, propertyNames: { minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$' } })),
    format: Opt(Type.Union([Type.Literal('json'), Type.Literal('raw'), Type.Literal('cloudevents')])),
    timeoutMs: Opt(Int(100, 120_000)),
    maxInFlight: Opt(Int(1, 1000)),
    rateLimitPerSecond: Opt(Int(0, 100_000)),
  },
  strict,
);

const Filter = Type.Object(
  {
    tags: Opt(Type.Array(Type.String({ minLength: 1, maxLength: limits.tagLengthMax }), { maxItems: limits.filterTagsMax })),
    bindingKeys: Opt(
      Type.Array(Type.String({ minLength: 1, maxLength: limits.routingKeyLengthMax }), { maxItems: limits.filterBindingKeysMax }),
    ),
  },
  strict,
);

const Retry = Type.Union([
  Type.Object(
    {
      policy: Type.Literal('exponential'),
      minBackoffMs: Opt(Int(0, 86_400_000)),
      maxBackoffMs: Opt(Int(0, 86_400_000)),
      multiplier: Opt(Type.Number({ minimum: 1, maximum: 100 })),
      jitter: Opt(Type.Number({ minimum: 0, maximum: 1 })),
      maxAttempts: Opt(Type.Union([Int(1, 1_000_000), Type.Null()])),
      maxRetrySeconds: Opt(Int(1, 2_592_000)),
    },
    strict,
  ),
  Type.Object(
    { policy: Type.Literal('fixed'), intervalMs: Opt(Int(0, 86_400_000)), maxAttempts: Opt(Type.Union([Int(1, 1_000_000), Type.Null()])) },
    strict,
  ),
  Type.Object({ policy: Type.Literal('EXPONENTIAL_DECAY_RETRY') }, strict),
  Type.Object({ policy: Type.Literal('BACKOFF_RETRY') }, strict),
]);

const DeadLetter = Type.Object({ topic: Name, maxDeliveries: Opt(Int(1, limits.maxDeliveriesMax)) }, strict);

const StartAt = Type.Union([
  Type.Literal('latest'),
  Type.Literal('earliest'),
  Type.Object({ time: Type.String({ minLength: 1, maxLength: 64 }) }, strict),
  Type.Object({ seq: Int(0, Number.MAX_SAFE_INTEGER) }, strict),
]);

const subscriptionFields = {
  push: Opt(Type.Union([Push, Type.Null()])),
  filter: Opt(Type.Union([Filter, Type.Null()])),
  ackDeadlineSeconds: Opt(Int(limits.ackDeadlineSecondsMin, limits.ackDeadlineSecondsMax)),
  retry: Opt(Retry),
  deadLetter: Opt(Type.Union([DeadLetter, Type.Null()])),
  ordered: Opt(Type.Boolean()),
  startAt: Opt(StartAt),
};

export const SubscriptionBody = Type.Object({ topic: Name, ...subscriptionFields }, strict);
export type SubscriptionBody = Static<typeof SubscriptionBody>;

export const SubscriptionPatchBody = Type.Object(
  {
    push: subscriptionFields.push,
    filter: subscriptionFields.filter,
    ackDeadlineSeconds: subscriptionFields.ackDeadlineSeconds,
    retry: subscriptionFields.retry,
    deadLetter: subscriptionFields.deadLetter,
  },
  strict,
);
export type SubscriptionPatchBody = Static<typeof SubscriptionPatchBody>;

export const QueueBody = Type.Object(
  {
    retentionSeconds: TopicConfigBody.properties.retentionSeconds,
    maxMessageBytes: TopicConfigBody.properties.maxMessageBytes,
    dedupWindowSeconds: TopicConfigBody.properties.dedupWindowSeconds,
    ...subscriptionFields,
  },
  strict,
);
export type QueueBody = Static<typeof QueueBody>;

export const PublishBody = Type.Object(
  {
    messages: Type.Array(
      Type.Object(
        {
          data: Type.String(),
          encoding: Opt(Type.Union([Type.Literal('utf8'), Type.Literal('base64')])),
          attributes: Opt(
            // TypeBox drops a Record's key constraints when it compiles to JSON Schema: say them as propertyNames.
            Type.Record(Type.String(), Type.String({ maxLength: limits.attributeValueLengthMax }), {
              maxProperties: limits.attributesPerMessageMax,
              propertyNames: { minLength: 1, maxLength: limits.attributeNameLengthMax },
            }),
          ),
          tags: Opt(Type.Array(Type.String({ minLength: 1, maxLength: limits.tagLengthMax }), { maxItems: limits.tagsPerMessageMax })),
          routingKey: Opt(Type.String({ minLength: 1, maxLength: limits.routingKeyLengthMax })),
          orderingKey: Opt(Type.String({ minLength: 1, maxLength: limits.orderingKeyLengthMax })),
          dedupId: Opt(Type.String({ minLength: 1, maxLength: limits.dedupIdLengthMax })),
          delaySeconds: Opt(Int(0, limits.delaySecondsMax)),
        },
        strict,
      ),
      { minItems: 1, maxItems: limits.publishBatchMessagesMax },
    ),
  },
  strict,
);
export type PublishBody = Static<typeof PublishBody>;

const AckIds = Type.Array(Type.String({ minLength: 1, maxLength: limits.ackIdLengthMax }), {
  minItems: 1,
  maxItems: limits.ackIdsPerRequestMax,
});

export const AckBody = Type.Object({ ackIds: AckIds }, strict);

/** `ackIds`: acks these first, in the same log write as the pull (README, "The API"). */
export const PullBody = Type.Object(
  {
    max: Opt(Int(1, limits.pullMessagesMax)),
    waitSeconds: Opt(Type.Number({ minimum: 0, maximum: limits.pullWaitSecondsMax })),
    ackDeadlineSeconds: Opt(Int(limits.ackDeadlineSecondsMin, limits.ackDeadlineSecondsMax)),
    ackIds: Opt(AckIds),
  },
  strict,
);
export type PullBody = Static<typeof PullBody>;
export type AckBody = Static<typeof AckBody>;

export const NackBody = Type.Object({ ackIds: AckIds, delaySeconds: Opt(Int(0, limits.ackDeadlineSecondsMax)) }, strict);
export type NackBody = Static<typeof NackBody>;

export const ModifyAckDeadlineBody = Type.Object({ ackIds: AckIds, seconds: Int(0, limits.ackDeadlineSecondsMax) }, strict);
export type ModifyAckDeadlineBody = Static<typeof ModifyAckDeadlineBody>;

export const SeekBody = Type.Union([
  Type.Object({ time: Type.String({ minLength: 1, maxLength: 64 }) }, strict),
  Type.Object({ seq: Int(0, Number.MAX_SAFE_INTEGER) }, strict),
]);
export type SeekBody = Static<typeof SeekBody>;

export const RedriveBody = Type.Object({ max: Opt(Int(1, limits.redriveMessagesMax)) }, strict);
export type RedriveBody = Static<typeof RedriveBody>;

export const CreateTokenBody = Type.Object(
  {
    name: Opt(Type.String({ maxLength: 128 })),
    scopes: Type.Array(Type.String({ pattern: '^(admin|(publish|consume|tail):[A-Za-z0-9._*-]{1,128})$' }), { minItems: 1, maxItems: 32 }),
    rateLimitPerSecond: Opt(Int(0, limits.tokenRateLimitPerSecondMax)),
    webSocketsMax: Opt(Int(1, limits.tokenWebSocketsMax)),
  },
  strict,
);
export type CreateTokenBody = Static<typeof CreateTokenBody>;

export const TokenParams = Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{16}$' }) }, strict);

export const AttemptsQuery = Type.Object({ limit: Opt(Type.String({ pattern: '^[0-9]{1,4}$' })) }, strict);

export const ListSubscriptionsQuery = Type.Object({ topic: Opt(Name) }, strict);

/** The pull answer's shape, for the route's schema; the route writes it out itself (render.ts). */
export const PullResponse = Type.Object({
  messages: Type.Array(
    Type.Object({
      id: Type.String(),
      seq: Type.Integer(),
      data: Type.String(),
      encoding: Type.String(),
      attributes: Type.Record(Type.String(), Type.String()),
      tags: Type.Array(Type.String()),
      routingKey: Type.Union([Type.String(), Type.Null()]),
      orderingKey: Type.Union([Type.String(), Type.Null()]),
      publishTime: Type.String(),
      deliveryAttempt: Type.Integer(),
      ackId: Type.String(),
    }),
  ),
  /** With `ackIds` in the request: what the ack did, as the ack route answers. */
  acked: Opt(Type.Integer()),
  invalid: Opt(Type.Array(Type.String())),
});

const MemberId = Type.Union([Type.Integer({ minimum: 1, maximum: 0xffffffff }), Type.String({ pattern: '^[1-9][0-9]{0,9}$' })]);

export const AddMemberBody = Type.Object(
  { id: MemberId, address: Type.String({ pattern: '^[^\\s@,]+:[0-9]{1,5}:[0-9]{1,5}$', maxLength: 300 }) },
  strict,
);
export type AddMemberBody = Static<typeof AddMemberBody>;

export const MemberParams = Type.Object({ id: Type.String({ pattern: '^[1-9][0-9]{0,9}$' }) }, strict);

export const TransferLeadershipBody = Type.Object({ to: MemberId }, strict);
export type TransferLeadershipBody = Static<typeof TransferLeadershipBody>;
