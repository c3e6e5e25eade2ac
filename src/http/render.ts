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
