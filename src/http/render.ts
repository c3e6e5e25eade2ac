/** How the broker's records look on the wire (API.md's shapes). */
import type { Delivery, SubscriptionInfo, TopicInfo } from '../core/broker/machine.js';
import fastJson from 'fast-json-stringify';
import { messageId } from '../core/broker/types.js';

export function renderTopic(info: TopicInfo) {
  return {
    name: info.name,
    ...info.config,
    messages: info.messages,
    bytes: info.bytes,
    firstSeq: info.firstSeq,
    lastSeq: info.lastSeq,
    subscriptions: info.subscriptions,
  };
}

/** `pushState`: the dispatcher's view on the leader ('paused' comes from the replicated state either way). */
export function renderSubscription(info: SubscriptionInfo, pushState?: 'active' | 'backing-off' | 'paused') {
  const { startAt, ...config } = info.config;
  return {
    name: info.name,
    ...config,
    startAt: typeof startAt === 'object' && 'time' in startAt ? { time: startAt.time } : startAt,
    backlog: info.backlog,
    inFlight: info.inFlight,
    oldestUnackedAgeSeconds: info.oldestUnackedAgeSeconds,
    deadLettered: info.deadLettered,
    delivered: info.delivered,
    acked: info.acked,
    ...(config.push ? { pushState: info.pushPaused ? 'paused' : (pushState ?? 'active') } : {}),
  };
}

// Messages of one batch share a publish time: format it once.
let lastTimeMs = NaN;
let lastTimeIso = '';
function isoTime(ms: number): string {
  if (ms !== lastTimeMs) {
    lastTimeMs = ms;
    lastTimeIso = new Date(ms).toISOString();
  }
  return lastTimeIso;
}

function dataString(m: Delivery['message']): string {
  const b = Buffer.isBuffer(m.data) ? m.data : Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  return b.toString(m.encoding);
}

/** A message as pull, push and WebSocket show it, without the delivery fields (ackId, deliveryAttempt). */
export function renderMessage(topicId: number, m: Delivery['message']) {
  return {
    id: messageId(topicId, m.seq),
    seq: m.seq,
    data: dataString(m),
    encoding: m.encoding,
    attributes: m.attributes ?? {},
    tags: m.tags ?? [],
    routingKey: m.routingKey ?? null,
    orderingKey: m.orderingKey ?? null,
    publishTime: isoTime(m.publishTimeMs),
  };
}

export function renderDelivery(d: Delivery) {
  const m = d.message;
  return {
    id: messageId(d.topicId, m.seq),
    seq: m.seq,
    data: dataString(m),
    encoding: m.encoding,
    attributes: m.attributes ?? {},
    tags: m.tags ?? [],
    routingKey: m.routingKey ?? null,
    orderingKey: m.orderingKey ?? null,
    publishTime: isoTime(m.publishTimeMs),
    deliveryAttempt: d.attempt,
    ackId: d.ackId,
  };
}

// Compiled serializers for the per-message JSON that push and WebSocket write at high rates (pull
// gets the same from fastify's response schema).
const messageProperties = {
  id: { type: 'string' },
  seq: { type: 'integer' },
  data: { type: 'string' },
  encoding: { type: 'string' },
  attributes: { type: 'object', additionalProperties: { type: 'string' } },
  tags: { type: 'array', items: { type: 'string' } },
  routingKey: { type: ['string', 'null'] },
  orderingKey: { type: ['string', 'null'] },
  publishTime: { type: 'string' },
  deliveryAttempt: { type: 'integer' },
};
type Schema = Parameters<typeof fastJson>[0];

/** A push body in the `json` format: pull's message object without `ackId`. */
export const stringifyPushMessage: (m: ReturnType<typeof renderMessage> & { deliveryAttempt: number }) => string = fastJson({
  type: 'object',
  properties: messageProperties,
} as Schema);

/** A WebSocket `message` frame: pull's message object with `type: "message"`. */
export const stringifyMessageFrame: (m: ReturnType<typeof renderDelivery> & { type: 'message' }) => string = fastJson({
  type: 'object',
  properties: { type: { type: 'string' }, ...messageProperties, ackId: { type: 'string' } },
} as Schema);
