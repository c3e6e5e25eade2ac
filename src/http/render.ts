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

export function renderSubscription(info: SubscriptionInfo) {
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
    ...(config.push ? { pushState: 'active' } : {}),
  };
}

export function renderDelivery(d: Delivery) {
  const m = d.message;
  return {
    id: messageId(d.topicId, m.seq),
    seq: m.seq,
    data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).toString(m.encoding),
    encoding: m.encoding,
    attributes: m.attributes ?? {},
    tags: m.tags ?? [],
    routingKey: m.routingKey ?? null,
    orderingKey: m.orderingKey ?? null,
    publishTime: new Date(m.publishTimeMs).toISOString(),
    deliveryAttempt: d.attempt,
    ackId: d.ackId,
  };
}
