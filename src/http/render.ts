/** How the broker's records look on the wire (API.md's shapes). */
import type { Delivery, SubscriptionInfo, TopicInfo } from '../core/broker/machine.js';
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
export function isoTime(ms: number): string {
  if (ms !== lastTimeMs) {
    lastTimeMs = ms;
    lastTimeIso = new Date(ms).toISOString();
  }
  return lastTimeIso;
}

/** A message's data as a Buffer, without copying. */
export function dataBytes(m: Delivery['message']): Buffer {
  return Buffer.isBuffer(m.data) ? m.data : Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
}

function dataString(m: Delivery['message']): string {
  return dataBytes(m).toString(m.encoding);
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

/** Pull's message object: the message and its delivery fields. */
export function renderDelivery(d: Delivery) {
  return { ...renderMessage(d.topicId, d.message), deliveryAttempt: d.attempt, ackId: d.ackId };
}

// Per-message JSON that push and WebSocket write at high rates, written out directly: no object is
// built per message, and the body goes through JSON.stringify on its own (V8's native fast path for
// a plain string; a compiled serializer's escape check costs more on 1 KiB of data). Field order and
// values are those of renderMessage/renderDelivery; a test compares the two.
function messageFields(topicId: number, m: Delivery['message']): string {
  return (
    `"id":"${messageId(topicId, m.seq)}","seq":${m.seq},"data":${JSON.stringify(dataString(m))},"encoding":"${m.encoding}",` +
    `"attributes":${m.attributes ? JSON.stringify(m.attributes) : '{}'},"tags":${m.tags ? JSON.stringify(m.tags) : '[]'},` +
    `"routingKey":${m.routingKey !== undefined ? JSON.stringify(m.routingKey) : 'null'},` +
    `"orderingKey":${m.orderingKey !== undefined ? JSON.stringify(m.orderingKey) : 'null'},` +
    `"publishTime":"${isoTime(m.publishTimeMs)}"`
  );
}

/** A push body in the `json` format: pull's message object without `ackId`. */
export function pushMessageJson(d: Delivery): string {
  return `{${messageFields(d.topicId, d.message)},"deliveryAttempt":${d.attempt}}`;
}

/** A WebSocket `message` frame: `type` first, then pull's message object. */
export function messageFrameJson(d: Delivery): string {
  return `{"type":"message",${messageFields(d.topicId, d.message)},"deliveryAttempt":${d.attempt},"ackId":${JSON.stringify(d.ackId)}}`;
}
