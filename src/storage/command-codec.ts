/**
 * How a command is written into a log entry. A publish, the command nearly every entry under load
 * carries, has a binary form of its own; every other command, and anything else stored (snapshots,
 * snapshot streams), is msgpack.
 *
 * The publish form costs a header and a length per message, and its decoding leaves each message's
 * data a view into the entry (storage then indexes the data where the entry lies: lmdb-storage.ts).
 * msgpack spent about 0.5 µs a message encoding and decoding the same batch on every node.
 *
 *   0xc1                       marker: a byte msgpack never uses, so the two forms cannot be confused
 *   0x01                       the form's version
 *   f64 BE                     nowMs
 *   u16 BE + UTF-8             topic
 *   u32 BE                     message count, then per message:
 *     u8                       flags: jsonSafe, base64 encoding, has extras
 *     u32 BE + bytes           data
 *     [u32 BE + msgpack]       extras, when flagged: attributes, tags, routingKey, orderingKey,
 *                              dedupId, delaySeconds (only those present)
 */
import { Packr } from 'msgpackr';
import type { PublishItem, StampedCommand } from '../core/broker/commands.js';

const packr = new Packr({ useRecords: false, moreTypes: false });

const publishMarker = 0xc1;
const publishVersion = 1;
const flagJsonSafe = 1;
const flagBase64 = 2;
const flagExtras = 4;

/** Any value (a snapshot, a stream chunk, a command) as msgpack. */
export function encodeCommand(value: unknown): Buffer {
  return packr.pack(value);
}

export function decodeCommand<T>(data: Uint8Array): T {
  return packr.unpack(data) as T;
}

/** A command with the leader's clock, as a log entry carries it. */
export function encodeStamped(stamped: StampedCommand): Buffer {
  return stamped.command.type === 'publish' ? encodePublish(stamped.nowMs, stamped.command.topic, stamped.command.messages) : packr.pack(stamped);
}

export function decodeStamped(data: Uint8Array): StampedCommand {
  return data[0] === publishMarker ? decodePublish(data) : (packr.unpack(data) as StampedCommand);
}

type Extras = Pick<PublishItem, 'attributes' | 'tags' | 'routingKey' | 'orderingKey' | 'dedupId' | 'delaySeconds'>;

/** Copies the optional fields that `from` has onto `to`; how many it copied. */
function copyExtras(from: Extras, to: Extras): number {
  let n = 0;
  if (from.attributes !== undefined) (to.attributes = from.attributes), n++;
  if (from.tags !== undefined) (to.tags = from.tags), n++;
  if (from.routingKey !== undefined) (to.routingKey = from.routingKey), n++;
  if (from.orderingKey !== undefined) (to.orderingKey = from.orderingKey), n++;
  if (from.dedupId !== undefined) (to.dedupId = from.dedupId), n++;
  if (from.delaySeconds !== undefined) (to.delaySeconds = from.delaySeconds), n++;
  return n;
}

/** A message's optional fields as msgpack, or undefined when it has none (most messages). */
function extrasOf(m: PublishItem): Buffer | undefined {
  const extras: Extras = {};
  return copyExtras(m, extras) > 0 ? packr.pack(extras) : undefined;
}

function encodePublish(nowMs: number, topic: string, messages: PublishItem[]): Buffer {
  const extras = messages.map(extrasOf);
  let size = 2 + 8 + 2 + Buffer.byteLength(topic) + 4;
  for (let i = 0; i < messages.length; i++) size += 1 + 4 + messages[i]!.data.byteLength + (extras[i] ? 4 + extras[i]!.length : 0);
  const out = Buffer.allocUnsafe(size);
  out[0] = publishMarker;
  out[1] = publishVersion;
  out.writeDoubleBE(nowMs, 2);
  const topicBytes = out.write(topic, 12);
  out.writeUInt16BE(topicBytes, 10);
  let at = 12 + topicBytes;
  out.writeUInt32BE(messages.length, at);
  at += 4;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const x = extras[i];
    out[at++] = (m.jsonSafe ? flagJsonSafe : 0) | (m.encoding === 'base64' ? flagBase64 : 0) | (x ? flagExtras : 0);
    out.writeUInt32BE(m.data.byteLength, at);
    out.set(m.data, at + 4);
    at += 4 + m.data.byteLength;
    if (x) {
      out.writeUInt32BE(x.length, at);
      out.set(x, at + 4);
      at += 4 + x.length;
    }
  }
  return out;
}

/** Each message's data is a view into `data`, which must therefore not be reused. */
function decodePublish(data: Uint8Array): StampedCommand {
  const b = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b[1] !== publishVersion) throw new Error(`publish entry of unknown version ${b[1]}`);
  const nowMs = b.readDoubleBE(2);
  const topicBytes = b.readUInt16BE(10);
  const topic = b.toString('utf8', 12, 12 + topicBytes);
  let at = 12 + topicBytes;
  const count = b.readUInt32BE(at);
  at += 4;
  const messages: PublishItem[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const flags = b[at]!;
    const length = b.readUInt32BE(at + 1);
    at += 5;
    if (at + length > b.length) throw new RangeError(`publish entry cut short in message ${i}`);
    const m: PublishItem = { data: b.subarray(at, at + length), encoding: flags & flagBase64 ? 'base64' : 'utf8' };
    at += length;
    if (flags & flagJsonSafe) m.jsonSafe = true;
    if (flags & flagExtras) {
      const xLength = b.readUInt32BE(at);
      copyExtras(packr.unpack(b.subarray(at + 4, at + 4 + xLength)) as Extras, m);
      at += 4 + xLength;
    }
    messages[i] = m;
  }
  return { nowMs, command: { type: 'publish', topic, messages } };
}
