/** How the broker's records look on the wire (API.md's shapes). */
import type { Delivery, SubscriptionInfo, TopicInfo } from '../core/broker/machine.js';
import { messageId } from '../core/broker/types.js';
import { WireBuffer } from './wire-buffer.js';

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

// Per-message JSON that pull, push and WebSocket write at high rates goes straight into bytes: no
// object per message, and the data copied as stored when it needs no escape (wire-buffer.ts). Field
// order and values are those of renderMessage/renderDelivery; a property test compares the two.
function writeMessageFields(w: WireBuffer, topicId: number, m: Delivery['message']): void {
  w.ascii(`"id":"${messageId(topicId, m.seq)}","seq":${m.seq},"data":`);
  const data = dataBytes(m);
  if (m.encoding === 'base64') w.jsonStringOfBase64(data);
  else if (m.jsonSafe) w.jsonStringOfSafeUtf8(data);
  else w.jsonStringOfUtf8(data);
  w.text(
    `,"encoding":"${m.encoding}",` +
      `"attributes":${m.attributes ? JSON.stringify(m.attributes) : '{}'},"tags":${m.tags ? JSON.stringify(m.tags) : '[]'},` +
      `"routingKey":${m.routingKey !== undefined ? JSON.stringify(m.routingKey) : 'null'},` +
      `"orderingKey":${m.orderingKey !== undefined ? JSON.stringify(m.orderingKey) : 'null'},` +
      `"publishTime":"${isoTime(m.publishTimeMs)}"`,
  );
}

/** Room for one message's JSON besides its data (base64 data grows by a third). */
export function estimateBytes(m: Delivery['message']): number {
  return 256 + (m.encoding === 'base64' ? Math.ceil(m.data.length / 3) * 4 : m.data.length);
}

/**
 * Pull's answer, `{"messages": [...]}`: pull's message objects, as JSON bytes; with `acked`, what the
 * acks the pull carried did (`"acked": n, "invalid": [...]`).
 */
export function pullResponseBody(deliveries: readonly Delivery[], acked?: { count: number; invalid: string[] }): Buffer {
  let size = 16;
  for (const d of deliveries) size += estimateBytes(d.message);
  const w = new WireBuffer(size);
  w.ascii('{"messages":[');
  for (let i = 0; i < deliveries.length; i++) {
    const d = deliveries[i]!;
    w.ascii(i === 0 ? '{' : ',{');
    writeMessageFields(w, d.topicId, d.message);
    w.text(`,"deliveryAttempt":${d.attempt},"ackId":${JSON.stringify(d.ackId)}}`);
  }
  w.ascii(']');
  if (acked) w.text(`,"acked":${acked.count},"invalid":${JSON.stringify(acked.invalid)}`);
  w.ascii('}');
  return w.written();
}

/** A push body in the `json` format: pull's message object without `ackId`. */
export function pushMessageBody(d: Delivery): Buffer {
  const w = new WireBuffer(estimateBytes(d.message));
  w.byte(0x7b);
  writeMessageFields(w, d.topicId, d.message);
  w.ascii(`,"deliveryAttempt":${d.attempt}}`);
  return w.written();
}

/** A WebSocket `message` frame's payload: `type` first, then pull's message object. */
export function writeMessageFrame(w: WireBuffer, d: Delivery): void {
  w.ascii('{"type":"message",');
  writeMessageFields(w, d.topicId, d.message);
  w.text(`,"deliveryAttempt":${d.attempt},"ackId":${JSON.stringify(d.ackId)}}`);
}

/** A topic tail's `message` frame payload: `type` first, then the message object (no delivery fields). */
export function writeTailMessageFrame(w: WireBuffer, topicId: number, m: Delivery['message']): void {
  w.ascii('{"type":"message",');
  writeMessageFields(w, topicId, m);
  w.byte(0x7d);
}
