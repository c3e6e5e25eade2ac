// Goal: the hand-written JSON of pull answers, push bodies and WebSocket frames is exactly what JSON.stringify makes
// of the documented message object (the same fields, order and escaping), for any message content.
// Method: fast-check over message fields (unicode, quotes, control characters, base64 bodies).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { Delivery } from '../../src/core/broker/machine.js';
import { pullResponseBody, pushMessageBody, renderDelivery, renderMessage, writeMessageFrame, writeTailMessageFrame } from '../../src/http/render.js';
import { WireBuffer } from '../../src/http/wire-buffer.js';

function written(write: (w: WireBuffer) => void): string {
  const w = new WireBuffer(16); // small, so that growing is exercised too
  write(w);
  return w.written().toString('utf8');
}

const text = fc.string({ unit: 'grapheme', maxLength: 40 });
// Text dense in what JSON escapes, and in what it must not (multi-byte UTF-8, U+2028).
const escapes = fc.string({ unit: fc.constantFrom('a', '"', '\\', '\n', '\u0001', '\u001f', '\u007f', 'é', '😀', '\u2028', '/'), maxLength: 40 });
const delivery: fc.Arbitrary<Delivery> = fc
  .record({
    topicId: fc.integer({ min: 1, max: 1e9 }),
    seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    publishTimeMs: fc.integer({ min: 0, max: 4e12 }),
    body: fc.oneof(text, escapes, fc.string({ unit: 'binary', maxLength: 40 }), fc.uint8Array({ maxLength: 64 })),
    attributes: fc.option(fc.dictionary(text, text, { maxKeys: 4 }), { nil: undefined }),
    tags: fc.option(fc.array(text, { maxLength: 3 }), { nil: undefined }),
    routingKey: fc.option(text, { nil: undefined }),
    orderingKey: fc.option(text, { nil: undefined }),
    attempt: fc.integer({ min: 1, max: 1000 }),
    ackId: fc.string({ minLength: 1, maxLength: 20 }),
  })
  .map((r) => {
    const binary = typeof r.body !== 'string';
    const message: Delivery['message'] = {
      seq: r.seq,
      publishTimeMs: r.publishTimeMs,
      visibleAtMs: r.publishTimeMs,
      data: binary ? Buffer.from(r.body as Uint8Array) : Buffer.from(r.body as string, 'utf8'),
      encoding: binary ? 'base64' : 'utf8',
    };
    if (r.attributes !== undefined) message.attributes = r.attributes;
    if (r.tags !== undefined) message.tags = r.tags;
    if (r.routingKey !== undefined) message.routingKey = r.routingKey;
    if (r.orderingKey !== undefined) message.orderingKey = r.orderingKey;
    // As a publish marks it: utf8 text JSON.stringify leaves as it is (checked here independently).
    if (!binary && JSON.stringify(r.body) === `"${r.body as string}"`) message.jsonSafe = true;
    return { topicId: r.topicId, message, attempt: r.attempt, ackId: r.ackId };
  });

describe('message JSON', () => {
  test('a WebSocket frame is JSON.stringify of {type: "message", ...pull’s message object}', () => {
    fc.assert(
      fc.property(delivery, (d) => {
        expect(written((w) => writeMessageFrame(w, d))).toBe(JSON.stringify({ type: 'message', ...renderDelivery(d) }));
      }),
      { numRuns: 500 },
    );
  });

  test('a pull answer is JSON.stringify of {messages: [pull’s message objects]}', () => {
    fc.assert(
      fc.property(fc.array(delivery, { maxLength: 5 }), (ds) => {
        expect(pullResponseBody(ds).toString('utf8')).toBe(JSON.stringify({ messages: ds.map(renderDelivery) }));
      }),
      { numRuns: 300 },
    );
  });

  test('a topic tail frame is JSON.stringify of {type: "message", ...the message object}', () => {
    fc.assert(
      fc.property(delivery, (d) => {
        expect(written((w) => writeTailMessageFrame(w, d.topicId, d.message))).toBe(JSON.stringify({ type: 'message', ...renderMessage(d.topicId, d.message) }));
      }),
      { numRuns: 300 },
    );
  });

  test('a json push body is JSON.stringify of the message object with deliveryAttempt', () => {
    fc.assert(
      fc.property(delivery, (d) => {
        expect(pushMessageBody(d).toString('utf8')).toBe(JSON.stringify({ ...renderMessage(d.topicId, d.message), deliveryAttempt: d.attempt }));
      }),
      { numRuns: 500 },
    );
  });
});
